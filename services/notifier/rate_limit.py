"""Loop protection by numbers: at most so many notification emails to one address per window.

An auto-responder that answers every notification with a new mail would otherwise get a new
notification for each of its answers, forever. Support reps' addresses count like any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from contracts.settings import RateLimitSettings


@dataclass(frozen=True)
class RateLimit:
    per_address: int = 10
    window: timedelta = timedelta(minutes=60)

    @classmethod
    def of(cls, settings: RateLimitSettings) -> RateLimit:
        return cls(settings.per_address, timedelta(minutes=settings.per_minutes))


def over_limit(
    recipients: Sequence[str], recent: Mapping[str, int], limit: RateLimit
) -> str | None:
    """Why an email to ``recipients`` must not go out, or None when it may.

    ``recent`` holds, per lower-cased address, how many emails to it were kept (not
    suppressed) within the window before this one.
    """
    for address in recipients:
        if recent.get(address.lower(), 0) >= limit.per_address:
            n, minutes = limit.per_address, limit.window.total_seconds() / 60
            emails = "email" if n == 1 else "emails"
            return f"rate limit: {n} {emails} to {address} in {minutes:g} minutes"
    return None
