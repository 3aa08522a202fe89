"""Stateful fakes of the poller's ports, for unit and contract tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence

from services.poller.sources.base import Cursor, Fetched
from services.poller.sources.imap_listing import uid_of
from services.runtime.errors import InfraError
from services.runtime.mail_text import message_id_of


class FakeMailSource:
    """A MailSource in memory (``services/poller/sources/base.py``), with an error folder.

    Mails are listed in the order they were delivered (oldest first). ``deliver`` puts a mail
    into the inbox and returns its ref. Set ``fail_with`` to make every call raise it, the way
    a server that is down or refuses the password would.
    """

    def __init__(self, *, supports_error_folder: bool = True) -> None:
        self.supports_error_folder = supports_error_folder
        self.fail_with: Exception | None = None
        self.closed = False
        self._raw: dict[str, bytes] = {}
        self._order: dict[str, int] = {}
        self._seen: set[str] = set()
        self._inbox: set[str] = set()
        self._errors: set[str] = set()
        self._counter = 0

    def deliver(self, raw: bytes, ref: str | None = None) -> str:
        """Put a new, unseen mail into the inbox; returns its ref."""
        self._counter += 1
        ref = ref or f"fake-{self._counter}"
        self._raw[ref] = bytes(raw)
        self._order[ref] = self._counter
        self._inbox.add(ref)
        return ref

    @property
    def handed_off(self) -> set[str]:
        """Refs marked as taken, wherever they are now."""
        return set(self._seen)

    def list_new(self, limit: int) -> list[str]:
        self._check()
        return self._oldest_first(r for r in self._inbox if r not in self._seen)[:limit]

    def fetch_raw(self, ref: str) -> bytes:
        self._check()
        if ref not in self._inbox:
            raise InfraError(f"mail {ref} vanished from the fake mailbox")
        return self._raw[ref]

    def fetch_many(self, refs: Sequence[str]) -> Iterator[Fetched]:
        for ref in refs:
            yield Fetched(ref, self.fetch_raw(ref))

    def mark_handed_off(self, refs: Sequence[str]) -> None:
        self._check()
        self._seen.update(r for r in refs if r in self._inbox)

    def move_to_error_folder(self, refs: Sequence[str]) -> None:
        self._check()
        missing = [r for r in refs if r not in self._inbox and r not in self._errors]
        for ref in refs:
            if ref in self._inbox:
                self._inbox.remove(ref)
                self._errors.add(ref)
        if missing:
            raise InfraError(f"mails {', '.join(missing)} are not in the fake mailbox")

    def move_to_inbox(self, refs: Sequence[str]) -> None:
        self._check()
        for ref in refs:
            if ref in self._errors:
                self._errors.remove(ref)
                self._seen.discard(ref)
                self._inbox.add(ref)

    def error_folder_refs(self) -> list[str]:
        self._check()
        return sorted(self._errors)

    def error_folder_message_ids(self) -> dict[str, str | None]:
        self._check()
        return {ref: message_id_of(self._raw[ref]) for ref in sorted(self._errors)}

    def fetch_oldest_unmarked(self) -> bytes | None:
        self._check()
        oldest = self._oldest_first(r for r in self._inbox if r not in self._seen)
        return self._raw[oldest[0]] if oldest else None

    def close(self) -> None:
        self.closed = True

    def _oldest_first(self, refs: Iterable[str]) -> list[str]:
        return sorted(refs, key=self._order.__getitem__)

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with


class InMemorySourceState:
    """A ``SourceState`` in memory (``services/poller/sources/base.py``)."""

    def __init__(self) -> None:
        self._cursor: Cursor | None = None
        self._taken: dict[str, tuple[str | None, str]] = {}

    def cursor(self) -> Cursor | None:
        return self._cursor

    def save_cursor(self, cursor: Cursor) -> None:
        self._cursor = cursor

    def advance_watermark(
        self, cursor: Cursor, watermark: int, modseq: int | None
    ) -> Cursor | None:
        now = self._cursor
        if now is None or (now.validity, now.generation) != (cursor.validity, cursor.generation):
            return None
        self._cursor = dataclasses.replace(
            cursor,
            watermark=max(watermark, cursor.watermark),
            modseq=cursor.modseq if modseq is None else modseq,
        )
        return self._cursor

    def taken_refs(self, reason: str | None = None) -> set[str]:
        return {r for r, (_, why) in self._taken.items() if reason in (None, why)}

    def taken_reasons(self) -> dict[str, str]:
        return {r: why for r, (_, why) in self._taken.items()}

    def taken_among(self, refs: list[str]) -> set[str]:
        return set(refs) & set(self._taken)

    def taken_message_ids(self) -> set[str]:
        return {mid for mid, _ in self._taken.values() if mid is not None}

    def mark_taken(
        self, items: Sequence[tuple[str, str | None]], reason: str, *, replace: bool = False
    ) -> None:
        for ref, message_id in items:
            if replace:
                self._taken.pop(ref, None)
            self._taken.setdefault(ref, (message_id, reason))

    def forget(self, refs: Sequence[str]) -> None:
        held = [ref for ref in refs if self._taken.pop(ref, None) is not None]
        if held and (cursor := self._cursor) is not None:
            uids = [u for ref in held if (u := uid_of(ref, cursor.validity)) is not None]
            low = min([cursor.watermark + 1, *uids]) - 1
            self._cursor = dataclasses.replace(
                cursor, watermark=low, modseq=None, generation=cursor.generation + 1
            )

    def drop_other_validities(self, validity: str) -> None:
        for ref, (message_id, _) in list(self._taken.items()):
            if message_id is None and not ref.startswith(f"{validity}:"):
                del self._taken[ref]
