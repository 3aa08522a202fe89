"""When an email the outgoing server did not take is tried again, and when it is given up.

The schedule is kept in the store (``notifications.next_attempt_at``), not in a sleeping
process, so it survives restarts and any notifier process may make the next attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from contracts.settings import RetrySettings

# 2**30 times any sensible first delay is far beyond every cap; it keeps timedelta in range.
_MAX_EXPONENT = 30


@dataclass(frozen=True)
class RetryPolicy:
    """Doubling waits from ``first_delay`` up to ``max_delay``; give up after either bound."""

    first_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(minutes=30)
    give_up_after: timedelta = timedelta(hours=24)
    max_attempts: int = 60

    @classmethod
    def of(cls, settings: RetrySettings) -> RetryPolicy:
        return cls(
            first_delay=timedelta(seconds=settings.first_delay_seconds),
            max_delay=timedelta(minutes=settings.max_delay_minutes),
            give_up_after=timedelta(hours=settings.give_up_after_hours),
            max_attempts=settings.max_attempts,
        )


def retry_delay(attempts: int, policy: RetryPolicy) -> timedelta:
    """The wait after ``attempts`` failed attempts: 30 s, 1 min, 2 min, 4 min … up to 30 min."""
    exponent = min(max(attempts - 1, 0), _MAX_EXPONENT)
    return min(policy.first_delay * (1 << exponent), policy.max_delay)


def next_attempt_at(
    attempts: int, created_at: datetime, now: datetime, policy: RetryPolicy
) -> datetime | None:
    """When to try again after ``attempts`` failed attempts; None when the email is given up."""
    if attempts >= policy.max_attempts:
        return None
    at = now + retry_delay(attempts, policy)
    return at if at - created_at <= policy.give_up_after else None
