"""kill -9 a worker in the middle of a batch: inside its open store transaction, and after
its commit while the broker has not confirmed what it published. Every mail still ends
exactly once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from harness import Mailroom, settings_yaml

from bench.mailgen import fill_maildir, kind_of
from contracts.ids import mail_id

MAILS = 120


def scalar(conninfo: str, query: str) -> int:
    with psycopg.connect(conninfo, connect_timeout=2, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0


def wait_until(room: Mailroom, ready: Callable[[], bool], what: str) -> None:
    """Polled every 10 ms: the windows these tests aim at are short."""
    end = time.monotonic() + 120
    while not ready():
        if time.monotonic() > end or room.exited_workers():
            raise AssertionError(f"never {what}\n{room.worker_logs()}")
        time.sleep(0.01)


@contextmanager
def blobs_locked(conninfo: str) -> Iterator[None]:
    """No one may add a blob until the block ends: a batch that stores one waits inside its
    transaction."""
    with psycopg.connect(conninfo) as conn:
        conn.execute("LOCK TABLE blobs IN EXCLUSIVE MODE")
        yield
        conn.rollback()


@contextmanager
def publishing_blocked(rabbitmq) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """RabbitMQ's memory alarm: every publisher is blocked and no confirm comes."""
    rabbitmq.rabbitmqctl("set_vm_memory_high_watermark", "absolute", "1")
    try:
        yield
    finally:
        rabbitmq.rabbitmqctl("set_vm_memory_high_watermark", "0.4")


def test_a_parser_killed_inside_its_batch_or_before_its_confirms_loses_and_doubles_nothing(
    rabbitmq, scaled: Mailroom
) -> None:  # type: ignore[no-untyped-def]
    room = scaled
    conninfo = room.env["MAILROOM_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    keys = fill_maildir(room.maildir, MAILS)
    room.apply_settings(settings_yaml(room.maildir, mailbox="load"))
    for stage in ("poller", "validator", "router", "notifier"):
        room.start_worker(stage)
    wait_until(
        room,
        lambda: scalar(conninfo, "SELECT count(*) FROM fetched_mails") >= MAILS,
        "fetched every mail",
    )

    # 1. Killed with its batch handled in part, its transaction open and waiting.
    with blobs_locked(conninfo):
        room.start_worker("parser")
        wait_until(
            room,
            lambda: (
                scalar(
                    conninfo,
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query ILIKE 'INSERT INTO blobs%'",
                )
                > 0
            ),
            "saw the parser wait inside its transaction",
        )
        room.kill_worker("parser")
    outcomes_after_first_kill = scalar(conninfo, "SELECT count(*) FROM mail_outcomes")

    # 2. Killed after its commit, with its publishes waiting for the broker's confirms.
    blobs_before = scalar(conninfo, "SELECT count(*) FROM blobs")
    with publishing_blocked(rabbitmq):
        room.start_worker("parser")
        wait_until(
            room,
            lambda: scalar(conninfo, "SELECT count(*) FROM blobs") > blobs_before,
            "saw the parser commit a batch",
        )
        room.kill_worker("parser")
    committed_unconfirmed = scalar(conninfo, "SELECT count(*) FROM blobs") - blobs_before

    room.start_worker("parser")
    room.wait_for(lambda: len(set(room.accounted_mail_ids())) >= MAILS, timeout=300, what="all")

    assert outcomes_after_first_kill == 0, "the parser got mail through before it was killed"
    assert committed_unconfirmed > 0
    accounted = Counter(room.accounted_mail_ids())
    assert set(accounted) == {mail_id("load", k) for k in keys}, "a mail was lost"
    assert [m for m, n in accounted.items() if n > 1] == [], "a mail was doubled"
    dead = room.json("dlq", "list")
    assert len(dead) == sum(kind_of(i) == "broken" for i in range(MAILS)), "a good mail died"
    assert {d["stage"] for d in dead} == {"parser"}
