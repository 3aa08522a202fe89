"""Token providers for ``auth: oauth`` mailboxes, from the tokens kept in the store."""

from __future__ import annotations

from collections.abc import Callable

from contracts.settings import MailboxSettings
from services.oauth.clients import client_for
from services.oauth.provider import StoredTokenProvider
from services.oauth.token_store import SqlTokenStore
from services.poller.sources.needs import HttpSessions
from services.poller.sources.tokens import TokenProvider
from services.runtime.crypto import SecretBox
from services.runtime.ports import Clock
from services.runtime.store import Store


def stored_tokens_for(
    store: Store, box: SecretBox, clock: Clock, http: HttpSessions
) -> Callable[[MailboxSettings], TokenProvider | None]:
    """For each mailbox, a provider of its stored tokens; None until it is authorized."""
    tokens = SqlTokenStore(store, box)

    def provider(mailbox: MailboxSettings) -> TokenProvider | None:
        if tokens.get(mailbox.name) is None:
            return None
        return StoredTokenProvider(mailbox, tokens, lambda: client_for(mailbox, http, clock), clock)

    return provider
