"""The router's store adapter."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from contracts.mail import Address, MailValidated
from services.router.ports import SentNotice
from services.runtime import tables
from services.runtime.store import insert_ignoring_conflict

#: The outcome row while the router's transaction decides; never seen committed.
CLAIMED = "routing"


class SqlRequestBook:
    """The ``RequestBook`` on the store, within the caller's transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def claim(self, msg: MailValidated, at: datetime) -> bool:
        values = dict(
            mail_id=msg.mail_id,
            helpdesk_id=msg.helpdesk,
            mailbox=msg.source.mailbox,
            outcome=CLAIMED,
            at=at,
        )
        return insert_ignoring_conflict(self._conn, tables.mail_outcomes, values)

    def message_id_known(self, helpdesk: str, message_id: str) -> bool:
        found = self._conn.execute(_MESSAGE_ID_KNOWN, {"desk": helpdesk, "mid": message_id})
        return found.first() is not None

    def request_of_message_ids(self, helpdesk: str, message_ids: list[str]) -> int | None:
        params = {"desk": helpdesk, "mids": message_ids}
        return self._conn.execute(_REQUEST_OF_MESSAGE_IDS, params).scalar()

    def notifications_by_message_ids(self, message_ids: list[str]) -> list[SentNotice]:
        return [
            SentNotice(r.id, r.helpdesk_id, r.topic, r.message_id, r.request_id)
            for r in self._conn.execute(_NOTIFICATIONS_BY_MESSAGE_IDS, {"mids": message_ids})
        ]

    def request_exists(self, helpdesk: str, request_id: int) -> bool:
        found = self._conn.execute(_REQUEST_EXISTS, {"desk": helpdesk, "rid": request_id})
        return found.first() is not None

    def open_request(self, helpdesk: str, subject: str, requester: Address, at: datetime) -> int:
        result = self._conn.execute(
            _OPEN_REQUEST,
            dict(
                helpdesk_id=helpdesk,
                subject=subject,
                status="open",
                requester_name=requester.name,
                requester_email=requester.email,
                created_at=at,
                updated_at=at,
            ),
        )
        return int(result.scalar_one())

    def add_mail(
        self, request_id: int, msg: MailValidated, data: dict[str, Any], at: datetime
    ) -> None:
        self._conn.execute(
            _ADD_MAIL,
            dict(
                mail_id=msg.mail_id,
                request_id=request_id,
                helpdesk_id=msg.helpdesk,
                message_id=msg.mail.message_id,
                data=data,
                created_at=at,
            ),
        )
        self._conn.execute(_TOUCH_REQUEST, {"rid": request_id, "at": at})

    def record_outcome(
        self, msg: MailValidated, outcome: str, request_id: int | None, detail: str, at: datetime
    ) -> None:
        params = dict(mid=msg.mail_id, outcome_=outcome, rid=request_id, detail_=detail, at_=at)
        self._conn.execute(_RECORD_OUTCOME, params)


# Built once: each call passes its values as parameters. Names of parameters in an UPDATE
# differ from its columns', which SQLAlchemy keeps for itself.
_m, _n, _o, _r = tables.request_mails, tables.notifications, tables.mail_outcomes, tables.requests
_MESSAGE_ID_KNOWN = sa.select(_m.c.mail_id).where(
    _m.c.helpdesk_id == sa.bindparam("desk"), _m.c.message_id == sa.bindparam("mid")
)
_REQUEST_OF_MESSAGE_IDS = (
    sa.select(_m.c.request_id)
    .where(
        _m.c.helpdesk_id == sa.bindparam("desk"),
        _m.c.message_id.in_(sa.bindparam("mids", expanding=True)),
    )
    # The newest mail; of mails stored at the same moment, the one on the newer request.
    .order_by(_m.c.created_at.desc(), _m.c.request_id.desc())
    .limit(1)
)
_NOTIFICATIONS_BY_MESSAGE_IDS = (
    sa.select(_n.c.id, _n.c.helpdesk_id, _n.c.topic, _n.c.message_id, _m.c.request_id)
    .join(_m, _m.c.mail_id == _n.c.mail_id, isouter=True)
    .where(_n.c.message_id.in_(sa.bindparam("mids", expanding=True)))
    .order_by(_n.c.id.desc())
)
_REQUEST_EXISTS = sa.select(_r.c.id).where(
    _r.c.id == sa.bindparam("rid"), _r.c.helpdesk_id == sa.bindparam("desk")
)
_OPEN_REQUEST = _r.insert().returning(_r.c.id)
_ADD_MAIL = _m.insert()
_TOUCH_REQUEST = (
    _r.update().where(_r.c.id == sa.bindparam("rid")).values(updated_at=sa.bindparam("at"))
)
_RECORD_OUTCOME = (
    _o.update()
    .where(_o.c.mail_id == sa.bindparam("mid"))
    .values(
        outcome=sa.bindparam("outcome_"),
        request_id=sa.bindparam("rid"),
        detail=sa.bindparam("detail_"),
        at=sa.bindparam("at_"),
    )
)
