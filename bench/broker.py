"""Baseline: RabbitMQ alone, with the delivery guarantees Mailroom asks of it."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass

import pika
from pika.adapters.blocking_connection import BlockingChannel

from contracts.queues import PREFETCH

QUEUE = "bench.baseline"
BODY = bytes(range(256)) * 4  # 1 KiB


@dataclass(frozen=True)
class RoundTrip:
    count: int
    publish_seconds: float
    consume_seconds: float

    @property
    def per_second(self) -> float:
        return self.count / (self.publish_seconds + self.consume_seconds)


def round_trip(url: str, count: int) -> RoundTrip:
    """Publish ``count`` persistent 1 KiB messages to a durable quorum queue, each waiting for
    its confirm (as Mailroom's publisher does), then consume them all with manual acks and
    Mailroom's prefetch."""
    with closing(pika.BlockingConnection(pika.URLParameters(url))) as conn:
        channel = conn.channel()
        channel.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        channel.confirm_delivery()
        channel.basic_qos(prefetch_count=PREFETCH)
        publish = _timed(lambda: _publish(channel, count))
        consume = _timed(lambda: _consume(channel, count))
    return RoundTrip(count, publish, consume)


def _publish(channel: BlockingChannel, count: int) -> None:
    persistent = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
    for _ in range(count):
        channel.basic_publish("", QUEUE, BODY, properties=persistent, mandatory=True)


def _consume(channel: BlockingChannel, count: int) -> None:
    for taken, (method, _props, _body) in enumerate(channel.consume(QUEUE), start=1):
        channel.basic_ack(method.delivery_tag)
        if taken == count:
            break
    channel.cancel()


def _timed(work: Callable[[], None]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start
