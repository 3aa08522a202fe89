"""Mailbox protocols by ``protocol`` name: how to open each, and what each can do.

A new protocol is one module with a factory, one line in ``SOURCES`` and a test class that
runs the shared contract suite (``tests/contract/test_mail_source.py``). Only the poller's
wiring opens sources; the commands read ``capabilities`` to know what a mailbox offers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from contracts.settings import MailboxSettings
from services.poller.sources.base import MailSource, SourceState
from services.poller.sources.imap import open_imap
from services.poller.sources.maildir import open_maildir
from services.poller.sources.needs import SourceNeeds
from services.poller.sources.pop import open_pop
from services.runtime.errors import ConfigError

__all__ = ["SOURCES", "Capabilities", "SourceKind", "SourceNeeds", "capabilities", "open_source"]


@dataclass(frozen=True)
class Capabilities:
    """What a protocol's mailbox offers, known without connecting."""

    #: Failed mail is moved to an error folder (else it stays in the dead-letter queue only).
    error_folder: bool
    #: Handed-off mail is marked seen/read and stays in the mailbox.
    marks_seen: bool
    #: Handed-off mail is deleted from the mailbox (POP).
    deletes_after_hand_off: bool


#: Makes a protocol's source from its settings, its remembered state and what it depends on.
Factory = Callable[[MailboxSettings, SourceState, SourceNeeds], MailSource]


@dataclass(frozen=True)
class SourceKind:
    open: Factory
    capabilities: Capabilities


_FOLDERS = Capabilities(error_folder=True, marks_seen=True, deletes_after_hand_off=False)
_POP = Capabilities(error_folder=False, marks_seen=False, deletes_after_hand_off=True)


def open_ews(box: MailboxSettings, state: SourceState, needs: SourceNeeds) -> MailSource:
    # Imported on first use: exchangelib takes a quarter of a second to import, which every
    # process without an Exchange mailbox (every stage but the poller, every command) saves.
    from services.poller.sources.ews import open_ews as open_it

    return open_it(box, state, needs)


def open_graph(box: MailboxSettings, state: SourceState, needs: SourceNeeds) -> MailSource:
    from services.poller.sources.graph import open_graph as open_it

    return open_it(box, state, needs)


SOURCES: dict[str, SourceKind] = {
    "maildir": SourceKind(open_maildir, _FOLDERS),
    "pop": SourceKind(open_pop, _POP),
    "pops": SourceKind(open_pop, _POP),
    "imap": SourceKind(open_imap, _FOLDERS),
    "imaps": SourceKind(open_imap, _FOLDERS),
    "ews": SourceKind(open_ews, _FOLDERS),
    "graph": SourceKind(open_graph, _FOLDERS),
}


def capabilities(protocol: str) -> Capabilities:
    """What mailboxes of ``protocol`` offer; a protocol not built yet offers folders."""
    kind = SOURCES.get(protocol)
    return kind.capabilities if kind is not None else _FOLDERS


def open_source(
    box: MailboxSettings, state: SourceState, needs: SourceNeeds | None = None
) -> MailSource:
    """Connect to a mailbox (lazily: most sources connect on first use).

    ``needs``: what the adapter depends on (clock, token provider, HTTP sessions, protocol
    trace, the sockets a stop cuts); the defaults suit a mailbox without OAuth.
    Raises ``ConfigError`` for a protocol not available.
    """
    kind = SOURCES.get(box.protocol)
    if kind is None:
        available = ", ".join(sorted(SOURCES))
        raise ConfigError(
            f"mailbox {box.name!r}: protocol {box.protocol} is not supported yet "
            f"(available: {available})"
        )
    return kind.open(box, state, needs or SourceNeeds.plain(box))
