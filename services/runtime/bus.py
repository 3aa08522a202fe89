"""The bus on kombu: connecting, publishing with confirms, and consuming with manual acks.

On ``memory://`` every stage shares one process and the broker lives in it; on
``amqp://`` (RabbitMQ) queues are durable quorum queues, messages persistent, and every
publish waits for the broker's confirm.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from kombu import Connection, Consumer, Producer
from kombu.exceptions import KombuError, OperationalError

from contracts import queues
from contracts.base import Envelope
from contracts.registry import queue_for
from services.runtime import topology
from services.runtime.errors import BrokerOutage
from services.runtime.store import safe_url

log = logging.getLogger(__name__)

T = TypeVar("T")

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
    """Publishes contract messages as persistent JSON, waiting for the broker's confirms.

    ``publish_all`` sends a whole batch before it waits, then waits until the broker has
    confirmed every message (pipelined confirms): the caller acks what it handled only
    after that. Raises ``BrokerOutage`` when the broker refuses (nacks), cannot route a
    message (its queue is gone) or cannot be reached after a few quick tries; the caller
    then must not ack what it was handling. Each try starts on a fresh connection and
    declares every queue again, so a broker that came back without its queues gets them
    back before any message.
    """

    def __init__(self, conn: Connection, *, sleep: Callable[[float], None] = time.sleep) -> None:
        # A connection of its own, made on first use: waiting for a confirm reads the
        # connection, and on one shared with consumers that would deliver messages in the
        # middle of a publish.
        self._origin = conn
        self._sleep = sleep
        self._conn: Connection | None = None
        self._producer: Producer | None = None
        self._confirms: _Confirms | None = None

    def publish(self, message: Envelope, *, headers: dict[str, Any] | None = None) -> None:
        self.publish_all([message], headers=headers)

    def publish_all(
        self, messages: Iterable[Envelope], *, headers: dict[str, Any] | None = None
    ) -> None:
        """Publish every message, then wait for all their confirms."""
        batch = [(queue_for(m), m.model_dump_json(by_alias=True).encode()) for m in messages]
        if not batch:
            return
        for pause in (*_PUBLISH_PAUSES_S, None):
            try:
                self._send(batch, headers or {})
                return
            except Exception as exc:  # py-amqp raises socket, channel and nack errors
                self._reset()
                if pause is None:
                    names = sorted({name for name, _ in batch})
                    raise BrokerOutage(
                        f"publishing to {', '.join(names)} failed: {_text(exc)}"
                    ) from exc
                log.info("publishing failed (%s); trying again in %.1f s", _text(exc), pause)
                self._sleep(pause)

    def _send(self, batch: list[tuple[str, bytes]], headers: dict[str, Any]) -> None:
        producer = self._ready()
        for name, body in batch:
            producer.publish(
                body,
                routing_key=name,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                headers=headers,
                # An unroutable message is returned and raises while the confirms are
                # awaited, instead of being confirmed and dropped: a queue that vanished
                # never swallows mail.
                mandatory=True,
            )
            if self._confirms is not None:
                self._confirms.sent += 1
        if self._confirms is not None and self._conn is not None:
            self._confirms.await_all(self._conn)

    def close(self) -> None:
        self._reset()

    def _ready(self) -> Producer:
        if self._producer is None:
            self._conn = _sibling(self._origin)
            # Every queue, mail.dead included, must exist before the first message.
            declare_all(self._conn)
            channel = self._conn.channel()
            if not is_embedded(self._conn.as_uri()):
                self._confirms = _Confirms(channel)
            self._producer = Producer(channel, exchange=topology.exchange())
        return self._producer

    def _reset(self) -> None:
        conn, self._conn, self._producer, self._confirms = self._conn, None, None, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a dead connection may fail to close
                conn.release()


#: Pauses between the quick tries of a publish; a longer outage is the worker's to wait out.
_PUBLISH_PAUSES_S = (0.2, 0.7, 1.2)
#: How long the broker may take to confirm what was published before it counts as gone.
CONFIRM_TIMEOUT_S = 30


class _Confirms:
    """Publisher confirms of one channel: the broker numbers the messages published on it
    from 1 and acks (or nacks) them, several at a time with ``multiple``."""

    def __init__(self, channel: Any) -> None:
        self.sent = 0
        self._confirmed = 0
        self._out_of_order: set[int] = set()
        self._nacked = False
        channel.confirm_select()
        channel.events["basic_ack"].add(self._ack)
        channel.events["basic_nack"].add(self._nack)

    def _ack(self, tag: int, multiple: bool) -> None:
        if multiple:
            self._confirmed = max(self._confirmed, tag)
        else:
            self._out_of_order.add(tag)
        while self._confirmed + 1 in self._out_of_order:
            self._confirmed += 1
            self._out_of_order.discard(self._confirmed)

    def _nack(self, tag: int, multiple: bool) -> None:
        self._nacked = True

    def await_all(self, conn: Connection) -> None:
        """Read the connection until every message sent is confirmed; raises on a nack, a
        returned (unroutable) message, a lost connection or ``CONFIRM_TIMEOUT_S``."""
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        while self._confirmed < self.sent and not self._nacked:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no confirm from the broker in {CONFIRM_TIMEOUT_S} s")
            conn.drain_events(timeout=left)
        if self._nacked:
            raise BrokerOutage("the broker refused (nacked) a message")


def _text(exc: BaseException) -> str:
    """The exception as one line: its class, and its message when it has one."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _sibling(conn: Connection) -> Connection:
    """A new connection to the same broker. (kombu's ``clone`` of a ``memory://`` connection
    warns about a missing host name, which would reach every user's terminal.)"""
    if conn.transport_cls == "memory":
        return Connection("memory://", transport_options=conn.transport_options)
    # Without py-amqp's confirm_publish, which waits for each message's confirm in turn:
    # the publisher pipelines them (``_Confirms``).
    options = {k: v for k, v in conn.transport_options.items() if k != "confirm_publish"}
    return conn.clone(transport_options=options)


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
#: Handles a batch of deliveries; returns what to do with each, in their order.
BatchHandle = Callable[[Sequence[Delivery]], list[str]]


