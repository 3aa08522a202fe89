"""Exchange mailboxes over EWS (``protocol: ews``), on exchangelib.

A mail's ref is its EWS ItemId (change keys change with every edit; the id does not). The
server's read flag is the state: unread mail in the inbox is new, and a mail is marked read
only after its hand-off. Nothing is kept in the store, so ``import_existing`` has one
meaning here: ``unread`` (the default), and ``all``/``none`` read the same way, since the
server cannot tell what arrived before Mailroom's first connection.

- Listing pages through FindItem (unread, DateTimeReceived ascending, ids only) until the
  server says the last item is in range; all ids are collected before anything is marked,
  because marking shrinks the unread view under the pages still to come.
- Mail is downloaded as MimeContent with GetItem, in batches; sizes are read first.
- A move gives a mail a new ItemId: refs in the error folder are those new ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from exchangelib import Account, Message
from exchangelib.errors import ErrorInvalidIdMalformed, ErrorItemNotFound

from contracts.settings import MailboxSettings
from services.poller.sources.base import Fetched, NotMarked, SourceState
from services.poller.sources.debug import describe_mail
from services.poller.sources.ews_client import EwsClient
from services.poller.sources.ews_folders import create_error_folder, find_error_folder, inbox
from services.poller.sources.needs import SourceNeeds
from services.runtime.errors import ConfigError, InfraError

MB = 1024 * 1024
#: FindItem page size asked for; servers may cap it lower (EWSFindCountLimit).
PAGE_SIZE = 200
#: Ids per GetItem/UpdateItem/MoveItem request.
IDS_PER_REQUEST = 100
#: MimeContent downloads per GetItem, and bytes: few round trips, bounded memory.
BODIES_PER_REQUEST = 10
BYTES_PER_REQUEST = 20 * MB
#: Per-mail answers that mean "no such mail (any more)": an unknown ref is ignored.
_GONE = (ErrorItemNotFound, ErrorInvalidIdMalformed)


class EwsSource:
    """One Exchange inbox and its error folder; see the module docstring.

    Connects on first use. Every method raises ``ConfigError`` for a setting to fix,
    ``InfraError`` for a failure that may pass, and ``Throttled`` when the server asks to
    slow down for longer than a round waits.
    """

    supports_error_folder = True

    def __init__(self, box: MailboxSettings, needs: SourceNeeds) -> None:
        """Raises ``ConfigError`` for a missing ``connect_url``, ``username`` or credential.
        The waits a busy server asks for go through ``needs.sleep``."""
        self._box = box
        self._client = EwsClient(box, needs)
        self._error_folder: Any = None

    # -- MailSource ------------------------------------------------------------------------

    def list_new(self, limit: int) -> list[str]:
        """ItemIds of unread inbox mail, oldest first, at most ``limit``."""
        if limit <= 0:
            return []
        return self._client.run("listing the inbox", lambda a: _unread_ids(inbox(a), limit))

    def fetch_many(self, refs: Sequence[str]) -> Iterator[Fetched]:
        """The mails' MIME bytes (nothing is marked). A mail over ``max_mail_mb`` comes back
        with ``raw=None`` and the reason; refs of mails no longer there are left out."""
        wanted = list(dict.fromkeys(refs))
        if not wanted:
            return iter(())
        sizes = self._client.run("reading mail sizes", lambda a: _sizes(a, wanted))
        return self._download([(ref, sizes[ref]) for ref in wanted if ref in sizes])

    def fetch_raw(self, ref: str) -> bytes:
        """One mail's bytes. Raises ``InfraError`` when it is gone, ``ConfigError`` when it
        is over ``max_mail_mb``."""
        for item in self.fetch_many([ref]):
            if item.raw is None:
                raise ConfigError(f"mailbox {self._box.name!r}: mail {ref}: {item.skipped}")
            return item.raw
        raise InfraError(f"mailbox {self._box.name!r}: mail {ref} is no longer in the mailbox")

    def mark_handed_off(self, refs: Sequence[str]) -> None:
        """Mark the mails read. Unknown refs are ignored; raises ``NotMarked`` for mails the
        server would not mark, after marking the others."""
        failures = self._client.run("marking mail read", lambda a: _set_read(a, refs, True))
        if failures:
            raise NotMarked(failures)

    def move_to_error_folder(self, refs: Sequence[str]) -> None:
        """Move mails into the error folder, creating it when missing. A ref that is gone
        (moved already: a move changes the id) is skipped."""
        if not refs:
            return

        def move(account: Account) -> None:
            _raise_failures(
                self._box, "move to the error folder", _move(account, refs, self._errors(account))
            )

        try:
            self._client.run("moving mail to the error folder", move)
        except Exception:
            self._error_folder = None  # it may have been deleted: look it up again next time
            raise

    def move_to_inbox(self, refs: Sequence[str]) -> None:
        """Move mails of the error folder back to the inbox, unread, to be fetched again
        (under new ids). Refs not in the error folder are skipped."""

        def move_back(account: Account) -> None:
            folder = self._errors(account, create=False)
            if folder is None:
                return
            present = set(_all_ids(folder))
            chosen = [r for r in dict.fromkeys(refs) if r in present]
            if not chosen:
                return
            # Unread first: a move that then fails leaves an unread mail in the error folder,
            # never a read one in the inbox that would not be fetched again.
            _raise_failures(self._box, "mark unread", _set_read(account, chosen, False))
            _raise_failures(
                self._box, "move back to the inbox", _move(account, chosen, inbox(account))
            )

        self._client.run("moving mail back to the inbox", move_back)

    def error_folder_refs(self) -> list[str]:
        """ItemIds of the mails in the error folder, oldest first; [] without the folder."""

        def listing(account: Account) -> list[str]:
            folder = self._errors(account, create=False)
            return [] if folder is None else _all_ids(folder)

        return self._client.run("listing the error folder", listing)

    def error_folder_message_ids(self) -> dict[str, str | None]:
        def read(account: Account) -> dict[str, str | None]:
            folder = self._errors(account, create=False)
            refs = [] if folder is None else _all_ids(folder)
            found: dict[str, str | None] = {}
            for chunk in _chunks(refs, IDS_PER_REQUEST):
                for ref, item in zip(chunk, _get(account, chunk, ["message_id"]), strict=True):
                    if not isinstance(item, Exception):
                        found[ref] = item.message_id or None
            return found

        return self._client.run("reading the error folder's Message-IDs", read)

    def fetch_oldest_unmarked(self) -> bytes | None:
        """The oldest unread inbox mail, left unread; None when there is none. Raises
        ``ConfigError`` when it is over ``max_mail_mb``."""
        for ref in self.list_new(1):
            for item in self.fetch_many([ref]):
                if item.raw is None:
                    raise ConfigError(
                        f"mailbox {self._box.name!r}: the oldest new mail, {ref}, is not shown: "
                        f"{item.skipped}"
                    )
                return item.raw
        return None

    def close(self) -> None:
        """Close the connections; never raises. The source connects again when used."""
        self._error_folder = None
        self._client.close()

    # -- helpers -----------------------------------------------------------------------------

    def _errors(self, account: Account, *, create: bool = True) -> Any:
        """The error folder, found once per connection; created when missing if ``create``."""
        if self._error_folder is None:
            name = self._box.error_folder.name
            found = find_error_folder(account, name)
            if found is None and create:
                found = create_error_folder(account, name)
                self._note(f"created the error folder {name!r} under the inbox")
            self._error_folder = found
        return self._error_folder

    def _download(self, wanted: list[tuple[str, int]]) -> Iterator[Fetched]:
        """Fetched items in the order of ``wanted`` (ref, size); bodies in batches."""
        batch: list[str] = []
        batch_bytes = 0
        for ref, size in wanted:
            if size > self._box.max_mail_mb * MB:
                yield from self._bodies(batch)
                batch, batch_bytes = [], 0
                yield Fetched(ref, None, skipped=self._too_large(size))
                continue
            batch.append(ref)
            batch_bytes += size
            if len(batch) >= BODIES_PER_REQUEST or batch_bytes >= BYTES_PER_REQUEST:
                yield from self._bodies(batch)
                batch, batch_bytes = [], 0
        yield from self._bodies(batch)

    def _bodies(self, refs: list[str]) -> Iterator[Fetched]:
        if not refs:
            return
        items = self._client.run("downloading mail", lambda a: _get(a, refs, ["mime_content"]))
        for ref, item in zip(refs, items, strict=True):
            if isinstance(item, _GONE):
                continue  # moved or deleted since its size was read
            if isinstance(item, Exception):
                yield Fetched(
                    ref,
                    None,
                    skipped=f"Exchange would not give the mail's MIME content ({item})",
                    error_class="MailUnreadable",
                )
                continue
            raw = item.mime_content
            if not isinstance(raw, bytes) or not raw:
                raise InfraError(
                    f"mailbox {self._box.name!r}: Exchange sent mail {ref} without its MIME "
                    "content; will try again next round"
                )
            if len(raw) > self._box.max_mail_mb * MB:  # the size read first was the store's
                yield Fetched(ref, None, skipped=self._too_large(len(raw)))
                continue
            self._note(f"mail {ref}, {len(raw)} bytes:\n{describe_mail(raw)}")
            yield Fetched(ref, raw)

    def _too_large(self, size: int) -> str:
        return (
            f"the mail is {size / MB:.1f} MB, over this mailbox's limit of "
            f"{self._box.max_mail_mb:g} MB (max_mail_mb)"
        )

    def _note(self, text: str) -> None:
        if self._client.trace is not None:
            self._client.trace.note(text)


def open_ews(box: MailboxSettings, state: SourceState, needs: SourceNeeds) -> EwsSource:
    """The ``SOURCES`` factory for ``ews``; connects on first use. ``state`` is unused: the
    server's read flag is the state."""
    return EwsSource(box, needs)


