"""Small interfaces that handlers of several stages depend on."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class BlobStore(Protocol):
    """Content-addressed bytes (claim check): mails, bodies, attachments, error logs."""

    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotent) and return its SHA-256 hex digest."""
        ...

    def get(self, sha256: str) -> bytes:
        """Return the bytes stored under ``sha256``; raises ``KeyError`` when absent."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...
