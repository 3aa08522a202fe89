"""The poller's store adapters."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import cache

import sqlalchemy as sa

from contracts.dead import DeadLetter
from contracts.mail import MailFetched
from services.poller.sources.base import Cursor
from services.poller.sources.imap_listing import uid_of
from services.runtime import tables
from services.runtime.ports import Clock
from services.runtime.store import Store, as_utc, insert_ignoring_conflict, insert_of


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
        SqlFetchedLog.record_all_in(conn, [(fetched, at)])

    @staticmethod
    def record_all_in(conn: sa.Connection, rows: Sequence[tuple[MailFetched, datetime]]) -> None:
        """``record`` of many mails within the caller's transaction, in one call: a mail
        fetched before is counted as published once more."""
        if rows:
            conn.execute(_recording(conn.dialect.name), [_fetched_row(f, at) for f, at in rows])

    def mark_handed_off(self, mail_ids: list[str], at: datetime) -> None:
        with self._store.transaction() as conn:
            conn.execute(_HANDED_OFF, {"ids": mail_ids, "at": at})

    def bump_publish_count(self, mail_id: str) -> int:
        t = tables.fetched_mails
        with self._store.transaction() as conn:
            conn.execute(
                t.update().where(t.c.mail_id == mail_id).values(publish_count=t.c.publish_count + 1)
            )
            query = sa.select(t.c.publish_count).where(t.c.mail_id == mail_id)
            return int(conn.execute(query).scalar_one())


_F = tables.fetched_mails
_HANDED_OFF = (
    _F.update()
    .where(_F.c.mail_id.in_(sa.bindparam("ids", expanding=True)))
    .values(handed_off_at=sa.bindparam("at"))
)


@cache
def _recording(dialect: str) -> sa.Executable:
    """Insert a fetched mail, or count one more publication of a mail fetched before."""
    return insert_of(dialect)(_F).on_conflict_do_update(
        index_elements=[_F.c.mail_id], set_={"publish_count": _F.c.publish_count + 1}
    )


def _fetched_row(fetched: MailFetched, at: datetime) -> dict[str, object]:
    return dict(
        mail_id=fetched.mail_id,
        helpdesk_id=fetched.helpdesk,
        mailbox=fetched.source.mailbox,
        ref=fetched.source.ref,
        raw_sha256=fetched.raw_blob,
        size=fetched.size,
        fetched_at=at,
        publish_count=1,
    )


class SqlDeadLetterLog:
    """The dead-letter entries, within the caller's transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def claim(self, dead: DeadLetter, at: datetime) -> bool:
        """See ``DeadLetterLog.claim``. The outcome row is inserted first: on PostgreSQL a
        router holding the same row uncommitted makes this wait for its commit, and on
        SQLite the write lock is taken before anything is read."""
        owner = self._owner(dead)
        if owner is not None and not self._claim_outcome(dead, owner, at):
            return False
        source = dead.source
        insert_ignoring_conflict(
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
        return True

    def _claim_outcome(self, dead: DeadLetter, owner: tuple[str, str], at: datetime) -> bool:
        o = tables.mail_outcomes
        values = dict(
            mail_id=dead.mail_id,
            helpdesk_id=owner[0],
            mailbox=owner[1],
            outcome="dead_lettered",
            detail=f"{dead.stage}: {dead.error_class}",
            at=at,
        )
        if insert_ignoring_conflict(self._conn, o, values):
            return True
        held = self._conn.execute(_OUTCOME_OF, {"mid": dead.mail_id})
        return held.scalar() == "dead_lettered"  # this mail's entry, delivered again

    def _owner(self, dead: DeadLetter) -> tuple[str, str] | None:
        """The help desk and mailbox of the mail, from the entry or else from its fetched
        row; None for an entry that is no mail (a notification, an unreadable message)."""
        if dead.helpdesk and dead.source:
            return dead.helpdesk, dead.source.mailbox
        row = self._conn.execute(_OWNER_OF, {"mid": dead.mail_id}).first()
        return (row.helpdesk_id, row.mailbox) if row else None

    def moved_already(self, mail_id: str) -> bool:
        return self._conn.execute(_MOVED_AT, {"mid": mail_id}).scalar() is not None

    def mark_moved(self, mail_id: str, at: datetime | None, error: str | None) -> None:
        self._conn.execute(_MARK_MOVED, {"mid": mail_id, "moved_at": at, "why": error})


_D = tables.dead_letters
_OUTCOME_OF = sa.select(tables.mail_outcomes.c.outcome).where(
    tables.mail_outcomes.c.mail_id == sa.bindparam("mid")
)
_OWNER_OF = sa.select(_F.c.helpdesk_id, _F.c.mailbox).where(_F.c.mail_id == sa.bindparam("mid"))
_MOVED_AT = sa.select(_D.c.moved_to_error_folder_at).where(_D.c.mail_id == sa.bindparam("mid"))
_MARK_MOVED = (
    _D.update()
    .where(_D.c.mail_id == sa.bindparam("mid"))
    .values(moved_to_error_folder_at=sa.bindparam("moved_at"), move_error=sa.bindparam("why"))
)


def holder_gone(holder: str) -> bool:
    """True when ``holder`` (``host:pid:nonce``) names a process of this host that is gone."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False


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
        return Cursor(
            validity=row.validity,
            first_connected_at=as_utc(row.first_connected_at),
            watermark=row.watermark,
            modseq=row.modseq,
            generation=row.generation,
        )

    def save_cursor(self, cursor: Cursor) -> None:
        c = tables.source_cursors
        with self._store.transaction() as conn:
            conn.execute(c.delete().where(c.c.mailbox == self._mailbox))
            conn.execute(
                c.insert().values(
                    mailbox=self._mailbox,
                    validity=cursor.validity,
                    first_connected_at=cursor.first_connected_at,
                    watermark=cursor.watermark,
                    modseq=cursor.modseq,
                    generation=cursor.generation,
                )
            )

    def advance_watermark(
        self, cursor: Cursor, watermark: int, modseq: int | None
    ) -> Cursor | None:
        c = tables.source_cursors
        now = dataclasses.replace(
            cursor,
            watermark=max(watermark, cursor.watermark),
            modseq=cursor.modseq if modseq is None else modseq,
        )
        same = (
            (c.c.mailbox == self._mailbox)
            & (c.c.validity == cursor.validity)
            & (c.c.generation == cursor.generation)
        )
        with self._store.transaction() as conn:
            done = conn.execute(
                c.update()
                .where(same)
                .values(watermark=now.watermark, modseq=now.modseq)
                .execution_options(preserve_rowcount=True)
            )
        return now if done.rowcount == 1 else None

    def taken_refs(self, reason: str | None = None) -> set[str]:
        t = tables.taken_refs
        query = sa.select(t.c.ref).where(t.c.mailbox == self._mailbox)
        if reason is not None:
            query = query.where(t.c.reason == reason)
        with self._store.transaction() as conn:
            return set(conn.execute(query).scalars())

    def taken_reasons(self) -> dict[str, str]:
        t = tables.taken_refs
        query = sa.select(t.c.ref, t.c.reason).where(t.c.mailbox == self._mailbox)
        with self._store.transaction() as conn:
            return {row.ref: row.reason for row in conn.execute(query)}

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

    def mark_taken(
        self, items: Sequence[tuple[str, str | None]], reason: str, *, replace: bool = False
    ) -> None:
        t = tables.taken_refs
        now = self._clock.now()
        with self._store.transaction() as conn:
            if replace:
                refs = [ref for ref, _ in items]
                conn.execute(t.delete().where(t.c.mailbox == self._mailbox, t.c.ref.in_(refs)))
            for ref, message_id in items:
                values = dict(
                    mailbox=self._mailbox, ref=ref, message_id=message_id, reason=reason, at=now
                )
                insert_ignoring_conflict(conn, t, values)

    def forget(self, refs: Sequence[str]) -> None:
        with self._store.transaction() as conn:
            self.forget_in(conn, self._mailbox, refs)

    @staticmethod
    def forget_in(
        conn: sa.Connection, mailbox: str, refs: Sequence[str], reason: str | None = None
    ) -> None:
        """``forget`` within the caller's transaction; only refs held for ``reason``, when
        given. The cursor is written before the refs go: on PostgreSQL its row lock orders
        this against a round raising the watermark, which then finds the generation changed."""
        t, c = tables.taken_refs, tables.source_cursors
        which = (t.c.mailbox == mailbox) & t.c.ref.in_(list(refs))
        if reason is not None:
            which &= t.c.reason == reason
        held = list(conn.execute(sa.select(t.c.ref).where(which)).scalars())
        if not held:
            return
        validity = conn.execute(sa.select(c.c.validity).where(c.c.mailbox == mailbox)).scalar()
        if validity is not None:
            values: dict[str, object] = {"modseq": None, "generation": c.c.generation + 1}
            uids = [u for ref in held if (u := uid_of(ref, validity)) is not None]
            if uids:
                low = min(uids) - 1
                values["watermark"] = sa.case((c.c.watermark > low, low), else_=c.c.watermark)
            conn.execute(c.update().where(c.c.mailbox == mailbox).values(values))
        conn.execute(t.delete().where(t.c.mailbox == mailbox, t.c.ref.in_(held)))

    def drop_other_validities(self, validity: str) -> None:
        t = tables.taken_refs
        stale = (
            (t.c.mailbox == self._mailbox)
            & t.c.message_id.is_(None)
            & ~t.c.ref.startswith(f"{validity}:", autoescape=True)
        )
        with self._store.transaction() as conn:
            conn.execute(t.delete().where(stale))


class SqlLeases:
    """One poller at a time per mailbox: a lease row that expires if its holder dies.

    A holder is ``host:pid:nonce``; a lease whose holder process is gone from this host is
    taken over at once, instead of when it expires (``gone`` tells, for tests).
    """

    def __init__(
        self, store: Store, holder: str, gone: Callable[[str], bool] | None = None
    ) -> None:
        self._store = store
        self.holder = holder
        self._gone = gone or holder_gone

    def acquire(self, mailbox: str, now: datetime, ttl: timedelta) -> bool:
        """Take or renew the lease; False while another live holder has it."""
        t = tables.mailbox_leases
        values = dict(mailbox=mailbox, holder=self.holder, expires_at=now + ttl)
        with self._store.transaction() as conn:
            if insert_ignoring_conflict(conn, t, values):
                return True
            held = conn.execute(sa.select(t.c.holder).where(t.c.mailbox == mailbox)).scalar()
            free = t.c.expires_at < now
            if held is not None and held != self.holder and self._gone(held):
                free = sa.true()
            taken = conn.execute(
                t.update()
                .where(t.c.mailbox == mailbox, t.c.holder == held)
                .where(sa.or_(t.c.holder == self.holder, free))
                .values(holder=self.holder, expires_at=now + ttl)
            )
            return bool(taken.rowcount)

    def held(self, mailbox: str) -> tuple[str, datetime | None] | None:
        """Who holds the mailbox's lease (``host:pid``, without the nonce) and until when."""
        t = tables.mailbox_leases
        query = sa.select(t.c.holder, t.c.expires_at).where(t.c.mailbox == mailbox)
        with self._store.transaction() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        host, _, rest = row.holder.partition(":")
        pid = rest.partition(":")[0]
        return (f"{host}:{pid}" if pid else str(host)), as_utc(row.expires_at)

    def release(self, mailbox: str) -> None:
        t = tables.mailbox_leases
        with self._store.transaction() as conn:
            conn.execute(t.delete().where(t.c.mailbox == mailbox, t.c.holder == self.holder))
