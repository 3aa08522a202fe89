"""What the poller's parts share: the store, the clock, settings, and how to reach people."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from kombu import Connection

from contracts.notify import Notify
from contracts.settings import HelpdeskSettings, Settings
from services.poller.adapters import SqlSourceState
from services.poller.notices import People
from services.poller.opener import mailbox_opener
from services.poller.sources.base import MailSource, SourceState
from services.runtime.bus import Publisher
from services.runtime.config_store import ConfigStore, MailboxState
from services.runtime.crypto import SecretBox
from services.runtime.errors import ConfigError
from services.runtime.mailbox_health import MailboxHealth
from services.runtime.ports import Clock
from services.runtime.stage import secret_box
from services.runtime.store import SqlBlobStore, Store

OpenMailbox = Callable[[MailboxState, SourceState], MailSource]


@dataclass
class PollerContext:
    settings: Settings
    store: Store
    clock: Clock
    connection: Connection
    #: Opens a mailbox for the commands' calls (samples, moves); rounds set their own.
    open: OpenMailbox | None = None
    box: SecretBox = field(init=False)
    blobs: SqlBlobStore = field(init=False)
    config: ConfigStore = field(init=False)
    health: MailboxHealth = field(init=False)

    def __post_init__(self) -> None:
        self.box = secret_box(self.settings)
        self.blobs = SqlBlobStore(self.store)
        self.config = ConfigStore(self.store, self.box)
        self.health = MailboxHealth(self.store)
        if self.open is None:
            self.open = mailbox_opener(self.store, self.box, self.clock)

    def open_mailbox(self, state: MailboxState) -> MailSource:
        assert self.open is not None  # set in __post_init__
        return self.open(state, SqlSourceState(self.store, state.settings.name, self.clock))

    def helpdesk(self, state: MailboxState) -> HelpdeskSettings:
        try:
            return self.config.helpdesk(state.helpdesk)
        except ConfigError:
            return HelpdeskSettings(id=state.helpdesk)

    def tell(
        self, state: MailboxState, notices: Callable[[People, datetime], list[Notify]]
    ) -> None:
        """Publish notices from any thread (on a connection of their own)."""
        messages = notices(People.of(self.helpdesk(state)), self.clock.now())
        if messages:
            publisher = Publisher(self.connection)
            try:
                publisher.publish_all(messages)
            finally:
                publisher.close()