class Guard(Protocol):
    """Runs one handling, waiting out a store outage in between tries (``Outages.ride_out``)."""

    def __call__(self, work: Callable[[], T]) -> T: ...


@dataclass(frozen=True)
class Batched:
    """A stage's handling of a queue in batches: up to ``size`` deliveries, gathered for at
    most ``linger_s`` after the first, handled together."""

    handle: BatchHandle
    size: int
    linger_s: float


def _unguarded(work: Callable[[], T]) -> T:
    return work()


class Batcher:
    """Gathers the deliveries of one queue and hands them to ``Batched.handle`` together,
    then acks (or requeues) each. A batch goes out when it is full, when ``linger_s`` has
    passed since its first delivery, or when no further delivery comes (``drain``)."""

    def __init__(
        self,
        name: str,
        batched: Batched,
        guard: Guard = _unguarded,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._batched = batched
        self._guard = guard
        self._monotonic = monotonic
        self._held: list[tuple[Delivery, Any]] = []
        self._since = 0.0

    def add(self, delivery: Delivery, message: Any) -> None:
        if not self._held:
            self._since = self._monotonic()
        self._held.append((delivery, message))
        if len(self._held) >= self._batched.size:
            self.flush()

    @property
    def size(self) -> int:
        return self._batched.size

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def until_due(self) -> float:
        """Seconds until the batch held must go out (0 when due, inf when none is held)."""
        if not self._held:
            return float("inf")
        return max(0.0, self._since + self._batched.linger_s - self._monotonic())

    def flush(self) -> None:
        """Handle what is held; ack only after the whole batch was handled and published."""
        held, self._held = self._held, []
        if not held:
            return
        deliveries = [d for d, _ in held]
        # An error leaves them unacked: the broker hands them over again.
        actions = self._guard(lambda: self._batched.handle(deliveries))
        for (_, message), action in zip(held, actions, strict=True):
            _settle(self.name, message, action)

    def forget(self) -> None:
        """Drop what is held without acking it (the connection is gone: the broker has it)."""
        self._held = []


def gathering(name: str, handle: Handle | Batched, guard: Guard) -> Handle | Batcher:
    """What consumes ``name``: ``handle`` itself, or a ``Batcher`` for a batched handling."""
    return Batcher(name, handle, guard) if isinstance(handle, Batched) else handle


def _settle(name: str, message: Any, action: str) -> None:
    try:
        message.ack() if action == "ack" else message.requeue()
    except Exception as exc:  # the connection died: the broker delivers it again
        raise BrokerOutage(f"acknowledging a message of {name} failed: {_text(exc)}") from exc


def consumer(
    channel: Any,
    name: str,
    handle: Handle | Batcher,
    guard: Guard | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> Consumer:
    """A manual-ack consumer with bounded prefetch that hands each message to ``handle``,
    or to a ``Batcher`` that handles them in batches (its size is the prefetch then).

    The queues are declared beforehand (``declare_all``), not here: one declared by an
    earlier release is used with the arguments it has. Once ``stopping`` is true a message
    is left alone, unacknowledged: closing the connection reads what the broker had sent
    ahead (prefetch), and the broker hands that to another worker.
    """

    def on_message(message: Any) -> None:
        if stopping():
            return
        delivery = delivery_of(name, message)
        if isinstance(handle, Batcher):
            handle.add(delivery, message)
            return
        action = guard(lambda: handle(delivery)) if guard else handle(delivery)
        _settle(name, message, action)

    prefetch = queues.PREFETCH
    if isinstance(handle, Batcher):
        prefetch = max(prefetch, handle.size)
    return Consumer(
        channel,
        queues=[topology.queue(name)],
        on_message=on_message,
        accept=["json"],
        prefetch_count=prefetch,
        no_ack=False,
        auto_declare=False,
    )


def drain(conn: Connection, timeout: float, batchers: Sequence[Batcher] = ()) -> bool:
    """Handle every message ready within ``timeout``; False when nothing came (idle).

    A batch held by one of ``batchers`` goes out once its linger has passed, or as soon as
    no further message comes. Raises ``BrokerOutage`` when the connection is lost.
    """
    holding = [b for b in batchers if b.holding]
    wait = min([timeout, *(b.until_due() for b in holding)])
    came = True
    try:
        conn.drain_events(timeout=wait)
    except TimeoutError:
        came = False
    except (*conn.connection_errors, OSError) as exc:
        for b in batchers:
            b.forget()
        raise BrokerOutage(f"broker connection lost: {_text(exc)}") from exc
    flushed = False
    for b in batchers:
        if b.holding and (not came or b.until_due() <= 0):
            b.flush()
            flushed = True
    return came or flushed
