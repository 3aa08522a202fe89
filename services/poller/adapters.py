"""The poller's store adapters."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from contracts.dead import DeadLetter
from contracts.mail import MailFetched
from services.runtime import tables
from services.runtime.store import Store, insert_ignoring_conflict

FINAL_OUTCOMES = ("request_created", "conversation_added", "duplicate", "rejected")


class SqlFetchedLog:
    """Each call commits on its own, so blobs (committed apart) never wait on a held lock."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def record(self, fetched: MailFetched, at: datetime) -> None:
        with self._store.transaction() as conn:
            self._record(conn, fetched, at)

    @staticmethod
    def _record(conn: sa.Connection, fetched: MailFetched, at: datetime) -> None:
        t = tables.fetched_mails
        inserted = insert_ignoring_conflict(
            conn,
            t,
            dict(
                mail_id=fetched.mail_id,
                helpdesk_id=fetched.helpdesk,
                mailbox=fetched.source.mailbox,
                ref=fetched.source.ref,
                raw_sha256=fetched.raw_blob,
                size=fetched.size,
                fetched_at=at,
                publish_count=1,
            ),
        )
        if not inserted:
            conn.execute(
                t.update()
                .where(t.c.mail_id == fetched.mail_id)
                .values(publish_count=t.c.publish_count + 1)
            )

    def mark_handed_off(self, mail_ids: list[str], at: datetime) -> None:
        t = tables.fetched_mails
        with self._store.transaction() as conn:
            conn.execute(t.update().where(t.c.mail_id.in_(mail_ids)).values(handed_off_at=at))

    def unfinished(self) -> list[sa.Row]:
        """Fetched mails without any outcome yet (in flight, or lost with an in-process broker)."""
        f, o = tables.fetched_mails, tables.mail_outcomes
        query = (
            sa.select(f)
            .where(~sa.exists().where(o.c.mail_id == f.c.mail_id))
            .order_by(f.c.fetched_at, f.c.mail_id)
        )
        with self._store.transaction() as conn:
            return list(conn.execute(query).all())

    def bump_publish_count(self, mail_id: str) -> int:
        t = tables.fetched_mails
        with self._store.transaction() as conn:
            conn.execute(
                t.update().where(t.c.mail_id == mail_id).values(publish_count=t.c.publish_count + 1)
            )
            query = sa.select(t.c.publish_count).where(t.c.mail_id == mail_id)
            return int(conn.execute(query).scalar_one())


class SqlDeadLetterLog:
    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def has_final_outcome(self, mail_id: str) -> bool:
        o = tables.mail_outcomes
        query = sa.select(o.c.outcome).where(
            o.c.mail_id == mail_id, o.c.outcome.in_(FINAL_OUTCOMES)
        )
        return self._conn.execute(query).first() is not None

    def record(self, dead: DeadLetter, at: datetime) -> bool:
        source = dead.source
        inserted = insert_ignoring_conflict(
            self._conn,
            tables.dead_letters,
            dict(
                mail_id=dead.mail_id,
                helpdesk_id=dead.helpdesk,
                mailbox=source.mailbox if source else None,
                ref=source.ref if source else None,
                stage=dead.stage,
                error_class=dead.error_class,
                error=dead.error,
                attempts=dead.attempts,
                log_blob=dead.log_blob,
                at=at,
            ),
        )
        if inserted and dead.helpdesk and source:
            insert_ignoring_conflict(
                self._conn,
                tables.mail_outcomes,
                dict(
                    mail_id=dead.mail_id,
                    helpdesk_id=dead.helpdesk,
                    mailbox=source.mailbox,
                    outcome="dead_lettered",
                    detail=f"{dead.stage}: {dead.error_class}",
                    at=at,
                ),
            )
        return inserted

    def mark_moved(self, mail_id: str, at: datetime | None, error: str | None) -> None:
        t = tables.dead_letters
        self._conn.execute(
            t.update()
            .where(t.c.mail_id == mail_id)
            .values(moved_to_error_folder_at=at, move_error=error)
        )
