"""Composition of the stages: one stage per process (``worker``) or all in one (``run``)."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType

import sqlalchemy as sa
from kombu import Connection

from contracts.settings import Settings
from services.notifier import worker as notifier
from services.parser import worker as parser
from services.poller import worker as poller
from services.router import worker as router
from services.runtime import tables
from services.runtime.bus import StageConsumer, consumer, declare_all, drain
from services.runtime.ports import Clock
from services.runtime.stage import Stage
from services.runtime.store import Store
from services.validator import worker as validator

log = logging.getLogger(__name__)

BUILDERS: dict[str, Callable[..., Stage]] = {
    "poller": poller.build,
    "parser": parser.build,
    "validator": validator.build,
    "router": router.build,
    "notifier": notifier.build,
}


def run_worker(
    name: str, settings: Settings, *, connection: Connection, store: Store, clock: Clock
) -> None:
    """Run one stage until SIGTERM/SIGINT (``mailroom worker STAGE``)."""
    stage = BUILDERS[name](settings, connection=connection, store=store, clock=clock)
    declare_all(connection)
    for start in stage.on_start:
        start()
    runner = StageConsumer(connection, stage.handlers, tick=stage.tick)
    _stop_on_signals(lambda: setattr(runner, "should_stop", True))
    log.info("stage %s started", name)
    runner.run()


class Pipeline:
    """Every stage on one connection, in one process (``mailroom run``)."""

    def __init__(
        self, settings: Settings, *, connection: Connection, store: Store, clock: Clock
    ) -> None:
        self._conn = connection
        self._store = store
        self.stages = [
            b(settings, connection=connection, store=store, clock=clock) for b in BUILDERS.values()
        ]
        self._poller = self.stages[0]
        declare_all(connection)
        channel = connection.channel()
        self._consumers = [
            consumer(channel, queue, handle)
            for s in self.stages
            for queue, handle in s.handlers.items()
        ]
        for c in self._consumers:
            c.consume()
        for s in self.stages:
            for start in s.on_start:
                start()

    def run_once(self, *, deadline_s: float = 600) -> list[str]:
        """Poll every mailbox once and handle messages until each fetched mail has an outcome."""
        assert self._poller.poll_all is not None
        mail_ids = self._poller.poll_all()
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            busy = drain(self._conn, timeout=0.2)
            if not busy and not self._pending():
                break
        self.settle()  # let notifications and moves settle
        for stage in self.stages:
            if stage.catch_up:
                stage.catch_up()
        return mail_ids

    def settle(self) -> None:
        """Handle messages until every queue is quiet."""
        while drain(self._conn, timeout=0.2):
            pass

    def run_forever(self) -> None:
        stop = False

        def request_stop() -> None:
            nonlocal stop
            stop = True

        _stop_on_signals(request_stop)
        while not stop:
            for stage in self.stages:
                if stage.tick:
                    stage.tick()
            drain(self._conn, timeout=1.0)

    def _pending(self) -> bool:
        """True while some fetched mail (of this run or recovered) has no outcome yet."""
        o, f = tables.mail_outcomes, tables.fetched_mails
        with self._store.transaction() as conn:
            n = conn.execute(
                sa.select(sa.func.count())
                .select_from(f)
                .where(~sa.exists().where(o.c.mail_id == f.c.mail_id))
            ).scalar_one()
        return n > 0


def _stop_on_signals(stop: Callable[[], None]) -> None:
    def handler(_sig: int, _frame: FrameType | None) -> None:
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
