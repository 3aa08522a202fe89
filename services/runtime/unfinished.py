"""Mails that were fetched and have no outcome yet, and how to send them on again.

The in-process broker loses its messages when the process stops, and a RabbitMQ that comes
back without its queues has lost them too; the store still knows every fetched mail.
Publishing such a mail again is safe: every stage is idempotent on ``mail_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from contracts.mail import MailFetched, SourceRef
from services.runtime import tables
from services.runtime.store import Store


def unfinished_mails(store: Store) -> list[sa.Row[Any]]:
    """Fetched mails without any outcome yet, oldest first."""
    f = tables.fetched_mails
    query = sa.select(f).where(_no_outcome()).order_by(f.c.fetched_at, f.c.mail_id)
    with store.transaction() as conn:
        return list(conn.execute(query).all())


def has_unfinished(store: Store) -> bool:
    """Whether any fetched mail has no outcome yet."""
    query = sa.select(sa.select(tables.fetched_mails.c.mail_id).where(_no_outcome()).exists())
    with store.transaction() as conn:
        return bool(conn.execute(query).scalar())


def _no_outcome() -> sa.ColumnElement[bool]:
    f, o = tables.fetched_mails, tables.mail_outcomes
    return ~sa.exists().where(o.c.mail_id == f.c.mail_id)


def mail_fetched_of(row: sa.Row[Any]) -> MailFetched:
    """The ``MailFetched`` of a ``fetched_mails`` row, to publish the mail again."""
    return MailFetched(
        mail_id=row.mail_id,
        helpdesk=row.helpdesk_id,
        source=SourceRef(mailbox=row.mailbox, ref=row.ref),
        raw_blob=row.raw_sha256,
        size=row.size,
    )


def republish_unfinished(store: Store, publish: Callable[[MailFetched], None]) -> int:
    """Publish every unfinished mail again; returns how many."""
    rows = unfinished_mails(store)
    for row in rows:
        publish(mail_fetched_of(row))
    return len(rows)
