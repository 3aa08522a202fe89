"""Push delivery: the time from a mail's delivery to Dovecot to its request in the store,
with IMAP IDLE (``idle: true``) beside polling alone at the shortest interval, embedded
(``mailroom run``: in-process broker, SQLite) and scaled (a worker per stage on RabbitMQ
and PostgreSQL), on IMAPS mailboxes of one Dovecot.

Mails are delivered one at a time, each once the previous one became a request and after
a random pause shorter than the polling interval, so a delivery falls anywhere in a round's
cycle, as real mail does.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import psycopg

from bench.imap import imaps_mailbox
from bench.procs import REPO
from bench.report import Figure, Results
from bench.room import Room, helpdesk_settings

sys.path.insert(0, str(REPO / "tests"))
from mailservers import Dovecot  # noqa: E402  (tests/ is not a package)
from servers import PostgreSQL, RabbitMQ  # noqa: E402

PASSWORD = "bench-secret"
#: Polling alone: 3 s, the shortest interval worth running (a login every 3 s per mailbox
#: is already more than most providers allow one client).
SHORTEST_POLL_MINUTES = 0.05
MAILS = 20
WAIT_S = 120

Count = Callable[[], int]


def measure(workdir: Path, results: Results) -> None:
    rng = random.Random(14)
    latencies: dict[str, dict[str, list[float]]] = {}
    with ExitStack() as stack:
        dovecot = Dovecot.start(workdir / "dovecot")
        stack.callback(dovecot.stop)
        rabbitmq = RabbitMQ.start(workdir / "rabbitmq")
        stack.callback(rabbitmq.stop)
        postgres = PostgreSQL.start(workdir / "postgres")
        stack.callback(postgres.stop)
        for mode in ("embedded", "scaled"):
            latencies[mode] = {}
            for how, idle in (("polling", False), ("idle", True)):
                name = f"{mode}-{how}"
                if mode == "embedded":
                    db = workdir / name / "mailroom.db"
                    room = Room(workdir / name, "memory://", f"sqlite:///{db}")
                    count = _sqlite_count(db)
                else:
                    room = Room(
                        workdir / name, rabbitmq.new_vhost(name), postgres.new_database(name)
                    )
                    count = _postgres_count(postgres.conninfo(name))
                latencies[mode][how] = _latencies(room, dovecot, count, mode, idle, rng)
    for mode, pair in latencies.items():
        for name, pick in (("median", statistics.median), ("p95", _p95)):
            pushed, polled = pair["idle"], pair["polling"]
            results.figures.append(
                Figure(
                    what=f"push: delivery to request, {name}, IDLE ({mode})",
                    baseline_what=f"polling alone every {SHORTEST_POLL_MINUTES * 60:g} s",
                    unit="s",
                    mailroom=pick(pushed) if pushed else None,
                    baseline=pick(polled) if polled else None,
                )
            )
    results.details["push_latency"] = latencies


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _latencies(
    room: Room, dovecot: Dovecot, count: Count, mode: str, idle: bool, rng: random.Random
) -> list[float]:
    user = f"push-{uuid.uuid4().hex[:8]}@bench.example"
    dovecot.add_user(user, PASSWORD)
    mailbox = imaps_mailbox(dovecot, "push", user, PASSWORD)
    # With IDLE the interval is the default minute: what takes the mail is the push.
    mailbox |= {"idle": idle, "fetch_every_minutes": 1 if idle else SHORTEST_POLL_MINUTES}
    room.apply(helpdesk_settings(mailbox, max_attachment_mb=10))
    if mode == "embedded":
        room.start_command("run", "run")
    else:
        room.start_workers()
    taken: list[float] = []
    try:
        # A first mail, not measured: the workers are up and through their first round.
        dovecot.deliver(user, _mail(0))
        _wait_for(count, 1, timeout=WAIT_S)
        time.sleep(1)  # IDLE entered again
        for n in range(1, MAILS + 1):
            time.sleep(rng.uniform(0, SHORTEST_POLL_MINUTES * 60))
            start = time.monotonic()
            dovecot.deliver(user, _mail(n))
            if not _wait_for(count, n + 1, timeout=WAIT_S):
                break
            taken.append(time.monotonic() - start)
    finally:
        room.stop_workers()
    return taken


def _sqlite_count(db: Path) -> Count:
    def count() -> int:
        try:
            with sqlite3.connect(db) as conn:
                return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])
        except sqlite3.Error:  # not made yet
            return -1

    return count


def _postgres_count(conninfo: str) -> Count:
    def count() -> int:
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM requests").fetchone()
                return int(row[0]) if row else -1
        except psycopg.Error:  # not made yet
            return -1

    return count


def _wait_for(count: Count, at_least: int, *, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if count() >= at_least:
            return True
        time.sleep(0.05)
    return False


def _mail(n: int) -> bytes:
    return (
        f"From: customer{n}@example.org\r\nTo: help@bench.example\r\nSubject: push {n}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.org>\r\n\r\nhello\r\n"
    ).encode()
