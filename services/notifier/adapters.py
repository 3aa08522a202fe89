"""The notifier's outbox in the store (table ``notifications``). SMTP is in ``smtp.py``."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from contracts.notify import Notify
from services.notifier.handler import OutboxEntry, PendingMail
from services.notifier.message import DEFAULT_DOMAIN, OutgoingMail, message_id_for
from services.runtime import tables
from services.runtime.store import Store, as_utc, insert_ignoring_conflict

_T = tables.notifications
_PENDING_COLUMNS = (
    _T.c.id,
    _T.c.key,
    _T.c.helpdesk_id,
    _T.c.recipients,
    _T.c.subject,
    _T.c.body,
    _T.c.in_reply_to,
    _T.c.message_id,
    _T.c.created_at,
    _T.c.attempts,
)
# Built once: each call passes its values as parameters, named apart from the columns.
_ENTRY_OF_KEY = sa.select(_T.c.id, _T.c.sent_at).where(_T.c.key == sa.bindparam("k"))
_MARK_SENT = (
    _T.update()
    .where(_T.c.id == sa.bindparam("eid"))
    .values(sent_at=sa.bindparam("at"), error=None, next_attempt_at=None)
)
_MARK_FAILED = (
    _T.update()
    .where(_T.c.id == sa.bindparam("eid"))
    .values(error=sa.bindparam("why"), next_attempt_at=sa.bindparam("retry_at"))
)
_LIKE_ESCAPE = "/"
_JSON_ESCAPE = re.compile(r"\\u[0-9a-f]{4}")


class SqlOutbox:
    """Each call commits on its own: the entry must exist before the mail is sent.

    Claims are single ``UPDATE … WHERE <due> RETURNING`` statements: the database lets one
    of two concurrent claimers change the row, and the other then finds it no longer due.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(
        self,
        msg: Notify,
        recipients: list[str],
        at: datetime,
        *,
        message_id: str | None = None,
        suppressed_reason: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> OutboxEntry:
        values: dict[str, object] = dict(
            key=msg.key,
            mail_id=msg.mail_id,
            helpdesk_id=msg.helpdesk,
            topic=msg.topic,
            channel=msg.channel,
            recipients=recipients,
            subject=msg.subject,
            body=msg.body,
            in_reply_to=msg.in_reply_to,
            created_at=at,
            message_id=message_id,
            suppressed_reason=suppressed_reason,
            next_attempt_at=next_attempt_at,
        )
        with self._store.transaction() as conn:
            insert_ignoring_conflict(conn, _T, values)
            row = conn.execute(_ENTRY_OF_KEY, {"k": msg.key}).one()
        return OutboxEntry(id=row.id, sent_at=as_utc(row.sent_at))

    def claim(self, entry_id: int, now: datetime, lease_until: datetime) -> PendingMail | None:
        return self._claim(_T.c.id == entry_id, now, lease_until)

    def claim_next(
        self, now: datetime, lease_until: datetime, *, skip_helpdesks: frozenset[str]
    ) -> PendingMail | None:
        oldest = (
            sa.select(_T.c.id)
            .where(*_due(now), _T.c.helpdesk_id.not_in(skip_helpdesks))
            .order_by(_T.c.next_attempt_at, _T.c.id)
            .limit(1)
            # PostgreSQL: a concurrent claimer takes the next entry instead of waiting for
            # this one (SQLite writes one at a time and ignores this).
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        return self._claim(_T.c.id == oldest, now, lease_until)

    def _claim(
        self, which: sa.ColumnElement[bool], now: datetime, lease_until: datetime
    ) -> PendingMail | None:
        stmt = (
            _T.update()
            .where(which, *_due(now))
            .values(next_attempt_at=lease_until, attempts=_T.c.attempts + 1)
            .returning(*_PENDING_COLUMNS)
        )
        with self._store.transaction() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _pending(row)

    def mark_sent(self, entry_id: int, at: datetime) -> None:
        with self._store.transaction() as conn:
            conn.execute(_MARK_SENT, {"eid": entry_id, "at": at})

    def mark_failed(self, entry_id: int, error: str, retry_at: datetime | None) -> None:
        with self._store.transaction() as conn:
            conn.execute(_MARK_FAILED, {"eid": entry_id, "why": error, "retry_at": retry_at})

    def recent_email_counts(
        self, helpdesk: str, addresses: Sequence[str], since: datetime
    ) -> dict[str, int]:
        wanted = {a.lower() for a in addresses}
        if not wanted:
            return {}
        recipients = sa.func.lower(sa.cast(_T.c.recipients, sa.Text))
        # The database narrows the window's emails to those that may be to one of these
        # addresses (its lower() knows ASCII letters only); the exact count is made here, so
        # JÖRG@ and jörg@ are one address as the rate limit reads them. At most about the
        # limit's number of emails per address come back.
        query = sa.select(_T.c.recipients).where(
            _T.c.helpdesk_id == helpdesk,
            _T.c.channel == "email",
            _T.c.suppressed_reason.is_(None),
            _T.c.created_at >= since,
            sa.or_(*(recipients.like(_contains(a), escape=_LIKE_ESCAPE) for a in sorted(wanted))),
        )
        with self._store.transaction() as conn:
            kept = [{a.lower() for a in row.recipients} for row in conn.execute(query)]
        return {a: sum(a in to for to in kept) for a in wanted}


def _due(now: datetime) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        _T.c.channel == "email",
        _T.c.sent_at.is_(None),
        _T.c.suppressed_reason.is_(None),
        _T.c.next_attempt_at <= now,
    )


def _contains(address: str) -> str:
    """A LIKE pattern matching the JSON list text of recipients that may hold ``address``.

    The list is stored as JSON text on SQLite and PostgreSQL alike, each address quoted the
    way ``json.dumps`` quotes it, every character beyond ASCII as a ``\\uXXXX`` escape. Any
    escape matches one, whatever character it stands for: the letter's case is not in the
    text the database can fold.
    """
    quoted = json.dumps(address)
    for char in (_LIKE_ESCAPE, "%", "_"):
        quoted = quoted.replace(char, _LIKE_ESCAPE + char)
    return "%" + _JSON_ESCAPE.sub(r"\\u____", quoted) + "%"


def _pending(row: Any) -> PendingMail:
    created_at = as_utc(row.created_at)
    assert created_at is not None  # the column is NOT NULL
    return PendingMail(
        id=row.id,
        helpdesk=row.helpdesk_id,
        attempts=row.attempts,
        created_at=created_at,
        mail=OutgoingMail(
            key=row.key,
            to=tuple(row.recipients),
            subject=row.subject,
            body=row.body,
            in_reply_to=row.in_reply_to,
            # Entries kept before Message-IDs were stored get the one their key gives.
            message_id=row.message_id or message_id_for(row.key, DEFAULT_DOMAIN),
            date=created_at,
        ),
    )
