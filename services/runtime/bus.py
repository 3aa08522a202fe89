"""The bus on kombu: connecting, publishing with confirms, and consuming with manual acks.

On ``memory://`` every stage shares one process and the broker lives in it; on
``amqp://`` (RabbitMQ) queues are durable quorum queues, messages persistent, and every
publish waits for the broker's confirm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kombu import Connection, Consumer, Producer
from kombu.exceptions import KombuError, OperationalError
from kombu.mixins import ConsumerMixin

from contracts import queues
from contracts.base import Envelope
from contracts.registry import queue_for
from services.runtime import topology
from services.runtime.errors import InfraError
from services.runtime.store import safe_url

log = logging.getLogger(__name__)

_PUBLISH_RETRY = {"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 3}


def is_embedded(url: str) -> bool:
    """True for the in-process broker, which dies with the process."""
    return url.startswith("memory://")


def connect(url: str) -> Connection:
    """Open a connection, or raise ``InfraError`` naming the URL (password hidden)."""
    conn = Connection(url, transport_options={"confirm_publish": True}, connect_timeout=10)
    try:
        conn.ensure_connection(max_retries=2, interval_start=0.5, interval_step=1, timeout=10)
    except (OperationalError, OSError, KombuError) as exc:
        conn.release()
        raise InfraError(f"broker {safe_url(url)} is unreachable: {exc}") from exc
    return conn


def declare_all(conn: Connection) -> None:
    """Declare the exchange and every queue (idempotent)."""
    with conn.channel() as channel:
        for q in topology.all_queues():
            q.bind(channel).declare()


class Publisher:
    """Publishes contract messages as persistent JSON, waiting for the broker's confirm.

    Raises ``InfraError`` when the broker refuses or cannot be reached after bounded retries;
    the caller then must not ack what it was handling.
    """

    def __init__(self, conn: Connection) -> None:
        # A connection of its own: waiting for a confirm reads the connection, and on one
        # shared with consumers that would deliver messages in the middle of a publish.
        self._conn = _sibling(conn)
        # Every queue, mail.dead included, must exist before the first message: RabbitMQ
        # drops what it cannot route, and a dead-lettered message with nowhere to go is lost.
        declare_all(self._conn)
        self._producer = Producer(self._conn.channel(), exchange=topology.exchange())

    def publish(self, message: Envelope, *, headers: dict[str, Any] | None = None) -> None:
        name = queue_for(message)
        try:
            self._producer.publish(
                message.model_dump_json(by_alias=True).encode(),
                routing_key=name,
                declare=[topology.queue(name)],
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                headers=headers or {},
                retry=True,
                retry_policy=_PUBLISH_RETRY,
            )
        except Exception as exc:  # py-amqp raises MessageNacked, socket and channel errors
            raise InfraError(f"publishing to {name} failed: {exc}") from exc

    def publish_all(self, messages: Iterable[Envelope]) -> None:
        for message in messages:
            self.publish(message)

    def close(self) -> None:
        self._conn.release()


def _sibling(conn: Connection) -> Connection:
    """A new connection to the same broker. (kombu's ``clone`` of a ``memory://`` connection
    warns about a missing host name, which would reach every user's terminal.)"""
    if conn.transport_cls == "memory":
        return Connection("memory://", transport_options=conn.transport_options)
    return conn.clone()


@dataclass(frozen=True)
class Delivery:
    """One received message, independent of kombu."""

    queue: str
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)

    @property
    def attempt(self) -> int:
        """1 for the first delivery; quorum queues count redeliveries in x-delivery-count."""
        return int(self.headers.get("x-delivery-count") or 0) + 1


def delivery_of(queue: str, message: Any) -> Delivery:
    """A kombu message as a Delivery; py-amqp hands the body over as text when it has an
    encoding, so it is turned back into the bytes that were published."""
    body = message.body
    if isinstance(body, str):
        body = body.encode(message.content_encoding or "utf-8")
    return Delivery(queue, bytes(body), dict(message.headers or {}))


#: What a consumer callback returns: "ack" or "requeue".
Handle = Callable[[Delivery], str]


def consumer(channel: Any, name: str, handle: Handle) -> Consumer:
    """A manual-ack consumer with bounded prefetch that hands each message to ``handle``."""

    def on_message(message: Any) -> None:
        action = handle(delivery_of(name, message))
        if action == "ack":
            message.ack()
        else:
            message.requeue()

    return Consumer(
        channel,
        queues=[topology.queue(name)],
        on_message=on_message,
        accept=["json"],
        prefetch_count=queues.PREFETCH,
        no_ack=False,
    )


class StageConsumer(ConsumerMixin):  # type: ignore[misc]  # kombu is untyped
    """Runs consumers until ``should_stop``; ``tick`` runs between waits (the poller's schedule)."""

    def __init__(
        self,
        connection: Connection,
        handlers: dict[str, Handle],
        tick: Callable[[], None] | None = None,
    ) -> None:
        self.connection = connection
        self._handlers = handlers
        self._tick = tick

    def get_consumers(self, _consumer_cls: Any, channel: Any) -> list[Consumer]:
        return [consumer(channel, name, h) for name, h in self._handlers.items()]

    def on_iteration(self) -> None:
        if self._tick is not None:
            self._tick()

    def on_connection_error(self, exc: Exception, interval: float) -> None:
        log.warning("broker connection lost (%s); retrying in %ss", exc, interval)


def drain(conn: Connection, timeout: float) -> bool:
    """Handle every message ready within ``timeout``; False when nothing came (idle)."""
    try:
        conn.drain_events(timeout=timeout)
    except TimeoutError:
        return False
    return True
