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
        m = tables.request_mails
        query = sa.select(m.c.mail_id).where(
            m.c.helpdesk_id == helpdesk, m.c.message_id == message_id
        )
        return self._conn.execute(query).first() is not None

    def request_of_message_ids(self, helpdesk: str, message_ids: list[str]) -> int | None:
        m = tables.request_mails
        query = (
            sa.select(m.c.request_id)
            .where(m.c.helpdesk_id == helpdesk, m.c.message_id.in_(message_ids))
            # The newest mail; of mails stored at the same moment, the one on the newer request.
            .order_by(m.c.created_at.desc(), m.c.request_id.desc())
            .limit(1)
        )
        return self._conn.execute(query).scalar()

    def notifications_by_message_ids(self, message_ids: list[str]) -> list[SentNotice]:
        n, m = tables.notifications, tables.request_mails
        query = (
            sa.select(n.c.id, n.c.helpdesk_id, n.c.topic, n.c.message_id, m.c.request_id)
            .join(m, m.c.mail_id == n.c.mail_id, isouter=True)
            .where(n.c.message_id.in_(message_ids))
            .order_by(n.c.id.desc())
        )
        return [
            SentNotice(r.id, r.helpdesk_id, r.topic, r.message_id, r.request_id)
            for r in self._conn.execute(query).all()
        ]

    def request_exists(self, helpdesk: str, request_id: int) -> bool:
        r = tables.requests
        query = sa.select(r.c.id).where(r.c.id == request_id, r.c.helpdesk_id == helpdesk)
        return self._conn.execute(query).first() is not None

    def open_request(self, helpdesk: str, subject: str, requester: Address, at: datetime) -> int:
        result = self._conn.execute(
            tables.requests.insert()
            .values(
                helpdesk_id=helpdesk,
                subject=subject,
                status="open",
                requester_name=requester.name,
                requester_email=requester.email,
                created_at=at,
                updated_at=at,
            )
            .returning(tables.requests.c.id)
        )
        return int(result.scalar_one())

    def add_mail(
        self, request_id: int, msg: MailValidated, data: dict[str, Any], at: datetime
    ) -> None:
        self._conn.execute(
            tables.request_mails.insert().values(
                mail_id=msg.mail_id,
                request_id=request_id,
                helpdesk_id=msg.helpdesk,
                message_id=msg.mail.message_id,
                data=data,
                created_at=at,
            )
        )
        r = tables.requests
        self._conn.execute(r.update().where(r.c.id == request_id).values(updated_at=at))

    def record_outcome(
        self, msg: MailValidated, outcome: str, request_id: int | None, detail: str, at: datetime
    ) -> None:
        o = tables.mail_outcomes
        self._conn.execute(
            o.update()
            .where(o.c.mail_id == msg.mail_id)
            .values(outcome=outcome, request_id=request_id, detail=detail, at=at)
        )
