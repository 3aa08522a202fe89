"""Stateful fakes of the ports, for unit tests of handlers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.ids import content_hash


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
