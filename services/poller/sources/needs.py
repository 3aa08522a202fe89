"""What a source adapter depends on, passed in by the poller's wiring (never imported)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from contracts.settings import MailboxSettings
from services.poller.sources.debug import ProtocolTrace
from services.poller.sources.http import http_session
from services.poller.sources.tokens import TokenProvider
from services.runtime.clock import SystemClock
from services.runtime.open_sockets import OpenSockets
from services.runtime.ports import Clock

#: Makes the HTTP session an adapter talks through (EWS, Graph); tests pass their own.
HttpSessions = Callable[[MailboxSettings], requests.Session]


@dataclass(frozen=True)
class SourceNeeds:
    clock: Clock = field(default_factory=SystemClock)
    #: OAuth access tokens; None for ``auth: basic``.
    tokens: TokenProvider | None = None
    #: Where a source keeps its sockets for a stop to cut (poller rounds only).
    sockets: OpenSockets | None = None
    http: HttpSessions = http_session
    #: The protocol trace of ``debug: true``; None when debug is off.
    trace: ProtocolTrace | None = None
    #: How a source waits when a server asks it to (Retry-After): the poller's ends early
    #: when the process is asked to stop.
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def plain(
        cls,
        box: MailboxSettings,
        *,
        clock: Clock | None = None,
        tokens: TokenProvider | None = None,
        sockets: OpenSockets | None = None,
    ) -> SourceNeeds:
        """The needs of ``box`` with the trace its ``debug`` setting asks for."""
        return cls(
            clock=clock or SystemClock(),
            tokens=tokens,
            sockets=sockets,
            trace=ProtocolTrace(box.name) if box.debug else None,
        )
