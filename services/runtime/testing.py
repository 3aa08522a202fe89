"""Stateful fakes of the ports, for unit tests of handlers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from contracts.dead import DeadLetter
from contracts.ids import content_hash
from contracts.mail import MailFetched


class InMemoryBlobStore:
    """A BlobStore in a dict."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        sha = content_hash(data)
        self.blobs[sha] = bytes(data)
        return sha

    def get(self, sha256: str) -> bytes:
        return self.blobs[sha256]


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


class InMemoryFetchedLog:
    """The poller's FetchedLog: one record per mail id, counting how often it was recorded."""

    def __init__(self) -> None:
        self.records: dict[str, MailFetched] = {}
        self.counts: dict[str, int] = {}

    def record(self, fetched: MailFetched, at: datetime) -> None:
        self.records.setdefault(fetched.mail_id, fetched)
        self.counts[fetched.mail_id] = self.counts.get(fetched.mail_id, 0) + 1


class InMemoryDeadLetterLog:
    """The poller's DeadLetterLog: one entry per mail; ``final`` holds mails already done."""

    def __init__(self, final: Iterable[str] = ()) -> None:
        self.final = set(final)
        self.entries: dict[str, DeadLetter] = {}

    def has_final_outcome(self, mail_id: str) -> bool:
        return mail_id in self.final

    def record(self, dead: DeadLetter, at: datetime) -> bool:
        if dead.mail_id in self.entries:
            return False
        self.entries[dead.mail_id] = dead
        return True