# -- operations (each safe to repeat) ---------------------------------------------------------


def _unread_ids(folder: Any, limit: int) -> list[str]:
    query = folder.filter(is_read=False).order_by("datetime_received")
    query.page_size = min(PAGE_SIZE, limit)
    # The slice sets how many to ask for; a server that pages below it may send a few more.
    return [str(i) for i in query.values_list("id", flat=True)[:limit]][:limit]


def _all_ids(folder: Any) -> list[str]:
    query = folder.all().order_by("datetime_received")
    query.page_size = PAGE_SIZE
    return [str(i) for i in query.values_list("id", flat=True)]


def _get(account: Account, refs: list[str], fields: list[str]) -> list[Any]:
    """GetItem: one Item or exception per ref, in order."""
    return list(
        account.fetch(ids=[(r, None) for r in refs], folder=inbox(account), only_fields=fields)
    )


def _sizes(account: Account, refs: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(refs, IDS_PER_REQUEST):
        for ref, item in zip(chunk, _get(account, chunk, ["size"]), strict=True):
            if isinstance(item, _GONE):
                continue
            if isinstance(item, Exception):
                raise item
            found[ref] = int(item.size or 0)
    return found


def _set_read(account: Account, refs: Iterable[str], read: bool) -> dict[str, str]:
    """UpdateItem IsRead; the failures by ref (refs that are gone are not failures)."""
    failures: dict[str, str] = {}
    for chunk in _chunks(list(dict.fromkeys(refs)), IDS_PER_REQUEST):
        changes = [
            (Message(account=account, id=r, changekey=None, is_read=read), ["is_read"])
            for r in chunk
        ]
        for ref, result in zip(chunk, account.bulk_update(items=changes), strict=True):
            if isinstance(result, Exception) and not isinstance(result, _GONE):
                failures[ref] = f"{type(result).__name__}: {result}"
    return failures


def _move(account: Account, refs: Sequence[str], to_folder: Any) -> dict[str, str]:
    """MoveItem; the failures by ref (refs that are gone are not failures)."""
    failures: dict[str, str] = {}
    for chunk in _chunks(list(dict.fromkeys(refs)), IDS_PER_REQUEST):
        results = account.bulk_move(ids=[(r, None) for r in chunk], to_folder=to_folder)
        for ref, result in zip(chunk, results, strict=False):
            if isinstance(result, Exception) and not isinstance(result, _GONE):
                failures[ref] = f"{type(result).__name__}: {result}"
    return failures


def _raise_failures(box: MailboxSettings, what: str, failures: dict[str, str]) -> None:
    if failures:
        detail = "; ".join(f"{ref}: {why}" for ref, why in failures.items())
        raise InfraError(
            f"mailbox {box.name!r}: Exchange refused to {what} {len(failures)} mails ({detail})"
        )


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
