"""The poller's store adapters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from contracts.dead import DeadLetter
from contracts.mail import MailFetched, SourceRef
from services.poller.sources.base import Cursor
from services.runtime import tables
from services.runtime.ports import Clock
from services.runtime.store import Store, as_utc, insert_ignoring_conflict

FINAL_OUTCOMES = ("request_created", "conversation_added", "duplicate", "rejected")


class SqlFetchedLog:
    """Each call commits on its own, so blobs (committed apart) never wait on a held lock."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def record(self, fetched: MailFetched, at: datetime) -> None:
        with self._store.transaction() as conn:
            self.record_in(conn, fetched, at)

    @staticmethod
    def record_in(conn: sa.Connection, fetched: MailFetched, at: datetime) -> None:
        """``record`` within the caller's transaction."""
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


def mail_fetched_of(row: sa.Row[Any]) -> MailFetched:
    """The ``MailFetched`` of a ``fetched_mails`` row, to publish the mail again."""
    return MailFetched(
        mail_id=row.mail_id,
        helpdesk=row.helpdesk_id,
        source=SourceRef(mailbox=row.mailbox, ref=row.ref),
        raw_blob=row.raw_sha256,
        size=row.size,
    )


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
                queue=dead.queue,
                payload_blob=dead.payload_blob,
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


class SqlSourceState:
    """``SourceState`` of one mailbox in the store; each call commits on its own."""

    def __init__(self, store: Store, mailbox: str, clock: Clock) -> None:
        self._store = store
        self._mailbox = mailbox
        self._clock = clock

    def cursor(self) -> Cursor | None:
        c = tables.source_cursors
        with self._store.transaction() as conn:
            row = conn.execute(sa.select(c).where(c.c.mailbox == self._mailbox)).first()
        if row is None:
            return None
        return Cursor(validity=row.validity, first_connected_at=as_utc(row.first_connected_at))

    def save_cursor(self, cursor: Cursor) -> None:
        c = tables.source_cursors
        with self._store.transaction() as conn:
            conn.execute(c.delete().where(c.c.mailbox == self._mailbox))
            conn.execute(
                c.insert().values(
                    mailbox=self._mailbox,
                    validity=cursor.validity,
                    first_connected_at=cursor.first_connected_at,
                )
            )

    def taken_refs(self, reason: str | None = None) -> set[str]:
        t = tables.taken_refs
        query = sa.select(t.c.ref).where(t.c.mailbox == self._mailbox)
        if reason is not None:
            query = query.where(t.c.reason == reason)
        with self._store.transaction() as conn:
            return set(conn.execute(query).scalars())

    def taken_among(self, refs: list[str]) -> set[str]:
        t = tables.taken_refs
        query = sa.select(t.c.ref).where(t.c.mailbox == self._mailbox, t.c.ref.in_(refs))
        with self._store.transaction() as conn:
            return set(conn.execute(query).scalars())

    def taken_message_ids(self) -> set[str]:
        t = tables.taken_refs
        query = sa.select(t.c.message_id).where(
            t.c.mailbox == self._mailbox, t.c.message_id.is_not(None)
        )
        with self._store.transaction() as conn:
            return set(conn.execute(query).scalars())

    def mark_taken(self, items: Sequence[tuple[str, str | None]], reason: str) -> None:
        now = self._clock.now()
        with self._store.transaction() as conn:
            for ref, message_id in items:
                values = dict(
                    mailbox=self._mailbox, ref=ref, message_id=message_id, reason=reason, at=now
                )
                insert_ignoring_conflict(conn, tables.taken_refs, values)

    def forget(self, refs: Sequence[str]) -> None:
        t = tables.taken_refs
        with self._store.transaction() as conn:
            conn.execute(t.delete().where(t.c.mailbox == self._mailbox, t.c.ref.in_(list(refs))))


class SqlLeases:
    """One poller at a time per mailbox: a lease row that expires if its holder dies."""

    def __init__(self, store: Store, holder: str) -> None:
        self._store = store
        self.holder = holder

    def acquire(self, mailbox: str, now: datetime, ttl: timedelta) -> bool:
        """Take or renew the lease; False while another live holder has it."""
        t = tables.mailbox_leases
        values = dict(mailbox=mailbox, holder=self.holder, expires_at=now + ttl)
        with self._store.transaction() as conn:
            if insert_ignoring_conflict(conn, t, values):
                return True
            taken = conn.execute(
                t.update()
                .where(t.c.mailbox == mailbox)
                .where(sa.or_(t.c.holder == self.holder, t.c.expires_at < now))
                .values(holder=self.holder, expires_at=now + ttl)
            )
            return bool(taken.rowcount)

    def release(self, mailbox: str) -> None:
        t = tables.mailbox_leases
        with self._store.transaction() as conn:
            conn.execute(t.delete().where(t.c.mailbox == mailbox, t.c.holder == self.holder))
