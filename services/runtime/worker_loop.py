"""One stage as a long-running process: connect, consume, tick, and ride out outages.

While the broker is away the worker holds nothing: it backs off, reconnects, and the broker
hands the unacknowledged mail over again. While the store is away the worker keeps the mail
it holds and tries the same mail again once the store answers. Either way it reports
not-ready meanwhile, counts nothing against the mail, and gives up only after the outage
limit. A stop (SIGTERM) ends any wait at once and lets the mail in hand finish.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from kombu import Connection

from contracts import queues
from services.runtime.bus import Batcher, connect, consumer, declare_all, drain, gathering
from services.runtime.errors import BrokerOutage, StoreOutage
from services.runtime.outages import Outages, Stopping
from services.runtime.stage import Stage

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long one wait for messages lasts before the tick and the stop flag are looked at.
DRAIN_S = 1.0
#: An idle worker asks the store this often whether it is there, so that readiness tells
#: the truth even when no mail comes.
PROBE_EVERY_S = 5.0


@dataclass
class WorkerLoop:
    """Runs ``stage`` on the broker at ``broker_url`` until ``outages.stop`` is set.

    ``on_queues_lost`` runs when a work queue had to be made again on a broker that
    should have had it: the broker lost its queues and the mail in them.
    """

    stage: Stage
    broker_url: str
    outages: Outages
    on_queues_lost: Callable[[], object] = lambda: None
    #: Raises ``StoreOutage`` when the store cannot be reached (``Store.ping``).
    probe: Callable[[], object] = lambda: None
    open_connection: Callable[[str], Connection] = connect
    monotonic: Callable[[], float] = time.monotonic

    def run(self) -> None:
        """Serve until stopped. Raises ``OutageTooLong`` when the broker or the store stays
        away past the limit."""
        with contextlib.suppress(Stopping):
            while not self.outages.stop.is_set():
                try:
                    self._serve()
                except BrokerOutage as exc:
                    self.outages.failed(exc)

    def _serve(self) -> None:
        conn = self.outages.ride_out(
            lambda: self.open_connection(self.broker_url), kinds=(BrokerOutage,)
        )
        try:
            batchers = self._consume(conn)
            self.outages.recovered()
            log.info("stage %s is consuming", self.stage.name)
            probed = self.monotonic()
            while not self.outages.stop.is_set():
                if self.stage.tick is not None:
                    self._guarded(self.stage.tick)
                if self.monotonic() - probed >= PROBE_EVERY_S:
                    self._guarded(self.probe)
                    probed = self.monotonic()
                drain(conn, timeout=DRAIN_S, batchers=batchers)
        finally:
            with contextlib.suppress(Exception):  # a dead connection may fail to close
                conn.release()

    def _consume(self, conn: Connection) -> list[Batcher]:
        """Start a consumer per queue; returns those that gather batches."""
        batchers: list[Batcher] = []
        try:
            made = declare_all(conn)
            channel = conn.channel()
            for name, handle in self.stage.handlers.items():
                stopping = self.outages.stop.is_set
                taken = gathering(name, handle, self._guarded)
                if isinstance(taken, Batcher):
                    batchers.append(taken)
                consumer(channel, name, taken, self._guarded, stopping).consume()
        except (*conn.connection_errors, *conn.channel_errors, OSError) as exc:
            raise BrokerOutage(f"setting up the consumers failed: {exc!r}") from exc
        if set(made) & set(queues.WORK_QUEUES):
            log.info("declared the queues %s, which the broker did not have", made)
            self._guarded(self.on_queues_lost)
        return batchers

    def _guarded(self, work: Callable[[], T]) -> T:
        """``work``, waiting out a store outage in place (the mail in hand is kept)."""
        return self.outages.ride_out(work, kinds=(StoreOutage,))
