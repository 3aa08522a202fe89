"""Any other OAuth 2.0 provider (Google, Zoho, ...) through requests-oauthlib: an
authorization URL and a token URL, authorization code with PKCE (S256), and refresh.

The configured scope goes out exactly as written: Zoho separates scopes with commas.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from oauthlib.oauth2 import InsecureTransportError, OAuth2Error
from requests_oauthlib import OAuth2Session

from contracts.settings import MailboxSettings
from services.oauth import errors
from services.oauth.grant import Consent, Grant, expiry, unverified_claims
from services.runtime.errors import ConfigError, MailroomError
from services.runtime.ports import Clock

# requests-oauthlib logs request bodies (code, client secret) and answers (tokens) at
# DEBUG: `mailroom -vv` must not write them to the log.
logging.getLogger("requests_oauthlib").setLevel(logging.INFO)
logging.getLogger("oauthlib").setLevel(logging.INFO)


class GenericClient:
    """requests-oauthlib for one mailbox; the client secret goes in the request body."""

    def __init__(self, box: MailboxSettings, session: requests.Session, clock: Clock) -> None:
        self._box = box
        self._clock = clock
        self._oauth = OAuth2Session(
            box.client_id, redirect_uri=box.redirect_url, scope=box.scope, pkce="S256"
        )
        # The mailbox's certificate checks and proxy, never the environment's.
        self._oauth.trust_env = session.trust_env
        self._oauth.verify = session.verify
        self._oauth.proxies = session.proxies
        self._oauth.headers.update(session.headers)
        for hook in ("access_token_response", "refresh_token_response"):
            self._oauth.register_compliance_hook(hook, self._checked)
        self._refreshing = False

    def begin(self) -> Consent:
        box = self._box
        if not box.authorization_url:
            raise ConfigError(
                f"mailbox {box.name!r}: authorizing needs `authorization_url`, the provider's "
                "authorization endpoint"
            )
        if not box.redirect_url:
            raise ConfigError(
                f"mailbox {box.name!r}: authorizing needs `redirect_url`, as registered with "
                "the OAuth client, e.g. http://localhost:8765/oauth/callback"
            )
        if not box.scope:
            raise ConfigError(f"mailbox {box.name!r}: authorizing needs `scope`")
        try:
            # offline + consent: the only way to be sure of a refresh token (Google, Zoho).
            url, state = self._oauth.authorization_url(
                box.authorization_url, access_type="offline", prompt="consent"
            )
        except InsecureTransportError:
            raise ConfigError(
                f"mailbox {box.name!r}: `authorization_url` must be an https URL"
            ) from None
        return Consent(url=url, state=state)

    def finish(self, consent: Consent, query: dict[str, str]) -> Grant:
        self._refreshing = False
        answer = self._token(
            lambda: self._oauth.fetch_token(
                self._box.token_url,
                code=query.get("code", ""),
                include_client_id=True,
                client_secret=self._box.client_secret,
                timeout=self._box.timeout_seconds,
            )
        )
        return self._grant(answer)

    def refresh(self, refresh_token: str) -> Grant:
        self._refreshing = True
        secret = {"client_secret": self._box.client_secret} if self._box.client_secret else {}
        answer = self._token(
            lambda: self._oauth.refresh_token(
                self._box.token_url,
                refresh_token=refresh_token,
                client_id=self._box.client_id,
                timeout=self._box.timeout_seconds,
                **secret,
            )
        )
        grant = self._grant(answer)
        # requests-oauthlib puts the old refresh token in an answer that had none.
        rotated = grant.refresh_token if grant.refresh_token != refresh_token else None
        return Grant(grant.access_token, grant.expires_at, rotated, grant.claims)

    def _token(self, action: Any) -> dict[str, Any]:
        try:
            return dict(action())
        except MailroomError:
            raise
        except Warning as changed:
            # oauthlib refuses an answer whose scope differs from the one asked for: Entra
            # leaves out offline_access, Google adds openid. The token is in the warning.
            token = getattr(changed, "token", None)
            if not isinstance(token, dict):
                raise
            return dict(token)
        except InsecureTransportError:
            raise ConfigError(
                f"mailbox {self._box.name!r}: `token_url` must be an https URL"
            ) from None
        except requests.RequestException as exc:
            raise errors.transport_error(self._box, exc) from None
        except OAuth2Error as exc:  # the answers were checked already; this is what is left
            raise errors.answer_error(
                self._box,
                {"error": exc.error, "error_description": exc.description},
                refreshing=self._refreshing,
            ) from None

    def _checked(self, response: requests.Response) -> requests.Response:
        """The token endpoint's answer, refused unless it is JSON with an access token."""
        errors.checked_answer(self._box, response, refreshing=self._refreshing)
        return response

    def _grant(self, answer: dict[str, Any]) -> Grant:
        return Grant(
            access_token=str(answer["access_token"]),
            expires_at=expiry(self._clock.now(), answer),
            refresh_token=answer.get("refresh_token") or None,
            claims=unverified_claims(answer.get("id_token")),
        )
