"""The Microsoft identity platform through msal: authorization code with PKCE, and refresh.

A new msal application is made for each use: msal remembers HTTP answers (an error for a
minute, discovery for a day), and a mailbox's next round must see the server as it is now.
"""

from __future__ import annotations

import logging
import re
import warnings
from datetime import datetime
from typing import Any

import msal
import requests

from contracts.settings import MailboxSettings
from services.oauth import errors
from services.oauth.grant import Consent, Grant, expiry, unverified_claims
from services.runtime.errors import ConfigError, InfraError, MailroomError
from services.runtime.ports import Clock

#: ``https://HOST/TENANT/oauth2/v2.0/token``: the token URL of a Microsoft identity platform.
TOKEN_URL = re.compile(r"^https://(?P<host>[^/?#]+)/(?P<tenant>[^/?#]+)/oauth2/v2\.0/token/?$")
#: msal adds these itself and refuses them in a scope list.
RESERVED_SCOPES = frozenset({"offline_access", "openid", "profile"})

# msal logs a non-JSON token answer in full with a traceback; the error raised here says
# what it means in one sentence. Its DEBUG lines describe token requests: kept out of -vv.
logging.getLogger("msal.oauth2cli.oauth2").setLevel(logging.CRITICAL)
logging.getLogger("msal").setLevel(logging.INFO)


class _Http:
    """The mailbox's HTTP session as msal's ``http_client``: with the mailbox's timeout, and
    the last answer kept to tell what a failure of msal was about."""

    def __init__(self, session: requests.Session, timeout: float) -> None:
        self._session = session
        self._timeout = timeout
        self.last: requests.Response | None = None

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        self.last = self._session.get(url, **kwargs)
        return self.last

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        self.last = self._session.post(url, **kwargs)
        return self.last

    def close(self) -> None:
        self._session.close()


class MicrosoftClient:
    """msal for one mailbox: confidential with ``client_secret``, public without."""

    def __init__(self, box: MailboxSettings, session: requests.Session, clock: Clock) -> None:
        match = TOKEN_URL.match(box.token_url or "")
        if match is None:
            raise ConfigError(
                f"mailbox {box.name!r}: `token_url` is not a Microsoft identity platform URL "
                "(https://HOST/TENANT/oauth2/v2.0/token)"
            )
        self._box = box
        self._host = match["host"]
        self._authority = f"https://{match['host']}/{match['tenant']}"
        self._http = _Http(session, box.timeout_seconds)
        self._clock = clock
        self._scopes = _resource_scopes(box)
        self._app: msal.ClientApplication | None = None
        self._flow: dict[str, Any] | None = None

    def begin(self) -> Consent:
        redirect = _redirect_url(self._box)
        with warnings.catch_warnings():
            # msal recommends form_post; the code comes back in the query instead, so that
            # an admin can paste the address, and PKCE keeps a seen code useless.
            warnings.filterwarnings("ignore", message="response_mode='form_post'")
            flow = self._call(
                lambda app: app.initiate_auth_code_flow(
                    self._scopes, redirect_uri=redirect, login_hint=self._box.username
                ),
                refreshing=False,
            )
        self._flow = flow
        return Consent(url=flow["auth_uri"], state=flow["state"])

    def finish(self, consent: Consent, query: dict[str, str]) -> Grant:
        if self._flow is None or self._flow["state"] != consent.state:
            raise ValueError("finish() follows begin() on the same client")
        flow = self._flow
        answer = self._call(
            lambda app: app.acquire_token_by_auth_code_flow(flow, dict(query)), refreshing=False
        )
        return self._grant(answer, self._clock.now())

    def refresh(self, refresh_token: str) -> Grant:
        answer = self._call(
            lambda app: app.acquire_token_by_refresh_token(refresh_token, self._scopes),
            refreshing=True,
        )
        return self._grant(answer, self._clock.now())

    # -- msal ------------------------------------------------------------------------------

    def _call(self, action: Any, *, refreshing: bool) -> dict[str, Any]:
        try:
            answer = action(self._application())
        except MailroomError:
            raise
        except requests.RequestException as exc:
            raise errors.transport_error(self._box, exc) from None
        except ValueError:
            raise self._unreadable("token endpoint") from None
        except RuntimeError:  # msal: the id token's nonce is not this authorization's
            raise ConfigError(
                f"mailbox {self._box.name!r}: the id token does not belong to this "
                f"authorization; run `mailroom oauth authorize {self._box.name}` again"
            ) from None
        if not isinstance(answer, dict):
            raise self._unreadable("token endpoint")
        if "error" in answer:
            raise errors.answer_error(self._box, answer, refreshing=refreshing)
        return answer

    def _application(self) -> msal.ClientApplication:
        if self._app is not None:
            return self._app
        options: dict[str, Any] = {
            "authority": self._authority,
            "http_client": self._http,
            # Instance discovery asks login.microsoftonline.com whether the host is
            # Microsoft's; a host it does not list (a sovereign cloud proxy, a test server)
            # is trusted because the admin configured it.
            "instance_discovery": None if self._host in KNOWN_HOSTS else False,
        }
        try:
            if self._box.client_secret:
                self._app = msal.ConfidentialClientApplication(
                    self._box.client_id, client_credential=self._box.client_secret, **options
                )
            else:
                self._app = msal.PublicClientApplication(self._box.client_id, **options)
        except requests.RequestException as exc:
            raise errors.transport_error(self._box, exc) from None
        except ValueError:
            raise self._discovery_failed() from None
        return self._app

    def _discovery_failed(self) -> MailroomError:
        """msal's ``ValueError`` at discovery: an unknown tenant, or no OpenID server there."""
        last = self._http.last
        if last is not None and last.status_code in (400, 404):
            return errors.wrong_tenant(self._box)
        if last is not None and last.status_code >= 500:
            return InfraError(
                f"mailbox {self._box.name!r}: the authorization server {self._host} failed "
                f"with HTTP {last.status_code}; tried again later"
            )
        return self._unreadable("discovery document of the authority")

    def _unreadable(self, what: str) -> ConfigError:
        last = self._http.last
        if last is None:
            return ConfigError(
                f"mailbox {self._box.name!r}: the {what} gave an answer msal cannot read: "
                "check `token_url`"
            )
        return errors.not_json(self._box, last, what)

    def _grant(self, answer: dict[str, Any], now: datetime) -> Grant:
        claims = answer.get("id_token_claims") or unverified_claims(answer.get("id_token"))
        return Grant(
            access_token=str(answer["access_token"]),
            expires_at=expiry(now, answer),
            refresh_token=answer.get("refresh_token") or None,
            claims=claims if isinstance(claims, dict) else {},
        )


KNOWN_HOSTS = msal.authority.WELL_KNOWN_AUTHORITY_HOSTS


def _resource_scopes(box: MailboxSettings) -> list[str]:
    if not box.scope:
        raise ConfigError(
            f"mailbox {box.name!r}: auth oauth needs `scope`, e.g. "
            "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
        )
    scopes = [s for s in box.scope.split() if s.lower() not in RESERVED_SCOPES]
    if not scopes:
        raise ConfigError(
            f"mailbox {box.name!r}: `scope` names no resource, only {box.scope!r}: add the "
            "mail scope, e.g. https://outlook.office.com/IMAP.AccessAsUser.All"
        )
    return scopes


def _redirect_url(box: MailboxSettings) -> str:
    if not box.redirect_url:
        raise ConfigError(
            f"mailbox {box.name!r}: authorizing needs `redirect_url`, as registered with the "
            "app, e.g. http://localhost:8765/oauth/callback"
        )
    return box.redirect_url
