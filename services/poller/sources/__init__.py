"""Mailbox protocols by ``protocol`` name; only ``poller.worker`` reads this table."""

from __future__ import annotations

from collections.abc import Callable

from contracts.settings import MailboxSettings
from services.poller.sources.base import MailSource
from services.poller.sources.maildir import MaildirSource
from services.runtime.errors import ConfigError


def _maildir(box: MailboxSettings) -> MailSource:
    return MaildirSource(box.path or "", mailbox=box.name, error_folder=box.error_folder.name)


SOURCES: dict[str, Callable[[MailboxSettings], MailSource]] = {"maildir": _maildir}


def open_source(box: MailboxSettings) -> MailSource:
    """Connect to a mailbox. Raises ``ConfigError`` for a protocol not available yet."""
    factory = SOURCES.get(box.protocol)
    if factory is None:
        available = ", ".join(sorted(SOURCES))
        raise ConfigError(
            f"mailbox {box.name!r}: protocol {box.protocol} is not supported yet "
            f"(available: {available})"
        )
    return factory(box)
