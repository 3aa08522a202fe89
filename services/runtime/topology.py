"""kombu entities built from ``contracts.queues``; the only place that spells ``x-`` arguments."""

from __future__ import annotations

from kombu import Exchange, Queue

from contracts import queues


def exchange() -> Exchange:
    """The one direct exchange every message goes through, routed by queue name."""
    return Exchange(queues.EXCHANGE, type="direct", durable=True, delivery_mode="persistent")


def work_queue(name: str) -> Queue:
    """A durable quorum queue whose repeatedly-undelivered messages go to ``mail.dead``.

    The broker counts deliveries that ended without an ack, whatever ended them; past
    ``BROKER_DELIVERY_LIMIT`` it dead-letters the message. That is a backstop: workers set a
    mail aside themselves after ``DELIVERY_LIMIT`` deaths that were the mail's doing.
    """
    return Queue(
        name,
        exchange(),
        routing_key=name,
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": queues.BROKER_DELIVERY_LIMIT,
            "x-dead-letter-exchange": queues.EXCHANGE,
            "x-dead-letter-routing-key": queues.MAIL_DEAD,
        },
    )


def dead_queue() -> Queue:
    """``mail.dead``: durable and quorum too, with no limit (its consumer requeues on failure)."""
    return Queue(
        queues.MAIL_DEAD,
        exchange(),
        routing_key=queues.MAIL_DEAD,
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    )


def queue(name: str) -> Queue:
    return dead_queue() if name == queues.MAIL_DEAD else work_queue(name)


def all_queues() -> list[Queue]:
    return [work_queue(n) for n in queues.WORK_QUEUES] + [dead_queue()]
