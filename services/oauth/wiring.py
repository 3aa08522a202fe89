"""Token providers for ``auth: oauth`` mailboxes, from the tokens kept in the store."""

from __future__ import annotations

from collections.abc import Callable

from contracts.settings import MailboxSettings
from services.poller.sources.needs import HttpSessions
from services.poller.sources.tokens import TokenProvider
from services.runtime.crypto import SecretBox
from services.runtime.ports import Clock
from services.runtime.store import Store


def stored_tokens_for(
    store: Store, box: SecretBox, clock: Clock, http: HttpSessions
) -> Callable[[MailboxSettings], TokenProvider | None]:
    """For each mailbox, a provider of its stored tokens; None until it is authorized."""
    return lambda mailbox: None
