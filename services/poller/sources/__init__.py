"""Mailbox protocols by ``protocol`` name; only the poller's wiring reads this table."""

from __future__ import annotations

from typing import Protocol

from contracts.settings import MailboxSettings
from services.poller.sources.base import MailSource, SourceState
from services.poller.sources.imap import open_imap
from services.poller.sources.maildir import MaildirSource
from services.poller.sources.pop import open_pop
from services.runtime.errors import ConfigError
from services.runtime.open_sockets import OpenSockets


class Factory(Protocol):
    """Makes a protocol's source; ``sockets`` keeps its connections for a stop to cut."""

    def __call__(
        self, box: MailboxSettings, state: SourceState, *, sockets: OpenSockets | None = None
    ) -> MailSource: ...


def _maildir(
    box: MailboxSettings, state: SourceState, *, sockets: OpenSockets | None = None
) -> MailSource:
    # A Maildir keeps its state in file names (the S flag); the store remembers only mail
    # left unread because it could not be marked.
    return MaildirSource(
        box.path or "",
        mailbox=box.name,
        error_folder=box.error_folder.name,
        state=state,
        max_mail_mb=box.max_mail_mb,
    )


SOURCES: dict[str, Factory] = {
    "maildir": _maildir,
    "pop": open_pop,
    "pops": open_pop,
    "imap": open_imap,
    "imaps": open_imap,
}


def open_source(
    box: MailboxSettings, state: SourceState, *, sockets: OpenSockets | None = None
) -> MailSource:
    """Connect to a mailbox. Raises ``ConfigError`` for a protocol not available yet.

    ``sockets``: where its connections are kept for a stop to cut (a Maildir has none)."""
    factory = SOURCES.get(box.protocol)
    if factory is None:
        available = ", ".join(sorted(SOURCES))
        raise ConfigError(
            f"mailbox {box.name!r}: protocol {box.protocol} is not supported yet "
            f"(available: {available})"
        )
    return factory(box, state, sockets=sockets)
