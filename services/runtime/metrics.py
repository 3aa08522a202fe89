"""The stages' counters and handling-time histogram, on a registry the process owns.

The process that serves ``/metrics`` (``mailroom worker STAGE``, or ``mailroom run`` for all
five stages) makes one ``CollectorRegistry`` and one ``StageMetrics`` on it and hands that to
the stages it builds; prometheus-client's process-wide default registry is never used. What
the store knows (mailbox health, the outbox, the dead-letter queue) is read at scrape time
by ``store_gauges.StoreGauges`` instead, so that it is the truth whichever process wrote it.

Outcomes of a message (the ``outcome`` label of ``mailroom_mails_handled_total``):

- ``handled``: handled and acknowledged, its results published (parser, validator, router,
  notifier);
- ``dead_lettered``: the mail went to the dead-letter queue (any stage; the poller's are
  mails it could not download);
- ``fetched``: the poller took the mail from its mailbox and handed it on;
- ``recorded``: the poller recorded a ``mail.dead`` message as a dead-letter entry;
- ``requeued``: the poller could not record a ``mail.dead`` message; it is put back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.runtime.bus import Delivery, Handle
from services.runtime.ports import Metrics

HANDLED = "handled"
DEAD_LETTERED = "dead_lettered"
FETCHED = "fetched"
RECORDED = "recorded"
REQUEUED = "requeued"

#: The outcomes each stage can have, shown at 0 from the start so rates and alerts work
#: before the first mail.
OUTCOMES = {
    "poller": (FETCHED, DEAD_LETTERED, RECORDED, REQUEUED),
    "parser": (HANDLED, DEAD_LETTERED),
    "validator": (HANDLED, DEAD_LETTERED),
    "router": (HANDLED, DEAD_LETTERED),
    "notifier": (HANDLED, DEAD_LETTERED),
}

#: Seconds: a small mail is parsed in milliseconds, a big one or a slow SMTP server takes
#: seconds, and retries with back-off take up to a minute.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class StageMetrics:
    """``Metrics`` on ``registry``: ``mailroom_mails_handled_total{stage,outcome}``,
    ``mailroom_handling_seconds{stage}`` and ``mailroom_dead_letters_total{stage}``.

    ``stages``: the stages this process runs; their series exist (at 0) from the start, so a
    stage whose series are absent is one that no process runs. Safe to use from any thread.
    """

    def __init__(self, registry: CollectorRegistry, stages: Iterable[str] = ()) -> None:
        self._handled = Counter(
            "mailroom_mails_handled",
            "Mails (and messages) a stage finished, by outcome.",
            ["stage", "outcome"],
            registry=registry,
        )
        self._seconds = Histogram(
            "mailroom_handling_seconds",
            "Seconds a stage took to handle one message, retries included.",
            ["stage"],
            buckets=BUCKETS,
            registry=registry,
        )
        self._dead = Counter(
            "mailroom_dead_letters",
            "Mails a stage sent to the dead-letter queue.",
            ["stage"],
            registry=registry,
        )
        for stage in stages:
            for outcome in OUTCOMES.get(stage, (HANDLED, DEAD_LETTERED)):
                self._handled.labels(stage, outcome)
            self._seconds.labels(stage)
            self._dead.labels(stage)

    def handled(self, stage: str, outcome: str, count: int = 1) -> None:
        if count:
            self._handled.labels(stage, outcome).inc(count)

    def handling_took(self, stage: str, seconds: float) -> None:
        self._seconds.labels(stage).observe(seconds)

    def dead_lettered(self, stage: str, count: int = 1) -> None:
        if count:
            self._dead.labels(stage).inc(count)


class NoMetrics:
    """``Metrics`` that keeps nothing: for code run without an endpoint (``dlq replay``)."""

    def handled(self, stage: str, outcome: str, count: int = 1) -> None:
        pass

    def handling_took(self, stage: str, seconds: float) -> None:
        pass

    def dead_lettered(self, stage: str, count: int = 1) -> None:
        pass


def measured(
    stage: str,
    handle: Handle,
    metrics: Metrics,
    outcomes: dict[str, str],
    monotonic: Callable[[], float] = time.monotonic,
) -> Handle:
    """``handle``, its time observed and its action counted as ``outcomes[action]``.

    For consumers whose outcome is their action ("ack", "requeue"); a handling cut short by
    an outage is not counted: the same message is handled again.
    """

    def timed(delivery: Delivery) -> str:
        began = monotonic()
        action = handle(delivery)
        metrics.handled(stage, outcomes.get(action, action))
        metrics.handling_took(stage, monotonic() - began)
        return action

    return timed
