"""What a token endpoint hands out, and how an OAuth client is used (the seam between the
Microsoft and the generic client and the rest)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

#: When the answer gives no ``expires_in``: the usual lifetime (an hour), on the safe side.
DEFAULT_LIFETIME = timedelta(minutes=55)


@dataclass(frozen=True)
class Grant:
    """Tokens from one answer of the token endpoint; ``repr`` leaves the tokens out."""

    access_token: str
    expires_at: datetime
    #: None when the server kept the refresh token it had issued (no rotation).
    refresh_token: str | None
    #: Claims of the id token, when the answer had one (consent only).
    claims: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Grant(expires_at={self.expires_at!r}, <tokens>)"


@dataclass(frozen=True)
class Consent:
    """An authorization under way: the URL for the browser, and the state to check."""

    url: str
    state: str


class OAuthClient(Protocol):
    """One mailbox's OAuth client: for one authorization, or one refresh."""

    def begin(self) -> Consent:
        """The authorization URL (PKCE, a fresh state) for the configured redirect URL."""
        ...

    def finish(self, consent: Consent, query: dict[str, str]) -> Grant:
        """Exchange the code of the redirect's ``query`` (its state checked already)."""
        ...

    def refresh(self, refresh_token: str) -> Grant:
        """New tokens for the refresh token; raises ``ReauthorizeNeeded`` when refused."""
        ...


def expiry(now: datetime, answer: dict[str, Any]) -> datetime:
    try:
        seconds = float(answer["expires_in"])
    except (KeyError, TypeError, ValueError):
        return now + DEFAULT_LIFETIME
    return now + timedelta(seconds=seconds)


def unverified_claims(id_token: str | None) -> dict[str, Any]:
    """The claims of an id token, without checking its signature: it came straight from the
    token endpoint over TLS, which is what OpenID Connect asks of a confidential client."""
    if not id_token or id_token.count(".") < 2:
        return {}
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def consenting_account(claims: dict[str, Any]) -> str | None:
    """The account named by id token claims (Entra: ``preferred_username``, ``upn``;
    Google and others: ``email``)."""
    for key in ("preferred_username", "email", "upn"):
        value = claims.get(key)
        if isinstance(value, str) and value:
            return value
    return None
