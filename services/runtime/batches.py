"""A stage's handling of a batch of deliveries: one store transaction, one round of
publisher confirms, then the acks.

Every mail of the batch is handled inside one transaction (``Store.batch``), each in a
savepoint of its own; what follows is published once the batch is committed, all confirms
are awaited, and only then is the batch acked. A crash at any point leaves the batch unacked:
the broker hands it over again and the handlers, idempotent, give the same results.

A mail that fails has its savepoint undone and is split off: once the others are committed
and published it is handled again alone, the one-mail way (``Dispatcher``: retries, then its
dead letter). A redelivered mail may be one that kills its worker: such a batch is handled
one mail at a time, each start counted, so the one to blame is set aside alone. An outage
undoes the whole batch and propagates: the worker waits it out and the batch is handled
again, counted against no mail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from contracts.base import Envelope
from contracts.registry import CONTRACT_OF_QUEUE
from services.runtime.bus import Delivery
from services.runtime.dispatch import Dispatcher
from services.runtime.errors import Outage
from services.runtime.metrics import HANDLED

log = logging.getLogger(__name__)


@dataclass
class BatchDispatcher:
    """Handles a batch of one queue's deliveries for ``single``'s stage and handler."""

    single: Dispatcher
    #: One store transaction around the batch (``Store.batch``).
    batch: Callable[[], AbstractContextManager[object]]
    #: A savepoint inside it, around one mail (``Store.transaction``).
    step: Callable[[], AbstractContextManager[object]]
    #: Publishes every message, then waits for all their confirms (``Publisher.publish_all``).
    publish_all: Callable[[Sequence[Envelope]], None]

    def __call__(self, deliveries: Sequence[Delivery]) -> list[str]:
        if len(deliveries) < 2 or any(d.redelivered for d in deliveries):
            return [self.single(d) for d in deliveries]
        began = self.single.monotonic()
        outputs: list[Envelope] = []
        alone: list[Delivery] = []
        handled = 0
        with self.batch():
            for delivery in deliveries:
                try:
                    outputs += self._handled(delivery)
                    handled += 1
                except Outage:
                    raise
                except Exception as exc:  # noqa: BLE001 - its savepoint is undone
                    log.info(
                        "stage=%s a mail of a batch failed (%s); handled again alone",
                        self.single.stage,
                        type(exc).__name__,
                    )
                    alone.append(delivery)
        if outputs:
            self._publish(outputs, handled)
        took = (self.single.monotonic() - began) / max(1, handled)
        for _ in range(handled):
            self.single.metrics.handled(self.single.stage, HANDLED)
            self.single.metrics.handling_took(self.single.stage, took)
        for delivery in alone:
            self.single(delivery)
        return ["ack"] * len(deliveries)

    def _handled(self, delivery: Delivery) -> list[Envelope]:
        message = CONTRACT_OF_QUEUE[delivery.queue].model_validate_json(delivery.body)
        with self.step():
            return list(self.single.handler(message))

    def _publish(self, outputs: list[Envelope], handled: int) -> None:
        try:
            self.publish_all(outputs)
        except Outage as exc:
            log.warning(
                "stage=%s a batch of %s was stored but not published, not acked; handled "
                "again once the %s is back: %s",
                self.single.stage,
                handled,
                exc.what,
                exc,
            )
            raise
