"""The clock's time in UTC, as the store keeps it."""

from __future__ import annotations

from datetime import UTC, datetime

from services.runtime.ports import Clock


def utc_now(clock: Clock) -> datetime:
    # SQLite keeps no zone and compares times as text: all are written in UTC.
    return clock.now().astimezone(UTC)
