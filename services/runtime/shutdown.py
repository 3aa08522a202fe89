"""Stopping on SIGTERM or SIGINT: take no more work, end the work in hand, exit.

The signal sets the stop flag, which ends every wait at once (``outages``), and runs the
stages' ``stop_soon``, which cut their connections to mail servers (``open_sockets``). The
mail in hand then usually finishes within moments. Whatever the process is still doing
``GRACE_S`` later is abandoned: ``Abandoned`` is raised into it, the mail in hand is not
acknowledged and the broker hands it over again, as after a crash, which every stage is
built for (idempotent on ``mail_id``). Should unwinding and closing the connections then
take longer than ``UNWIND_S`` (a thread stuck where nothing can reach it), the process ends
without them. So it is gone within ``GRACE_S + UNWIND_S`` of the signal, whatever it was
waiting for: a database that holds a lock, a server that stopped answering.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

#: How long the work in hand may take to finish after a stop: well within the 10 s a
#: stopping worker has (and the 30 s Kubernetes gives before it kills).
GRACE_S = 5.0
#: How long abandoning may take before the process ends without closing anything.
UNWIND_S = 3.0


class Abandoned(SystemExit):
    """Work still running ``GRACE_S`` after a stop was asked for.

    A SystemExit, which no ``except Exception`` on the way takes for a fault of the mail in
    hand, and on which psycopg cancels a query under way instead of leaving it running.
    """

    def __init__(self, grace_s: float) -> None:
        super().__init__(
            f"still busy {grace_s:g} s after the stop was asked for: the work in hand was "
            "abandoned; a mail being handled was not acknowledged and is handled again"
        )


def stop_on_signals(
    stop: Callable[[], None], *, grace_s: float = GRACE_S, unwind_s: float = UNWIND_S
) -> None:
    """Call ``stop`` on SIGTERM and SIGINT, instead of dying in the middle of a mail; abandon
    what still runs ``grace_s`` later, and end the process ``unwind_s`` after that."""
    abandoned = False

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop()
        if signal.getitimer(signal.ITIMER_REAL)[0] == 0 and not abandoned:
            signal.setitimer(signal.ITIMER_REAL, grace_s)  # a second signal keeps the deadline

    def on_deadline(_sig: int, _frame: FrameType | None) -> None:
        nonlocal abandoned
        if not abandoned:
            abandoned = True
            signal.setitimer(signal.ITIMER_REAL, unwind_s)
            raise Abandoned(grace_s)
        log.error(
            "still not stopped %g s after abandoning the work in hand; ending without closing "
            "the connections (the broker and the database give back what they held)",
            unwind_s,
        )
        os._exit(0)

    signal.signal(signal.SIGALRM, on_deadline)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def stopped() -> None:
    """The stop is complete: no deadline is left to abandon anything."""
    signal.setitimer(signal.ITIMER_REAL, 0)
