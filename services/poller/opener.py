"""Opens a configured mailbox with everything its adapter needs (wiring, no logic)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from contracts.settings import MailboxSettings
from services.oauth.wiring import stored_tokens_for
from services.poller.adapters import SqlSourceState
from services.poller.sources import SourceNeeds, open_source
from services.poller.sources.base import MailSource, SourceState
from services.poller.sources.http import http_session
from services.poller.sources.needs import HttpSessions
from services.poller.sources.tokens import TokenProvider
from services.runtime.clock import SystemClock
from services.runtime.config_store import MailboxState
from services.runtime.crypto import SecretBox
from services.runtime.open_sockets import OpenSockets
from services.runtime.ports import Clock
from services.runtime.store import Store

TokensFor = Callable[[MailboxSettings], TokenProvider | None]


@dataclass(frozen=True)
class MailboxOpener:
    clock: Clock
    #: The token provider of an ``auth: oauth`` mailbox (None: not authorized).
    tokens_for: TokensFor
    sockets: OpenSockets | None = None
    http: HttpSessions = http_session
    sleep: Callable[[float], None] = time.sleep

    def __call__(self, state: MailboxState, source_state: SourceState) -> MailSource:
        return self.open(state.settings, source_state)

    def open(self, box: MailboxSettings, source_state: SourceState) -> MailSource:
        plain = SourceNeeds.plain(box, clock=self.clock, sockets=self.sockets)
        tokens = self.tokens_for(box) if box.auth == "oauth" else None
        needs = SourceNeeds(
            clock=plain.clock,
            tokens=tokens,
            sockets=plain.sockets,
            http=self.http,
            trace=plain.trace,
            sleep=self.sleep,
        )
        return open_source(box, source_state, needs)


def mailbox_opener(
    store: Store,
    box: SecretBox,
    clock: Clock | None = None,
    *,
    sockets: OpenSockets | None = None,
    http: HttpSessions = http_session,
    sleep: Callable[[float], None] = time.sleep,
) -> MailboxOpener:
    """The opener for mailboxes configured in ``store``, OAuth tokens read from it too."""
    clock = clock or SystemClock()
    return MailboxOpener(
        clock, stored_tokens_for(store, box, clock, http), sockets=sockets, http=http, sleep=sleep
    )


def fetch_oldest_unread(opener: MailboxOpener, store: Store, state: MailboxState) -> bytes | None:
    """The mailbox's oldest unread mail, read only: nothing is marked, moved or recorded
    (``mailroom mailbox test`` and the admin page's sample and connection test)."""
    name = state.settings.name
    source = opener(state, SqlSourceState(store, name, opener.clock))
    try:
        return source.fetch_oldest_unmarked()
    finally:
        source.close()
