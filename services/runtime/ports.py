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


class DeliveryStarts(Protocol):
    """Mailroom's own count of redelivered messages whose handling began and never ended.

    Keyed by message (queue and body hash). Each method commits on its own and raises
    ``StoreOutage`` when the store cannot be reached.
    """

    def begin(self, key: str) -> int:
        """Count one more start; returns the starts on record, this one included."""
        ...

    def forgive(self, key: str) -> None:
        """Take back the last start: it ended in an outage, which is no mail's fault."""
        ...

    def finish(self, key: str) -> None:
        """The message was handled (or set aside): forget its starts."""
        ...


class Metrics(Protocol):
    """What the stages tell ``/metrics`` (``runtime.metrics.StageMetrics``). Every method is
    safe to call from any thread and never raises."""

    def handled(self, stage: str, outcome: str, count: int = 1) -> None:
        """``count`` more mails (or messages) of ``stage`` ended with ``outcome``."""
        ...

    def handling_took(self, stage: str, seconds: float) -> None:
        """One message of ``stage`` took ``seconds`` to handle, retries included."""
        ...

    def dead_lettered(self, stage: str, count: int = 1) -> None:
        """``stage`` sent ``count`` more mails to the dead-letter queue."""
        ...
