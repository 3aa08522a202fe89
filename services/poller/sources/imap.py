"""IMAP and IMAPS mailboxes (``protocol: imap`` / ``imaps``), on imapclient.

A mail's ref is ``"UIDVALIDITY:UID"``. What Mailroom has taken is remembered in the store
(``SourceState``), not read from the ``\\Seen`` flag: a mail someone already opened in
another client is still fetched. ``\\Seen`` is set after the hand-off, for people only.

- First connection: ``import_existing`` decides which mail already there is taken as a
  baseline (``all``: none of it; ``unread``: what is already seen; ``none``: all of it).
- UIDVALIDITY change: every ref changes. Mails whose Message-ID was handed off before are
  taken again ("revalidated"), and the ``import_existing`` rule is applied again to mail
  older than the first connection; everything else is new. A leftover duplicate is caught
  downstream by Message-ID.
- Mail is read with ``BODY.PEEK[]`` only, so fetching never marks anything.
- A round lists only what lies above the store's watermark (``imap_listing``), so a folder
  that keeps 100,000 handled mails costs about what an empty one does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from imapclient import IMAPClient

from contracts.settings import MailboxSettings
from services.poller.sources.base import Cursor, Fetched, NotMarked, Refused, SourceState
from services.poller.sources.debug import ProtocolTrace, describe_mail
from services.poller.sources.imap_folders import ErrorFolder
from services.poller.sources.imap_listing import NewMailListing, make_ref, nothing_new, uid_of
from services.poller.sources.imap_session import SEEN, ImapSession, oauth_not_set_up
from services.poller.sources.needs import SourceNeeds
from services.poller.sources.tokens import TokenProvider
from services.runtime.errors import ConfigError, InfraError
from services.runtime.mail_text import message_id_of
from services.runtime.open_sockets import OpenSockets

MB = 1024 * 1024
#: UIDs per command: keeps command lines far below servers' line limits (64 KB on Dovecot).
UIDS_PER_COMMAND = 500
#: Mails per BODY.PEEK[] command, and bytes: few round trips, bounded memory.
BODIES_PER_COMMAND = 25
BYTES_PER_COMMAND = 20 * MB
# Asked for with PEEK (plain BODY[...] would set \Seen); the answer comes without PEEK.
_PEEK_MESSAGE_ID = b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"
_MESSAGE_ID = b"BODY[HEADER.FIELDS (MESSAGE-ID)]"


@dataclass(frozen=True)
class _Taken:
    ref: str
    message_id: str | None
    reason: str


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ImapSource:
    """One IMAP folder, tracked through ``SourceState``; see the module docstring.

    Connects on first use. Every method raises ``ConfigError`` for a setting to fix (host,
    port, certificate, credentials, folder) and ``InfraError`` for a failure that may pass
    (timeout, dropped connection, a command the server refused).
    """

    supports_error_folder = True

    def __init__(
        self,
        box: MailboxSettings,
        state: SourceState,
        *,
        tokens: TokenProvider | None = None,
        now: Callable[[], datetime] = _utcnow,
        sockets: OpenSockets | None = None,
        trace: ProtocolTrace | None = None,
    ) -> None:
        """Raises ``ConfigError`` when a credential is missing: ``username``, ``password``
        (basic auth), or a token provider (``auth: oauth``). ``sockets``: where the
        connection is kept for a stop to cut; ``trace``: the ``debug`` trace (made from
        ``box.debug`` when not given)."""
        _require_credentials(box, tokens)
        self._box = box
        self._state = state
        self._now = now
        self._session = ImapSession(box, tokens, sockets=sockets, trace=trace)
        self._errors = ErrorFolder(self._session)
        self._listing: NewMailListing | None = None
        #: The store's cursor as this session last read or wrote it; None once another
        #: writer changed it (then this session raises the watermark no more).
        self._cursor: Cursor | None = None

    # -- MailSource ------------------------------------------------------------------------

    def list_new(self, limit: int) -> list[str]:
        """Refs of mails not taken yet, lowest UID (oldest) first, at most ``limit``.

        On the first connection, and after a UIDVALIDITY change, first records what the
        baseline rules take (see the module docstring).
        """
        validity = self._inbox(refresh=True)
        listing = self._listing
        if listing is None or listing.validity != validity:
            listing = self._listing = self._start_listing(validity)
        else:
            listing.add_arrivals(self._uids(["UID", f"{listing.highest + 1}:*"]))
        refs = listing.next_refs(limit)
        self._raise_watermark(listing)
        return refs

    def _start_listing(self, validity: int) -> NewMailListing:
        """The session's first listing: nothing at all when the SELECT just made shows no
        mail above the watermark, else only the UIDs above it."""
        fresh = self._session.fresh  # read first: the baseline's commands may follow
        cursor = self._cursor = self._tracked(validity)
        uidnext = fresh.uidnext if fresh else None
        modseq = fresh.highestmodseq if fresh else None
        taken_among = self._state.taken_among
        if nothing_new(cursor.watermark, cursor.modseq, uidnext, modseq):
            return NewMailListing.above(validity, cursor.watermark, [], taken_among, modseq=modseq)
        uids = self._uids(["UID", f"{cursor.watermark + 1}:*"])
        return NewMailListing.above(
            validity,
            cursor.watermark,
            uids,
            taken_among,
            listed_up_to=uidnext - 1 if uidnext else 0,
            modseq=modseq,
        )

    def _raise_watermark(self, listing: NewMailListing) -> None:
        """Store how far every UID is taken, once the store said so (the poller marks mails
        taken after their hand-off and before it lists again)."""
        cursor = self._cursor
        if cursor is None:
            return
        mark, modseq = listing.watermark(), listing.settled_modseq()
        if mark > cursor.watermark or (modseq is not None and modseq != cursor.modseq):
            self._cursor = self._state.advance_watermark(cursor, mark, modseq)

    def fetch_many(self, refs: Sequence[str]) -> Iterator[Fetched]:
        """The mails' bytes via ``BODY.PEEK[]`` (nothing is marked), in batches.

        A mail over ``max_mail_mb`` is not downloaded: it comes back with ``raw=None`` and
        ``skipped`` saying why. Refs of another UIDVALIDITY, or of mails no longer there
        (moved or expunged), are left out.
        """
        validity = self._inbox()
        return self._fetch_refs(refs, validity)

    def _fetch_refs(self, refs: Sequence[str], validity: int) -> Iterator[Fetched]:
        wanted = [(ref, uid) for ref in refs if (uid := uid_of(ref, validity)) is not None]
        sizes = self._sizes([uid for _, uid in wanted])
        if self._listing is not None and self._listing.validity == validity:
            self._listing.gone.update(uid for _, uid in wanted if uid not in sizes)
        return self._download([(ref, uid, sizes[uid]) for ref, uid in wanted if uid in sizes])

    def fetch_raw(self, ref: str) -> bytes:
        """One mail's bytes. Raises ``InfraError`` when it is no longer in the folder, and
        ``ConfigError`` when it is over ``max_mail_mb``."""
        for item in self.fetch_many([ref]):
            if item.raw is None:
                raise ConfigError(f"mailbox {self._box.name!r}: mail {ref}: {item.skipped}")
            return item.raw
        raise InfraError(
            f"mailbox {self._box.name!r}: mail {ref} is no longer in folder {self._box.folder!r}"
        )

    def mark_handed_off(self, refs: Sequence[str]) -> None:
        """Remember the mails as taken and set ``\\Seen`` on them (for people; Mailroom reads
        the store). Refs not in the folder are skipped; repeating it changes nothing. Raises
        ``NotMarked`` for mails whose flag the server refused."""
        validity = self._inbox()
        uids = [uid for ref in refs if (uid := uid_of(ref, validity)) is not None]
        # The poller records these with their Message-IDs first; doing it here as well keeps
        # the source correct on its own, and a repeat is ignored by the store.
        self._state.mark_taken([(make_ref(validity, uid), None) for uid in uids], "handed_off")
        refused: dict[str, str] = {}
        for chunk in _chunks(uids, UIDS_PER_COMMAND):
            try:
                self._session.run("STORE \\Seen", _add_seen(chunk))
            except Refused as exc:  # those mails' fault, not the mailbox's
                refused |= {make_ref(validity, uid): str(exc) for uid in chunk}
        if refused:
            raise NotMarked(refused)

    def move_to_error_folder(self, refs: Sequence[str]) -> None:
        """Move mails into the error folder, creating it when missing. Refs no longer in the
        folder are skipped: a mail moved by an earlier delivery has a new UID there, so it
        cannot be told from one deleted; the dead-letter handler checks the folder."""
        validity = self._inbox()
        uids = self._existing([u for ref in refs if (u := uid_of(ref, validity)) is not None])
        if uids:
            self._errors.move_in(uids)

    def move_to_inbox(self, refs: Sequence[str]) -> None:
        """Move mails from the error folder back to ``folder`` without ``\\Seen``; they get
        new UIDs there, hence new refs, and are fetched again. Unknown refs are skipped."""
        validity = self._errors.select()
        if validity is None:
            return
        uids = self._existing([u for ref in refs if (u := uid_of(ref, validity)) is not None])
        if uids:
            self._errors.move_out(uids, self._box.folder)

    def error_folder_refs(self) -> list[str]:
        """Refs (``"UIDVALIDITY:UID"`` of the error folder) of the mails in it; [] when the
        folder does not exist."""
        validity = self._errors.select()
        if validity is None:
            return []
        return [make_ref(validity, uid) for uid in self._uids()]

    def error_folder_message_ids(self) -> dict[str, str | None]:
        validity = self._errors.select()
        if validity is None:
            return {}
        found = self._fetch(self._uids(), [_PEEK_MESSAGE_ID])
        return {make_ref(validity, u): message_id_of(i.get(_MESSAGE_ID, b"")) for u, i in found}

    def fetch_oldest_unmarked(self) -> bytes | None:
        """The oldest mail not taken, read with ``BODY.PEEK[]``; writes nothing to the store.

        Before the first connection is recorded, the baseline rule is applied without being
        saved. Raises ``ConfigError`` when that mail is over ``max_mail_mb``.
        """
        validity = self._inbox(refresh=True)
        cursor = self._state.cursor()
        pending = {t.ref for t in self._pretaken(cursor, validity)}
        floor = cursor.watermark if cursor and cursor.validity == str(validity) else 0

        def taken_among(refs: list[str]) -> set[str]:
            return self._state.taken_among(refs) | (pending & set(refs))

        uids = self._uids(["UID", f"{floor + 1}:*"])
        found = NewMailListing.above(validity, floor, uids, taken_among).next_refs(1)
        if not found:
            return None
        oldest = found[0]
        for item in self._fetch_refs([oldest], validity):
            if item.raw is None:
                raise ConfigError(
                    f"mailbox {self._box.name!r}: the oldest new mail, {oldest}, is not shown: "
                    f"{item.skipped}"
                )
            return item.raw
        return None  # expunged in the meantime

    def close(self) -> None:
        """Log out; never raises."""
        self._session.close()

    # -- tracking --------------------------------------------------------------------------

    def _inbox(self, *, refresh: bool = False) -> int:
        """Select the configured folder; its UIDVALIDITY."""
        validity = self._session.select(self._box.folder, refresh=refresh)
        assert validity is not None  # select() raises for a missing inbox
        return validity

    def _tracked(self, validity: int) -> Cursor:
        """The store's cursor for this UIDVALIDITY; on the first connection, and after a
        UIDVALIDITY change, first records what the baseline rules take."""
        cursor = self._state.cursor()
        if cursor is not None and cursor.validity == str(validity):
            return cursor
        taken = self._pretaken(cursor, validity)
        for reason in ("revalidated", "baseline"):
            items = [(t.ref, t.message_id) for t in taken if t.reason == reason]
            if items:
                self._state.mark_taken(items, reason)
        # Saved last: a crash before this point repeats the (idempotent) marking next time.
        # A new cursor starts with watermark 0: UIDs of the new UIDVALIDITY start afresh.
        first = cursor.first_connected_at if cursor else self._now()
        saved = Cursor(validity=str(validity), first_connected_at=first)
        self._state.save_cursor(saved)
        if cursor is not None:
            self._state.drop_other_validities(saved.validity)
        return saved

    def _pretaken(self, cursor: Cursor | None, validity: int) -> list[_Taken]:
        """What the baseline rules take for this UIDVALIDITY, computed, not recorded."""
        if cursor is None:
            return [_Taken(make_ref(validity, uid), None, "baseline") for uid in self._baseline()]
        if cursor.validity != str(validity):
            # INTERNALDATE has whole seconds: a mail from the second of the first connection
            # counts as newer. At worst an old mail is fetched; never is a new one lost.
            first_connected = _aware(cursor.first_connected_at).replace(microsecond=0)
            return self._revalidated(validity, first_connected)
        return []

    def _baseline(self) -> list[int]:
        rule = self._box.import_existing
        if rule == "all":
            return []
        return self._uids("ALL" if rule == "none" else ["SEEN"])

    def _revalidated(self, validity: int, first_connected: datetime) -> list[_Taken]:
        known = self._state.taken_message_ids()
        if not known and self._box.import_existing == "all":
            return []  # nothing can match and no rule applies: skip the header fetch
        out = []
        for uid, info in self._fetch(self._uids(), [_PEEK_MESSAGE_ID, b"INTERNALDATE", b"FLAGS"]):
            message_id = message_id_of(info.get(_MESSAGE_ID, b""))
            if message_id in known:
                out.append(_Taken(make_ref(validity, uid), message_id, "revalidated"))
            elif self._was_excluded(info, first_connected):
                out.append(_Taken(make_ref(validity, uid), message_id, "baseline"))
        return out

    def _was_excluded(self, info: dict[bytes, Any], first_connected: datetime) -> bool:
        """Whether ``import_existing`` kept this mail out on the first connection."""
        rule, arrived = self._box.import_existing, info.get(b"INTERNALDATE")
        if rule == "all" or arrived is None or _aware(arrived) >= first_connected:
            return False
        return rule == "none" or SEEN in info.get(b"FLAGS", ())

    # -- commands --------------------------------------------------------------------------

    def _uids(self, criteria: Any = "ALL") -> list[int]:
        """UIDs in the selected folder matching ``criteria``, ascending."""
        return sorted(self._session.run("SEARCH", lambda c: c.search(criteria)))

    def _existing(self, uids: list[int]) -> list[int]:
        """Those of ``uids`` still in the selected folder."""
        found: list[int] = []
        for chunk in _chunks(uids, UIDS_PER_COMMAND):
            found += self._uids(["UID", ",".join(map(str, chunk))])
        return found

    def _fetch(self, uids: list[int], items: list[bytes]) -> Iterator[tuple[int, dict[bytes, Any]]]:
        """``(uid, data)`` for every UID still there, ``UIDS_PER_COMMAND`` at a time."""
        for chunk in _chunks(uids, UIDS_PER_COMMAND):
            yield from self._fetch_once(chunk, items).items()

    def _fetch_once(self, uids: list[int], items: list[bytes]) -> dict[int, dict[bytes, Any]]:
        verb = "FETCH " + " ".join(i.decode() for i in items)
        return self._session.run(verb, lambda c: _fetch_checked(c, uids, items))

    def _sizes(self, uids: list[int]) -> dict[int, int]:
        found = self._fetch(uids, [b"RFC822.SIZE"])
        return {uid: int(info[b"RFC822.SIZE"]) for uid, info in found if b"RFC822.SIZE" in info}

    def _download(self, wanted: list[tuple[str, int, int]]) -> Iterator[Fetched]:
        """Fetched items in the order of ``wanted`` (ref, uid, size); bodies in batches."""
        batch: list[tuple[str, int, int]] = []
        for ref, uid, size in wanted:
            if size > self._box.max_mail_mb * MB:
                yield from self._bodies(batch)
                batch = []
                yield Fetched(ref, None, skipped=self._too_large(size))
                continue
            batch.append((ref, uid, size))
            if len(batch) >= BODIES_PER_COMMAND or sum(s for *_, s in batch) >= BYTES_PER_COMMAND:
                yield from self._bodies(batch)
                batch = []
        yield from self._bodies(batch)

    def _bodies(self, batch: list[tuple[str, int, int]]) -> Iterator[Fetched]:
        if not batch:
            return
        found = self._fetch_once([uid for _, uid, _ in batch], [b"BODY.PEEK[]"])
        for ref, uid, _ in batch:
            raw = found.get(uid, {}).get(b"BODY[]")
            if raw is not None:  # None: expunged since the size was read
                self._trace_mail(ref, raw)
                yield Fetched(ref, raw)

    def _too_large(self, size: int) -> str:
        return (
            f"the mail is {size / MB:.1f} MB, over this mailbox's limit of "
            f"{self._box.max_mail_mb:g} MB (max_mail_mb)"
        )

    def _trace_mail(self, ref: str, raw: bytes) -> None:
        if self._session.trace:
            self._session.trace.note(f"mail {ref}, {len(raw)} bytes:\n{describe_mail(raw)}")


def open_imap(box: MailboxSettings, state: SourceState, needs: SourceNeeds) -> ImapSource:
    """The ``SOURCES`` factory for ``imap`` and ``imaps``; connects on first use.

    Raises ``ConfigError`` for ``auth: oauth`` without a token provider.
    """
    return ImapSource(box, state, tokens=needs.tokens, sockets=needs.sockets, trace=needs.trace)


def _require_credentials(box: MailboxSettings, tokens: TokenProvider | None) -> None:
    if not box.username:
        raise ConfigError(f"mailbox {box.name!r}: protocol {box.protocol} needs `username`")
    if box.auth == "oauth" and tokens is None:
        raise oauth_not_set_up(box.name)
    if box.auth == "basic" and box.password is None:
        raise ConfigError(
            f"mailbox {box.name!r}: protocol {box.protocol} with auth basic needs `password`"
        )


def _fetch_checked(
    client: IMAPClient, uids: list[int], items: list[bytes]
) -> dict[int, dict[bytes, Any]]:
    # The server may add untagged FETCH responses for flag changes made by other clients;
    # only the UIDs asked for are wanted.
    asked = set(uids)
    return {uid: data for uid, data in client.fetch(uids, items).items() if uid in asked}


def _add_seen(uids: list[int]) -> Callable[[IMAPClient], object]:
    return lambda client: client.add_flags(uids, [SEEN], silent=True)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
