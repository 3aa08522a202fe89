"""Stateful fakes of the ports, for unit tests of handlers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from contracts.dead import DeadLetter
from contracts.ids import content_hash
from contracts.mail import MailFetched
from services.runtime.errors import StoreOutage


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

    def claim(self, dead: DeadLetter, at: datetime) -> bool:
        if dead.mail_id in self.final:
            return False
        self.entries.setdefault(dead.mail_id, dead)
        return True


class InMemoryDeliveryStarts:
    """``DeliveryStarts`` in a dict; ``down`` makes every call fail as a store outage would."""

    def __init__(self) -> None:
        self.starts: dict[str, int] = {}
        self.down = False
        self.begun = 0

    def begin(self, key: str) -> int:
        self._check()
        self.begun += 1
        self.starts[key] = self.starts.get(key, 0) + 1
        return self.starts[key]

    def forgive(self, key: str) -> None:
        self._check()
        self.starts[key] = self.starts.get(key, 0) - 1
        if self.starts[key] <= 0:
            del self.starts[key]

    def finish(self, key: str) -> None:
        self._check()
        self.starts.pop(key, None)

    def _check(self) -> None:
        if self.down:
            raise StoreOutage("database 127.0.0.1:5432 cannot be reached: connection refused")
