"""How an ``auth: oauth`` mailbox's tokens stand: for ``mailroom mailbox show`` and for the
warning before a refresh token lapses."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from contracts.mailbox_oauth import is_microsoft_token_url
from contracts.settings import MailboxSettings
from services.oauth.token_store import StoredTokens

#: Microsoft's refresh tokens lapse after 90 days without use (each refresh rotates them).
MICROSOFT_IDLE_LIFETIME = timedelta(days=90)


def lapses_at(box: MailboxSettings, stored: StoredTokens) -> datetime | None:
    """When the refresh token is expected to lapse unused; None when the provider does not say
    (other providers keep refresh tokens until revoked, or publish no rule)."""
    if not is_microsoft_token_url(box.token_url):
        return None
    last = max(d for d in (stored.refresh_issued_at, stored.refresh_used_at) if d is not None)
    return last + MICROSOFT_IDLE_LIFETIME


def token_health(
    box: MailboxSettings, stored: StoredTokens | None, now: datetime
) -> dict[str, Any]:
    """The tokens' state without the tokens: expiry, age, account, last failure."""
    if stored is None:
        return {"authorized": False, "fix": f"run `mailroom oauth authorize {box.name}`"}
    expires = stored.access_expires_at
    lapse = lapses_at(box, stored)
    return {
        "authorized": True,
        "account": stored.account,
        "access_token_expires_at": _iso(expires),
        "access_token_expired": expires is None or expires <= now,
        "refresh_token_issued_at": _iso(stored.refresh_issued_at),
        "refresh_token_age_days": round((now - stored.refresh_issued_at) / timedelta(days=1), 1),
        "refresh_token_last_used_at": _iso(stored.refresh_used_at),
        "refresh_token_lapses_at": _iso(lapse),
        "last_refresh_failure": stored.last_failure,
        "last_refresh_failure_at": _iso(stored.last_failure_at),
    }


def lapsing(
    boxes: Iterable[tuple[MailboxSettings, timedelta]],
    stored: dict[str, StoredTokens],
    now: datetime,
) -> Iterator[tuple[MailboxSettings, datetime]]:
    """Of ``(mailbox, how long before a lapse its admins want to know)``: the mailboxes whose
    refresh token lapses within that time and whose admins were not warned about that date
    yet, with the date."""
    for box, warning in boxes:
        tokens = stored.get(box.name)
        if box.auth != "oauth" or tokens is None:
            continue
        lapse = lapses_at(box, tokens)
        if lapse is not None and now >= lapse - warning and tokens.lapse_warned_for != lapse:
            yield box, lapse


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
