"""The mailbox interface every protocol implements (Maildir, IMAP, POP; EWS and Graph later)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.runtime.errors import InfraError


@dataclass(frozen=True)
class Fetched:
    """One mail taken from a source: its bytes, or why they were not downloaded."""

    ref: str
    raw: bytes | None
    #: Set when the mail was not downloaded (over the size limit, unreadable, impossible to
    #: mark): a sentence for the DLQ.
    skipped: str | None = None
    #: The dead-letter entry's error class when ``skipped`` is set.
    error_class: str = "MailTooLarge"


class Refused(InfraError):
    """The server answered and refused one command: the connection itself is fine."""


class Throttled(InfraError):
    """The server asked Mailroom to slow down (EWS ErrorServerBusy, HTTP 429/503 with
    Retry-After) for longer than a round waits. No fault of the mailbox: the round ends and
    the next one carries on; it never counts toward the connectivity alert."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotMarked(InfraError):
    """Some mails could not be marked as handed off; every other one was.

    A fault of those mails only (a name the file system refuses, a message the server will
    not flag), not of the mailbox: the poller reports each one and fetches it no more.
    """

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = failures
        detail = "; ".join(f"{ref}: {why}" for ref, why in failures.items())
        super().__init__(f"{len(failures)} mails could not be marked ({detail})")


class MailSource(Protocol):
    """One mailbox, seen through its protocol.

    A ref is the protocol's own identity of a mail (Maildir key, ``UIDVALIDITY:UID``, POP
    UIDL, EWS item id, Graph id); the same mail always has the same ref. Every method
    raises ``ConfigError`` for a setting to fix (wrong password, missing folder) and
    ``InfraError`` for a failure that may pass (timeout, server down).
    """

    supports_error_folder: bool

    def list_new(self, limit: int) -> list[str]:
        """Refs of mails not yet handed off, oldest first, at most ``limit``."""
        ...

    def fetch_many(self, refs: Sequence[str]) -> Iterator[Fetched]:
        """The mails' raw RFC 5322 bytes, without marking them (batched where possible)."""
        ...

    def mark_handed_off(self, refs: Sequence[str]) -> None:
        """Mark mails as taken (seen; deleted on POP). Only after a durable hand-off.

        Raises ``NotMarked`` naming the mails that could not be marked, after marking the rest.
        """
        ...

    def move_to_error_folder(self, refs: Sequence[str]) -> None:
        """Move mails into the error folder, creating it when missing. A mail already there
        counts as moved. A move that did not happen raises ``InfraError``; so does a mail in
        neither folder, where the source can tell (a Maildir: refs stay the same)."""
        ...

    def move_to_inbox(self, refs: Sequence[str]) -> None:
        """Move mails from the error folder back to the inbox, unmarked, to be fetched again."""
        ...

    def error_folder_refs(self) -> list[str]:
        """Refs of the mails now in the error folder."""
        ...

    def error_folder_message_ids(self) -> dict[str, str | None]:
        """The Message-ID of each mail now in the error folder, by its ref there. Where the
        folder gives a mail a ref of its own (IMAP), this is how its entry finds it."""
        ...

    def fetch_oldest_unmarked(self) -> bytes | None:
        """The oldest mail not yet handed off, left exactly as it was; None when there is none."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Cursor:
    """Where a source stands: the folder's validity token and when Mailroom first connected.

    IMAP adds, for this validity: ``watermark``, a UID such that every UID up to it is
    taken (or gone: UIDs are never reused); ``modseq``, the folder's HIGHESTMODSEQ when all
    of it was taken; and ``generation``, which grows whenever a taken ref is let go.
    """

    validity: str
    first_connected_at: datetime
    watermark: int = 0
    modseq: int | None = None
    generation: int = 0


class SourceState(Protocol):
    """What the store remembers of one mailbox for protocols whose server does not (IMAP, POP).

    "Taken" refs are the ones Mailroom must not fetch again: handed off, skipped on the
    first connection by ``import_existing``, or dead-lettered without download.
    """

    def cursor(self) -> Cursor | None: ...

    def save_cursor(self, cursor: Cursor) -> None: ...

    def advance_watermark(
        self, cursor: Cursor, watermark: int, modseq: int | None
    ) -> Cursor | None:
        """Raise the watermark (and set ``modseq`` when given) of ``cursor``, as read before.

        Returns the cursor now stored, or None, changing nothing, when the stored one is
        no longer that one's validity and generation: a ref was let go meanwhile, which
        the reads behind ``watermark`` may not have seen.
        """
        ...

    def taken_refs(self, reason: str | None = None) -> set[str]:
        """Refs taken (for ``reason`` only, when given: handed_off, baseline, skipped, ...)."""
        ...

    def taken_reasons(self) -> dict[str, str]:
        """Every taken ref with its reason, in one read."""
        ...

    def taken_among(self, refs: list[str]) -> set[str]:
        """Those of ``refs`` that are taken: a batch's check, without reading them all."""
        ...

    def taken_message_ids(self) -> set[str]:
        """Message-IDs of mails handed off from this mailbox (for a UIDVALIDITY change)."""
        ...

    def mark_taken(
        self, items: Sequence[tuple[str, str | None]], reason: str, *, replace: bool = False
    ) -> None:
        """Remember ``(ref, message_id)`` pairs as taken; idempotent. With ``replace``, a
        ref taken before is held for this reason from now on (in one step: never untaken)."""
        ...

    def forget(self, refs: Sequence[str]) -> None:
        """Let refs go: taken no more (POP mail the server no longer lists, a Maildir mail
        moved back). On IMAP the watermark drops below any of them."""
        ...

    def drop_other_validities(self, validity: str) -> None:
        """Drop refs of UIDVALIDITY values other than ``validity`` that carry no Message-ID:
        never listed again, and of no use to a later revalidation."""
        ...
