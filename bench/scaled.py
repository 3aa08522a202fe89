"""Scaled mode (RabbitMQ, PostgreSQL, one process per stage) vs the bare broker.

The servers are started here on loopback ports of their own and stopped at the end.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg

from bench import broker
from bench.procs import run_measured
from bench.report import Figure, Results
from bench.room import STAGES, Room

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import PostgreSQL, RabbitMQ  # noqa: E402  (tests/ is not a package)

DEADLINE_S = 150
BROKER_BASELINE = "pika alone: persistent 1 KiB msgs, confirm per publish, quorum queue, "
BROKER_BASELINE += "then consume with manual acks"
IMPORT_BASELINE = "a process that only imports `services.cli`"


def measure(workdir: Path, count: int, results: Results) -> None:
    with ExitStack() as stack:
        rabbitmq = RabbitMQ.start(workdir / "rabbitmq")
        stack.callback(rabbitmq.stop)
        postgres = PostgreSQL.start(workdir / "postgres")
        stack.callback(postgres.stop)
        bare = broker.round_trip(rabbitmq.new_vhost("baseline"), count)
        room = Room(workdir / "room", rabbitmq.new_vhost("mailroom"), postgres.new_database("mr"))
        stack.callback(room.stop_workers)
        room.prepare(count)
        _run(room, postgres.conninfo("mr"), count, bare, results)


def _run(room: Room, conninfo: str, count: int, bare: broker.RoundTrip, results: Results) -> None:
    """Time the workers from their start until every mail has an outcome."""
    start = time.perf_counter()
    room.start_workers()
    with psycopg.connect(conninfo, autocommit=True) as db:
        done = _wait_for_outcomes(db, room, count)
        seconds = time.perf_counter() - start
        memory = room.peak_memory()
        tally = _tally(db)
    rate = done / seconds if done else None
    results.figures.append(Figure("scaled: mails/s, end to end", BROKER_BASELINE, "mails/s",
                                  rate, bare.per_second))
    results.stage_memory += _memory(room, memory)
    results.notes += _notes(room, count, done, seconds, tally)
    results.details["scaled"] = _details(bare, seconds, done, memory, tally)


def _wait_for_outcomes(db: psycopg.Connection[Any], room: Room, count: int) -> int:
    """Poll until ``count`` mails have an outcome, a worker exits, or the deadline passes."""
    end = time.monotonic() + DEADLINE_S
    while True:
        done = _scalar(db, "SELECT count(*) FROM mail_outcomes")
        if done >= count or room.exited_workers() or time.monotonic() > end:
            return done
        time.sleep(0.05)


def _tally(db: psycopg.Connection[Any]) -> dict[str, int]:
    """Outcomes by kind, and what the user sees: request mails and dead-letter entries."""
    rows = db.execute("SELECT outcome, count(*) FROM mail_outcomes GROUP BY outcome ORDER BY 1")
    tally = {outcome: n for outcome, n in rows}
    tally["request mails"] = _scalar(db, "SELECT count(*) FROM request_mails")
    tally["dead letters"] = _scalar(db, "SELECT count(*) FROM dead_letters")
    return tally


def _scalar(db: psycopg.Connection[Any], query: str) -> int:
    row = db.execute(query).fetchone()
    return int(row[0]) if row else 0


def _memory(room: Room, memory: dict[str, float | None]) -> list[Figure]:
    imports_only = run_measured([sys.executable, "-c", "import services.cli"], env=room.env)
    baseline = imports_only.peak_rss_mib
    return [Figure(stage, IMPORT_BASELINE, "MiB", memory.get(stage), baseline) for stage in STAGES]


def _notes(room: Room, count: int, done: int, seconds: float, tally: dict[str, int]) -> list[str]:
    kinds = ", ".join(f"{k} {v}" for k, v in tally.items())
    notes = [f"scaled: {done} of {count} mails had an outcome after {seconds:.1f} s; {kinds}"]
    seen = tally["request mails"] + tally["dead letters"]
    if done != count or seen != count:
        notes.append(f"PROBLEM: scaled run accounted for {done} outcomes and {seen} "
                     f"request mails + dead letters, expected {count}")
    for stage, code in room.exited_workers().items():
        notes.append(f"PROBLEM: worker {stage} exited with status {code}:\n{room.worker_log(stage)}")
    return notes


def _details(bare: broker.RoundTrip, seconds: float, done: int, memory: dict[str, float | None],
             tally: dict[str, int]) -> dict[str, Any]:
    return {
        "seconds": seconds,
        "mails_with_outcome": done,
        "tally": tally,
        "peak_rss_mib": memory,
        "baseline_publish_per_s": bare.count / bare.publish_seconds,
        "baseline_consume_per_s": bare.count / bare.consume_seconds,
    }
