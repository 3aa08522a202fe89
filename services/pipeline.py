"""Composition of the stages: one stage per process (``worker``) or all in one (``run``)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from kombu import Connection

from contracts.settings import Settings
from services.notifier import worker as notifier
from services.parser import worker as parser
from services.poller import worker as poller
from services.router import worker as router
from services.runtime.bus import (
    Batcher,
    Publisher,
    consumer,
    declare_all,
    drain,
    gathering,
    is_embedded,
)
from services.runtime.errors import StoreOutage
from services.runtime.outages import Outages, Stopping
from services.runtime.ports import Clock, Metrics
from services.runtime.shutdown import stop_on_signals
from services.runtime.stage import Stage
from services.runtime.store import Store
from services.runtime.unfinished import has_unfinished, republish_unfinished, unfinished_mails
from services.runtime.worker_loop import WorkerLoop
from services.validator import worker as validator

log = logging.getLogger(__name__)

T = TypeVar("T")

BUILDERS: dict[str, Callable[..., Stage]] = {
    "poller": poller.build,
    "parser": parser.build,
    "validator": validator.build,
    "router": router.build,
    "notifier": notifier.build,
}


def run_worker(
    name: str,
    settings: Settings,
    *,
    store: Store,
    clock: Clock,
    outages: Outages,
    metrics: Metrics | None = None,
) -> None:
    """Run one stage until ``outages.stop`` is set (``mailroom worker STAGE``, whose
    SIGTERM/SIGINT set it), counting what it handles in ``metrics``.

    Rides out outages of the broker and the store (see ``worker_loop``); raises
    ``OutageTooLong`` when one lasts past ``settings.outage_limit_seconds``.
    """
    # The stage's publishers connect on first use, so building needs no broker yet.
    origin = Connection(settings.broker_url)
    stage = BUILDERS[name](settings, connection=origin, store=store, clock=clock, metrics=metrics)
    # From now on a stop also cuts the stage's connections to mail servers.
    stop_on_signals(stopper(outages, [stage]))
    for start in stage.on_start:
        outages.ride_out(start, kinds=(StoreOutage,))
    publisher = Publisher(origin)

    def queues_lost() -> None:
        """A broker without its queues lost what was in them; the store still has it."""
        if count := republish_unfinished(store, publisher.publish):
            log.warning(
                "the broker had lost its queues: %s mails without an outcome published again",
                count,
            )

    log.info("stage %s started", name)
    loop = WorkerLoop(
        stage, settings.broker_url, outages, on_queues_lost=queues_lost, probe=store.ping
    )
    try:
        loop.run()
    finally:
        for stop in stage.on_stop:
            stop()
        publisher.close()


@dataclass(frozen=True)
class RunOnce:
    """What ``run --once`` handled: the mails fetched now, those an interrupted run left
    without an outcome, when it started, and the mailboxes left alone, with why."""

    mail_ids: list[str]
    recovered: list[str]
    started_at: datetime
    not_polled: dict[str, str]
    #: Stopped by SIGINT or SIGTERM before every mail had its outcome.
    interrupted: bool = False


class Pipeline:
    """Every stage on one connection, in one process (``mailroom run``).

    A store that cannot be reached is waited out around each message and tick, as in
    ``mailroom worker`` (``outages``). Every stage counts what it handles in ``metrics``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        connection: Connection,
        store: Store,
        clock: Clock,
        outages: Outages | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._conn = connection
        self._embedded = is_embedded(settings.broker_url)
        self._store = store
        self._clock = clock
        self._outages = outages or Outages(settings.outage_limit_seconds)
        self.stages = [
            b(settings, connection=connection, store=store, clock=clock, metrics=metrics)
            for b in BUILDERS.values()
        ]
        self._poller = self.stages[0]
        declare_all(connection)
        self._batchers: list[Batcher] = []
        self._consumers = []
        for queue, handle in ((q, h) for s in self.stages for q, h in s.handlers.items()):
            taken = gathering(queue, handle, self._guarded)
            if isinstance(taken, Batcher):
                self._batchers.append(taken)
            # A channel each: a prefetch limit holds per channel, and one stage's unacked
            # batch must not stop the deliveries to another.
            self._consumers.append(
                consumer(connection.channel(), queue, taken, guard=self._guarded)
            )
        for c in self._consumers:
            c.consume()
        for s in self.stages:
            for start in s.on_start:
                self._guarded(start)
        self._outages.recovered()  # ready: the broker and the store answered

    def _guarded(self, work: Callable[[], T]) -> T:
        return self._outages.ride_out(work, kinds=(StoreOutage,))

    def run_once(self, *, deadline_s: float = 600) -> RunOnce:
        """Poll every mailbox once and handle messages until each fetched mail has an outcome,
        those left without one by an interrupted run included."""
        assert self._poller.poll_all is not None
        stop = self._outages.stop
        # A stop ends the rounds and the wait for outcomes; what is left is taken up by the
        # next run.
        stop_on_signals(stopper(self._outages, self.stages))
        started = self._clock.now()
        carried = [row.mail_id for row in unfinished_mails(self._store)]
        polled = self._poller.poll_all()
        end = time.monotonic() + deadline_s
        while time.monotonic() < end and not stop.is_set():
            busy = drain(self._conn, timeout=0.2, batchers=self._batchers)
            if not busy and not self._pending():
                break
        if not stop.is_set():
            self.settle()  # let notifications and moves settle
            for stage in self.stages:
                if stage.catch_up:
                    stage.catch_up()
        return RunOnce(polled.mail_ids, carried, started, polled.not_polled, stop.is_set())

    def settle(self) -> None:
        """Handle messages until every queue is quiet."""
        while drain(self._conn, timeout=0.2, batchers=self._batchers):
            pass

    def run_forever(self) -> None:
        """Serve until stopped. What the in-process broker still holds then would die with
        the process, the notifications among it (which the store does not hold yet, unlike
        fetched mail): the rounds are ended and it is handled first, within the stop's
        grace (``shutdown``)."""
        stop = self._outages.stop
        stop_on_signals(stopper(self._outages, self.stages))
        with contextlib.suppress(Stopping):
            while not stop.is_set():
                for stage in self.stages:
                    if stage.tick:
                        self._guarded(stage.tick)
                drain(self._conn, timeout=1.0, batchers=self._batchers)
            if self._embedded:
                self.close()
                self.settle()

    def close(self) -> None:
        """Let the stages' background work end (the poller's rounds)."""
        for stage in self.stages:
            for stop in stage.on_stop:
                stop()

    def _pending(self) -> bool:
        """True while some fetched mail (of this run or recovered) has no outcome yet."""
        return has_unfinished(self._store)


def stopper(outages: Outages, stages: Sequence[Stage]) -> Callable[[], None]:
    """What a stop does: set the flag that ends every wait, and ask each stage's background
    work to end soon (``Stage.stop_soon``)."""

    def stop() -> None:
        outages.stop.set()
        for stage in stages:
            for stop_soon in stage.stop_soon:
                stop_soon()

    return stop
