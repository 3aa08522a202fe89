"""The OAuth client of a mailbox, chosen by its token URL."""

from __future__ import annotations

from contracts.mailbox_oauth import is_microsoft_token_url
from contracts.settings import MailboxSettings
from services.oauth.generic import GenericClient
from services.oauth.grant import OAuthClient
from services.oauth.microsoft import MicrosoftClient
from services.poller.sources.needs import HttpSessions
from services.runtime.ports import Clock


def client_for(box: MailboxSettings, http: HttpSessions, clock: Clock) -> OAuthClient:
    """msal for a Microsoft identity platform token URL (``https://HOST/TENANT/oauth2/v2.0/
    token``), requests-oauthlib for any other provider. A new client for each use."""
    if is_microsoft_token_url(box.token_url):
        return MicrosoftClient(box, http(box), clock)
    return GenericClient(box, http(box), clock)
