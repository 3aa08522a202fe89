"""``mailroom oauth authorize``: one authorization of a mailbox, from URL to stored tokens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl, urlsplit

from contracts.settings import MailboxSettings
from services.oauth.grant import OAuthClient, consenting_account
from services.oauth.token_store import SqlTokenStore
from services.runtime.errors import ConfigError
from services.runtime.mailbox_health import MailboxHealth
from services.runtime.ports import Clock

#: Why the poller paused a mailbox whose grant was refused; authorizing resumes it.
PAUSED_FOR_REAUTHORIZATION = (
    "the authorization server refused the stored OAuth grant; "
    "`mailroom oauth authorize {name}` re-authorizes the mailbox and resumes fetching"
)

#: Gets the redirected URL for an authorization URL (a loopback listener, or a paste).
Redirect = Callable[[str], str]


@dataclass(frozen=True)
class Authorized:
    mailbox: str
    #: The account that consented; None when the provider did not say (no id token).
    account: str | None
    access_expires_at: datetime
    #: The mailbox was paused for re-authorization, and fetches again.
    resumed: bool


def authorize(
    box: MailboxSettings,
    client: OAuthClient,
    redirect: Redirect,
    tokens: SqlTokenStore,
    health: MailboxHealth,
    clock: Clock,
    *,
    paused_reason: str | None = None,
) -> Authorized:
    """Consent in a browser, code exchanged (PKCE), the consenting account checked against
    ``username``, tokens stored; a mailbox paused for re-authorization fetches again.

    Raises ``ConfigError`` when consent was refused, the state does not match, or another
    account consented (nothing is stored then).
    """
    consent = client.begin()
    query = redirect_query(box, redirect(consent.url))
    if query.get("state") != consent.state:
        raise ConfigError(
            f"mailbox {box.name!r}: the redirect does not belong to this authorization (its "
            "state differs); paste the address of the latest redirect, or start again"
        )
    grant = client.finish(consent, query)
    account = consenting_account(grant.claims)
    if account is not None and box.username and account.lower() != box.username.lower():
        raise ConfigError(
            f"mailbox {box.name!r}: {account!r} gave consent, but the mailbox logs in as "
            f"{box.username!r}; nothing was stored: authorize again and sign in as "
            f"{box.username!r}, or correct `username`"
        )
    if grant.refresh_token is None:
        raise ConfigError(
            f"mailbox {box.name!r}: the authorization server gave no refresh token; nothing "
            "was stored: add `offline_access` (Microsoft) to `scope`, or allow offline access "
            "for the OAuth client"
        )
    tokens.save_consent(box.name, grant, account, clock.now())
    resumed = paused_reason == PAUSED_FOR_REAUTHORIZATION.format(name=box.name)
    if resumed:
        health.resume(box.name)
    return Authorized(box.name, account, grant.expires_at, resumed)


def redirect_query(box: MailboxSettings, url: str) -> dict[str, str]:
    """The parameters of the redirected URL; a refusal of consent raised as one sentence."""
    parts = urlsplit(url.strip())
    query = dict(parse_qsl(parts.query)) or dict(parse_qsl(parts.fragment))
    error = query.get("error")
    if error == "access_denied":
        raise ConfigError(
            f"mailbox {box.name!r}: consent was refused at the authorization server "
            "(access_denied); nothing was stored: authorize again and accept"
        )
    if error:
        description = query.get("error_description", "").splitlines()[:1]
        said = f"{error}: {description[0]}" if description else error
        raise ConfigError(
            f"mailbox {box.name!r}: the authorization server refused the authorization "
            f"({said}); check `client_id`, `scope` and `redirect_url`"
        )
    if "code" not in query:
        raise ConfigError(
            f"mailbox {box.name!r}: the address holds no authorization code: paste the whole "
            "address the browser was sent to after consent"
        )
    return query
