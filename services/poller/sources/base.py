"""The mailbox interface every protocol implements (Maildir now; IMAP, POP, EWS, Graph later)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


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

    def fetch_raw(self, ref: str) -> bytes:
        """The mail's raw RFC 5322 bytes, without marking it."""
        ...

    def mark_handed_off(self, refs: Sequence[str]) -> None:
        """Mark mails as taken (seen; deleted on POP). Only after a durable hand-off."""
        ...

    def move_to_error_folder(self, refs: Sequence[str]) -> None:
        """Move mails into the error folder, creating it when missing; unknown refs are skipped."""
        ...

    def move_to_inbox(self, refs: Sequence[str]) -> None:
        """Move mails from the error folder back to the inbox, unmarked, to be fetched again."""
        ...

    def error_folder_refs(self) -> list[str]:
        """Refs of the mails now in the error folder."""
        ...

    def fetch_oldest_unmarked(self) -> bytes | None:
        """The oldest mail not yet handed off, left exactly as it was; None when there is none."""
        ...

    def close(self) -> None: ...
