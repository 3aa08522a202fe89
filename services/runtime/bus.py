"""The bus on kombu: connecting, publishing with confirms, and consuming with manual acks.

On ``memory://`` every stage shares one process and the broker lives in it; on
``amqp://`` (RabbitMQ) queues are durable quorum queues, messages persistent, and every
publish waits for the broker's confirm.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kombu import Connection, Consumer, Producer
from kombu.exceptions import KombuError, OperationalError

from contracts import queues
from contracts.base import Envelope
from contracts.registry import queue_for
from services.runtime import topology
from services.runtime.errors import BrokerOutage
from services.runtime.store import safe_url

log = logging.getLogger(__name__)

# Short: a longer outage is waited out by the worker (``outages.py``), which can be stopped.
_PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}
#: Seconds to wait for the broker when connecting; a broker that is gone must not hang a worker.
CONNECT_TIMEOUT_S = 5


def is_embedded(url: str) -> bool:
    """True for the in-process broker, which dies with the process."""
    return url.startswith("memory://")


def connect(url: str, *, attempts: int = 3) -> Connection:
    """Open a connection, or raise ``BrokerOutage`` naming the URL (password hidden)."""
    conn = Connection(
        url, transport_options={"confirm_publish": True}, connect_timeout=CONNECT_TIMEOUT_S
    )
    try:
        conn.ensure_connection(
            max_retries=attempts - 1, interval_start=0.5, interval_step=1, timeout=10
        )
    except (*conn.connection_errors, OperationalError, OSError, KombuError) as exc:
        conn.release()
        raise BrokerOutage(f"broker {safe_url(url)} is unreachable: {_text(exc)}") from exc
    return conn


def declare_all(conn: Connection) -> list[str]:
    """Make sure the exchange and every queue exist; returns the queues that had to be made.

    A queue that exists is used as it is: one declared by an earlier release keeps its
    arguments (declaring it again with others would be refused). A work queue that was
    missing on a broker that had it before means the broker lost its queues, and with them
    every message in them (see ``recovery.republish_unfinished``).
    """
    made: list[str] = []
    with conn.channel() as channel:
        topology.exchange().bind(channel).declare()
    for q in topology.all_queues():
        if not _exists(conn, q.name):
            with conn.channel() as channel:
                q.bind(channel).declare()
            made.append(q.name)
    return made


def _exists(conn: Connection, name: str) -> bool:
    """A passive declare; the broker closes the channel when the queue is missing."""
    channel = conn.channel()
    try:
        channel.queue_declare(queue=name, passive=True)
    except conn.channel_errors:
        return False
    finally:
        with contextlib.suppress(*conn.connection_errors, *conn.channel_errors):
            channel.close()
    return True


class Publisher:
    """Publishes contract messages as persistent JSON, waiting for the broker's confirm.

    Raises ``BrokerOutage`` when the broker refuses, cannot route the message (its queue is
    gone) or cannot be reached after a few quick retries; the caller then must not ack what
    it was handling. The next publish starts on a fresh connection and declares every queue
    again, so a broker that came back without its queues gets them back before any message.
    """

    def __init__(self, conn: Connection) -> None:
        # A connection of its own, made on first use: waiting for a confirm reads the
        # connection, and on one shared with consumers that would deliver messages in the
        # middle of a publish.
        self._origin = conn
        self._conn: Connection | None = None
        self._producer: Producer | None = None

    def publish(self, message: Envelope, *, headers: dict[str, Any] | None = None) -> None:
        name = queue_for(message)
        try:
            self._ready().publish(
                message.model_dump_json(by_alias=True).encode(),
                routing_key=name,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                headers=headers or {},
                # An unroutable message is returned and raises here, instead of being
                # confirmed and dropped: a queue that vanished never swallows mail.
                mandatory=True,
                retry=True,
                retry_policy=_PUBLISH_RETRY,
            )
        except Exception as exc:  # py-amqp raises MessageNacked, socket and channel errors
            self._reset()
            raise BrokerOutage(f"publishing to {name} failed: {_text(exc)}") from exc

    def publish_all(self, messages: Iterable[Envelope]) -> None:
        for message in messages:
            self.publish(message)

    def close(self) -> None:
        self._reset()

    def _ready(self) -> Producer:
        if self._producer is None:
            self._conn = _sibling(self._origin)
            # Every queue, mail.dead included, must exist before the first message.
            declare_all(self._conn)
            self._producer = Producer(self._conn.channel(), exchange=topology.exchange())
        return self._producer

    def _reset(self) -> None:
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a dead connection may fail to close
                conn.release()


def _text(exc: BaseException) -> str:
    """The exception as one line: its class, and its message when it has one."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _sibling(conn: Connection) -> Connection:
    """A new connection to the same broker. (kombu's ``clone`` of a ``memory://`` connection
    warns about a missing host name, which would reach every user's terminal.)"""
    if conn.transport_cls == "memory":
        return Connection("memory://", transport_options=conn.transport_options)
    return conn.clone()


@dataclass(frozen=True)
class Delivery:
    """One received message, independent of kombu.

    ``redelivered``: the broker handed this message out before and got no ack (its worker
    stopped, lost its connection, or the broker restarted).
    """

    queue: str
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    redelivered: bool = False

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
    headers = dict(message.headers or {})
    info = message.delivery_info or {}
    again = bool(info.get("redelivered")) or bool(headers.get("x-delivery-count"))
    return Delivery(queue, bytes(body), headers, redelivered=again)


#: What a consumer callback returns: "ack" or "requeue".
Handle = Callable[[Delivery], str]
#: Runs one handling, waiting out a store outage in between tries (``Outages.ride_out``).
Guard = Callable[[Callable[[], str]], str]


def consumer(
    channel: Any,
    name: str,
    handle: Handle,
    guard: Guard | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> Consumer:
    """A manual-ack consumer with bounded prefetch that hands each message to ``handle``.

    The queues are declared beforehand (``declare_all``), not here: one declared by an
    earlier release is used with the arguments it has. Once ``stopping`` is true a message
    is left alone, unacknowledged: closing the connection reads what the broker had sent
    ahead (prefetch), and the broker hands that to another worker.
    """

    def on_message(message: Any) -> None:
        if stopping():
            return
        delivery = delivery_of(name, message)
        action = guard(lambda: handle(delivery)) if guard else handle(delivery)
        try:
            message.ack() if action == "ack" else message.requeue()
        except Exception as exc:  # the connection died: the broker delivers it again
            raise BrokerOutage(f"acknowledging a message of {name} failed: {_text(exc)}") from exc

    return Consumer(
        channel,
        queues=[topology.queue(name)],
        on_message=on_message,
        accept=["json"],
        prefetch_count=queues.PREFETCH,
        no_ack=False,
        auto_declare=False,
    )


def drain(conn: Connection, timeout: float) -> bool:
    """Handle every message ready within ``timeout``; False when nothing came (idle).

    Raises ``BrokerOutage`` when the connection is lost.
    """
    try:
        conn.drain_events(timeout=timeout)
    except TimeoutError:
        return False
    except (*conn.connection_errors, OSError) as exc:
        raise BrokerOutage(f"broker connection lost: {_text(exc)}") from exc
    return True
