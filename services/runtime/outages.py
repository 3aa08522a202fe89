"""Riding out an outage of the broker or the store: back off, stay not-ready, try again.

An outage is nobody's mail's fault, so nothing here counts against a mail: the same mail is
handled again once the broker or the store is back. Only an outage longer than the limit
(``MAILROOM_OUTAGE_LIMIT_SECONDS``, 10 minutes by default) ends the process, with a message
naming what could not be reached. A stop asked for meanwhile (SIGTERM) ends every wait at
once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential_jitter

from services.runtime.errors import MailroomError, Outage
from services.runtime.health import Health

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The first wait after a failure, and the longest; jittered so workers do not all knock
#: on a server that has just come back at the same moment.
FIRST_WAIT_S = 0.5
LONGEST_WAIT_S = 10.0


class Stopping(Exception):  # noqa: N818 - a signal, not an error
    """A stop was asked for while waiting out an outage."""


class OutageTooLong(MailroomError):
    """The broker or the store stayed unreachable for longer than the limit."""


@dataclass
class Outages:
    """Waits out outages for one process, and tells ``health`` whether it is ready.

    ``stop`` is set by the signal handler; ``monotonic`` and the event's ``wait`` are the
    clock and the sleep (tests pass their own).
    """

    limit_s: float
    health: Health = field(default_factory=Health)
    stop: threading.Event = field(default_factory=threading.Event)
    monotonic: Callable[[], float] = time.monotonic
    _since: float | None = field(default=None, init=False)
    _failures: int = field(default=0, init=False)

    def ride_out(self, work: Callable[[], T], kinds: tuple[type[Outage], ...] = (Outage,)) -> T:
        """``work()``, run again after each outage of ``kinds`` until it passes.

        Raises:
            Stopping: a stop was asked for while waiting.
            OutageTooLong: the outage outlasted the limit; the message names what is down.
        """
        retrying = Retrying(
            retry=retry_if_exception_type(kinds),
            wait=wait_exponential_jitter(multiplier=FIRST_WAIT_S, max=LONGEST_WAIT_S),
            sleep=self._sleep,
            before_sleep=self._failed_attempt,
            reraise=True,
        )
        result = retrying(work)
        if self._since is not None:  # it had failed: what was down is back
            self.recovered()
        return result

    def failed(self, exc: Outage) -> None:
        """Note an outage that the caller handles itself (a lost broker connection), and
        wait before the caller tries again. Raises like ``ride_out``."""
        self._note(exc)
        self._sleep(min(LONGEST_WAIT_S, FIRST_WAIT_S * 2 ** min(self._failures, 5)))

    def recovered(self) -> None:
        """The broker and the store answer: ready."""
        if self._since is not None:
            log.warning("reachable again after %.0f s; carrying on", self.monotonic() - self._since)
        self._since = None
        self._failures = 0
        self.health.set_ready()

    def _failed_attempt(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Outage):
            self._note(exc)

    def _note(self, exc: Outage) -> None:
        now = self.monotonic()
        if self._since is None:
            self._since = now
        self._failures += 1
        down_s = now - self._since
        self.health.set_not_ready(f"the {exc.what} cannot be reached: {exc}")
        if down_s > self.limit_s:
            raise OutageTooLong(
                f"gave up: the {exc.what} could not be reached for {down_s:.0f} s "
                f"(MAILROOM_OUTAGE_LIMIT_SECONDS={self.limit_s:g}): {exc}"
            ) from exc
        log.warning(
            "the %s cannot be reached (%s); waiting, not ready (down %.0f s, giving up after %g s)",
            exc.what,
            exc,
            down_s,
            self.limit_s,
        )

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Stopping
