"""What admins do about failed mail: error-folder counts, the decrypted log download, moving
mail back to the inbox, and the dead-letter queue (show, replay, purge).

Replaying a mail means forgetting its failure so it goes through the pipeline again: a mail
in an error folder is moved back to the inbox and fetched anew; one that never reached a
folder (POP, or a failed move) is published again from the raw copy in the store.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from contracts.base import Envelope
from contracts.registry import CONTRACT_OF_QUEUE
from services.poller.adapters import SqlSourceState
from services.poller.opener import mailbox_opener
from services.poller.sources import capabilities
from services.poller.sources.base import MailSource
from services.runtime import tables
from services.runtime.clock import SystemClock
from services.runtime.config_store import ConfigStore, MailboxState
from services.runtime.crypto import SecretBox
from services.runtime.errors import ConfigError, InfraError
from services.runtime.mail_text import message_id_of
from services.runtime.mailbox_health import MailboxHealth
from services.runtime.store import SqlBlobStore, Store
from services.runtime.unfinished import mail_fetched_of

Publish = Callable[[Envelope], None]
#: A Message-ID is read from this much of a mail's start; headers are never longer here.
_HEAD_BYTES = 64 * 1024


@dataclass
class Admin:
    store: Store
    box: SecretBox

    @property
    def config(self) -> ConfigStore:
        return ConfigStore(self.store, self.box)

    # -- errors ------------------------------------------------------------------------------

    def error_counts(self) -> list[dict[str, Any]]:
        """Per mailbox: mails in its error folder, dead-letter entries, and whether it stopped."""
        entries = self._entries_per_mailbox()
        return [
            {
                "mailbox": s.settings.name,
                "protocol": s.settings.protocol,
                "error_folder": s.settings.error_folder.name
                if capabilities(s.settings.protocol).error_folder
                else None,
                "error_count": s.error_count,
                "dead_letters": entries.get(s.settings.name, 0),
                "stopped": not s.enabled,
                "paused_reason": s.paused_reason,
            }
            for s in self.config.mailboxes()
        ]

    def _entries_per_mailbox(self) -> dict[str, int]:
        d = tables.dead_letters
        with self.store.transaction() as conn:
            rows = conn.execute(sa.select(d.c.mailbox, sa.func.count()).group_by(d.c.mailbox))
            return {mailbox: n for mailbox, n in rows}

    def download(self, mailbox: str | None = None) -> Downloaded:
        """A zip of every entry's decrypted log (``.txt``) and raw mail (``.eml``).

        When no log decrypts, the key is wrong: raises ``ConfigError``. When only some fail,
        those logs are damaged: their ``.txt`` says so (with what the entry itself records)
        and the rest are in the zip. A ``mailbox`` that is neither configured nor named by an
        entry is a ``ConfigError`` too.
        """
        files: list[tuple[str, bytes]] = []
        damaged: list[int] = []
        sealed_logs = 0
        entries = self._dead_letters(mailbox)
        if mailbox is not None and not entries:
            self.config.mailbox(mailbox)  # a mistyped name is an error, not an empty zip
        for entry in entries:
            stem = (
                f"{entry.id:05d}-{entry.mailbox or 'unknown'}-{_safe(entry.ref or entry.mail_id)}"
            )
            head = _entry_head(entry)
            try:
                text, sealed = self._log_text(entry)
            except ConfigError:
                damaged.append(entry.id)
                sealed, text = True, head + _DAMAGED
            sealed_logs += sealed
            files.append((f"{stem}.txt", text.encode()))
            if raw := self._raw_mail(entry.mail_id):
                files.append((f"{stem}.eml", raw))
        if damaged and len(damaged) == sealed_logs:
            raise ConfigError(
                f"cannot decrypt any of the {sealed_logs} error logs: they were encrypted with a "
                "key that is not in MAILROOM_SECRET_KEY (or the key file); add the old key after "
                "the new one"
            )
        return Downloaded(
            logs=sum(1 for name, _ in files if name.endswith(".txt")),
            damaged=damaged,
            archive=_zip(files),
        )

    def log_text(self, entry_id: int) -> str:
        """One entry's error log, decrypted; ``ConfigError`` when there is no such entry or
        its log cannot be decrypted."""
        text, _ = self._log_text(self.entry(entry_id))
        return text

    def _log_text(self, entry: Any) -> tuple[str, bool]:
        """The entry's log as text, and whether it was an encrypted log (not a placeholder)."""
        head = _entry_head(entry)
        if not entry.log_blob:
            return head + "(no error log was written for this entry)\n", False
        try:
            sealed = SqlBlobStore(self.store).get(entry.log_blob)
        except KeyError:
            return head + "(the error log is missing from the store)\n", False
        return head + self.box.decrypt(sealed).decode("utf-8", "replace"), True

    def _raw_mail(self, mail_id: str) -> bytes | None:
        f = tables.fetched_mails
        with self.store.transaction() as conn:
            sha = conn.execute(sa.select(f.c.raw_sha256).where(f.c.mail_id == mail_id)).scalar()
        try:
            return SqlBlobStore(self.store).get(sha) if sha else None
        except KeyError:
            return None

    def move_to_inbox(self, mailbox: str, publish: Publish) -> MovedBack:
        """Move the error folder's mails back; they are fetched again. Resumes fetching.

        A mail no longer in the folder (deleted by hand, or the whole folder was) is processed
        again from the raw copy in the store, so nothing is lost.
        """
        state = self.config.mailbox(mailbox)
        if not capabilities(state.settings.protocol).error_folder:
            raise ConfigError(
                f"mailbox {mailbox!r} is {state.settings.protocol.upper()}, which has no "
                "error folder: use `mailroom dlq replay --all` to process its failed mail again"
            )
        source = self._open(state)
        try:
            held = source.error_folder_message_ids()
            source.move_to_inbox(list(held))
        finally:
            source.close()
        moved = [e for e in self._dead_letters(mailbox) if e.moved_to_error_folder_at]
        missing = self._not_in_folder(moved, held)
        self._forget([e.mail_id for e in moved if e not in missing], refetched=True)
        self._forget([e.mail_id for e in missing])
        for entry in missing:
            self._republish(entry.mail_id, publish)
        health = MailboxHealth(self.store)
        health.reset_errors(mailbox)
        health.resume(mailbox)
        return MovedBack(moved=len(held), missing=len(missing))

    # -- the dead-letter queue ---------------------------------------------------------------

    def entry(self, entry_id: int) -> Any:
        d = tables.dead_letters
        with self.store.transaction() as conn:
            row = conn.execute(sa.select(d).where(d.c.id == entry_id)).first()
        if row is None:
            raise ConfigError(f"no dead-letter entry {entry_id}: see `mailroom dlq list`")
        return row

    def replay(
        self, entry_ids: list[int] | None, publish: Publish, *, reason: str | None = None
    ) -> tuple[int, list[str]]:
        """Process the entries' mails again (all when ``entry_ids`` is None; only those whose
        error class is ``reason``, in any case, when it is given).

        Returns how many were replayed and, for entries left as they were, why (a mailbox
        that is gone or cannot be reached blocks only its own entries). A mail that is
        already on a request is not doubled: the router finds its outcome or its Message-ID.
        """
        entries = self._dead_letters() if entry_ids is None else [self.entry(i) for i in entry_ids]
        if reason is not None:
            entries = [e for e in entries if e.error_class.casefold() == reason.casefold()]
        skipped: list[str] = []
        settled = self._already_settled(entries)
        if settled:
            entries = [e for e in entries if e not in settled]
            skipped.append(self._drop_settled(settled))
        as_is = [e for e in entries if e.payload_blob]
        entries = [e for e in entries if not e.payload_blob]
        replayed = self._replay_as_is(as_is, publish, skipped)
        back: list[Any] = []  # entries whose mail went back to the inbox: fetched again
        for mailbox in {e.mailbox for e in entries if e.moved_to_error_folder_at and e.mailbox}:
            moved = [e for e in entries if e.mailbox == mailbox and e.moved_to_error_folder_at]
            try:
                back += self._back_to_inbox(mailbox, moved)
            except (ConfigError, InfraError) as exc:
                skipped.append(f"{len(moved)} entries of mailbox {mailbox!r}: {exc}")
                entries = [e for e in entries if e not in moved]
        rest = [e for e in entries if e not in back]  # not in a folder: from the stored copy
        self._forget([e.mail_id for e in back], refetched=True)
        self._forget([e.mail_id for e in rest])
        for entry in rest:
            self._republish(entry.mail_id, publish)
        return len(entries) + replayed, skipped

    def _already_settled(self, entries: list[Any]) -> list[Any]:
        """Entries whose mail has an outcome other than this failure: a request, a
        conversation, a duplicate or a rejection (left so by an earlier release)."""
        o = tables.mail_outcomes
        ids = [e.mail_id for e in entries]
        with self.store.transaction() as conn:
            done = set(
                conn.execute(
                    sa.select(o.c.mail_id).where(
                        o.c.mail_id.in_(ids), o.c.outcome != "dead_lettered"
                    )
                ).scalars()
            )
        return [e for e in entries if e.mail_id in done]

    def _drop_settled(self, settled: list[Any]) -> str:
        """Forget only the entries; a copy in the error folder goes back to the inbox, where
        it is fetched as a duplicate, so the folder and the queue still hold the same mails."""
        for mailbox in {e.mailbox for e in settled if e.moved_to_error_folder_at and e.mailbox}:
            moved = [e for e in settled if e.mailbox == mailbox and e.moved_to_error_folder_at]
            with contextlib.suppress(ConfigError, InfraError):
                self._back_to_inbox(mailbox, moved)
        d = tables.dead_letters
        with self.store.transaction() as conn:
            conn.execute(d.delete().where(d.c.id.in_([e.id for e in settled])))
        return (
            f"{len(settled)} entries whose mail already has an outcome (a request or a "
            "conversation): removed from the queue, the mail is not processed again"
        )

    def _replay_as_is(self, entries: list[Any], publish: Publish, skipped: list[str]) -> int:
        """Publish each kept message again, then forget its entry (a failure comes back as a
        new one); an entry whose message cannot be read is left as it was, with the reason."""
        replayed = 0
        for entry in entries:
            try:
                sealed = SqlBlobStore(self.store).get(entry.payload_blob)
                message = CONTRACT_OF_QUEUE[entry.queue].model_validate_json(
                    self.box.decrypt(sealed)
                )
            except (KeyError, ValueError, ConfigError) as exc:
                reason = (
                    "its message is missing from the store"
                    if isinstance(exc, KeyError)
                    else f"its message cannot be read ({exc})"
                )
                skipped.append(f"entry {entry.id}: {reason}")
                continue
            publish(message)
            self._forget([entry.mail_id])
            replayed += 1
        return replayed

    def error_classes(self) -> list[str]:
        """The error classes of the entries, for a ``--reason`` that matched nothing."""
        d = tables.dead_letters
        with self.store.transaction() as conn:
            query = sa.select(d.c.error_class).distinct().order_by(d.c.error_class)
            return list(conn.execute(query).scalars())

    def purge(self) -> int:
        """Forget every entry; mails in error folders stay there for the admin to delete."""
        d = tables.dead_letters
        with self.store.transaction() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(d)).scalar_one()
            conn.execute(d.delete())
            conn.execute(tables.mailboxes.update().values(error_count=0))
        return int(count)

    # -- internals ---------------------------------------------------------------------------

    def _open(self, state: MailboxState) -> MailSource:
        clock = SystemClock()
        source_state = SqlSourceState(self.store, state.settings.name, clock)
        return mailbox_opener(self.store, self.box, clock)(state, source_state)

    def _dead_letters(self, mailbox: str | None = None) -> list[Any]:
        d = tables.dead_letters
        query = sa.select(d).order_by(d.c.id)
        if mailbox is not None:
            query = query.where(d.c.mailbox == mailbox)
        with self.store.transaction() as conn:
            return list(conn.execute(query).all())

    def _back_to_inbox(self, mailbox: str, entries: list[Any]) -> list[Any]:
        """Move these entries' mails from the error folder back to the inbox; returns the
        entries whose mail was found there (by ref on a Maildir, by Message-ID on IMAP,
        where the folder gives each mail a ref of its own)."""
        state = self.config.mailbox(mailbox)
        source = self._open(state)
        try:
            found = self._in_folder(entries, source.error_folder_message_ids())
            source.move_to_inbox(list(found))
        finally:
            source.close()
        return list(found.values())

    def _in_folder(self, entries: list[Any], held: dict[str, str | None]) -> dict[str, Any]:
        """The folder's ref of each entry's mail, for the entries found among ``held``."""
        found = {e.ref: e for e in entries if e.ref in held}
        ids = self._message_ids([e.mail_id for e in entries if e not in found.values()])
        by_message_id: dict[str, Any] = {}
        for entry in entries:
            if entry not in found.values() and (mid := ids.get(entry.mail_id)):
                by_message_id.setdefault(mid, entry)
        for ref, mid in held.items():
            if ref not in found and mid in by_message_id:
                found[ref] = by_message_id.pop(mid)
        return found

    def _not_in_folder(self, entries: list[Any], held: dict[str, str | None]) -> list[Any]:
        """Entries whose mail the error folder no longer holds. A mail without a Message-ID
        cannot be told apart there, so while such a mail is left unmatched, an entry whose
        mail has none is taken to be it."""
        found = self._in_folder(entries, held)
        anonymous_left = any(mid is None for ref, mid in held.items() if ref not in found)
        unfound = [e for e in entries if e not in found.values()]
        ids = self._message_ids([e.mail_id for e in unfound]) if anonymous_left else {}
        return [e for e in unfound if not (anonymous_left and ids.get(e.mail_id) is None)]

    def _message_ids(self, mail_ids: list[str]) -> dict[str, str | None]:
        """The Message-ID of each mail's raw copy, read from its head only, in one query."""
        if not mail_ids:
            return {}
        f, b = tables.fetched_mails, tables.blobs
        head = sa.func.substr(b.c.data, 1, _HEAD_BYTES, type_=sa.LargeBinary)
        query = (
            sa.select(f.c.mail_id, head.label("head"))
            .join(b, b.c.sha256 == f.c.raw_sha256)
            .where(f.c.mail_id.in_(mail_ids))
        )
        with self.store.transaction() as conn:
            return {row.mail_id: message_id_of(bytes(row.head)) for row in conn.execute(query)}

    def _forget(self, mail_ids: list[str], *, refetched: bool = False) -> None:
        """Drop the failure of these mails, so the pipeline treats them as new again.

        ``refetched``: the mails went back to the inbox and will be fetched anew (on IMAP
        under a new ref), so their old fetched rows go too, or the embedded broker's
        recovery would publish them a second time.
        """
        d, o, f = tables.dead_letters, tables.mail_outcomes, tables.fetched_mails
        with self.store.transaction() as conn:
            # A mail skipped without download is no longer skipped: fetched again if still
            # there (on IMAP the watermark drops below it).
            where = conn.execute(sa.select(d.c.mailbox, d.c.ref).where(d.c.mail_id.in_(mail_ids)))
            for mailbox, ref in where.all():
                if mailbox is not None and ref is not None:
                    SqlSourceState.forget_in(conn, mailbox, [ref], reason="skipped")
            conn.execute(d.delete().where(d.c.mail_id.in_(mail_ids)))
            failed = o.c.mail_id.in_(mail_ids) & (o.c.outcome == "dead_lettered")
            conn.execute(o.delete().where(failed))
            rows = f.c.mail_id.in_(mail_ids)
            if refetched:
                conn.execute(f.delete().where(rows))
            else:  # recovery counts publishes; a replay starts afresh
                conn.execute(f.update().where(rows).values(publish_count=0))

    def _republish(self, mail_id: str, publish: Publish) -> None:
        f = tables.fetched_mails
        with self.store.transaction() as conn:
            row = conn.execute(sa.select(f).where(f.c.mail_id == mail_id)).first()
        if row is None:
            return  # never downloaded (over the size limit): nothing to replay from
        publish(mail_fetched_of(row))


_DAMAGED = (
    "(the error log cannot be decrypted although others can: it is damaged, or it was "
    "encrypted with a key no longer configured; the lines above are what the entry records)\n"
)


def _entry_head(entry: Any) -> str:
    return (
        f"dead-letter entry {entry.id}\nmailbox: {entry.mailbox}\nmail: {entry.ref}\n"
        f"stage: {entry.stage}\nerror: {entry.error_class}: {entry.error}\n"
        f"attempts: {entry.attempts}\nat: {entry.at}\n\n"
    )


@dataclass(frozen=True)
class Downloaded:
    logs: int  # entries written
    damaged: list[int]  # ids of entries whose log could not be decrypted
    archive: bytes  # the zip


@dataclass(frozen=True)
class MovedBack:
    moved: int  # mails moved from the error folder to the inbox
    missing: int  # entries whose mail was gone from the folder, replayed from the store


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


def _zip(files: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()
