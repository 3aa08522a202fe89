"""Where OAuth access tokens come from, for sources that log in with XOAUTH2.

The adapter asks for a token each time it logs in and never stores it: a provider that
refreshes tokens (``mailroom oauth authorize``) plugs in here without touching the adapter.
"""

from __future__ import annotations

from typing import Protocol

from services.runtime.errors import ConfigError


class TokenProvider(Protocol):
    """A source of OAuth access tokens for one mailbox."""

    def access_token(self) -> str:
        """A currently valid access token.

        Raises:
            ConfigError: the mailbox was never authorized, or its authorization was revoked.
            InfraError: the token endpoint could not be reached.
        """
        ...

    def refreshed_token(self) -> str:
        """A new access token, for when the server refused the current one before it
        expired (revoked, or a clock that runs apart). Raises as ``access_token`` does."""
        ...


class StaticTokenProvider:
    """Always the same token: for tests, and for tokens managed outside Mailroom."""

    def __init__(self, token: str) -> None:
        self._token = token

    def access_token(self) -> str:
        """The token given at construction; never raises."""
        return self._token

    def refreshed_token(self) -> str:
        """The same token: nothing here can renew it."""
        return self._token

    def __repr__(self) -> str:
        # Keeps the token out of tracebacks and logs that show the object.
        return "StaticTokenProvider(<token>)"


class ReauthorizeNeeded(ConfigError):
    """The authorization server refused the stored grant (``invalid_grant``, a revoked or
    lapsed refresh token) or the client (``invalid_client``, an expired secret): only an
    admin can fix it, with ``mailroom oauth authorize MAILBOX`` or new client settings."""
