"""Reading a scaled run's progress straight from PostgreSQL (faster than the CLI)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.room import Room


def scalar(db: psycopg.Connection[Any], query: str) -> int:
    row = db.execute(query).fetchone()
    return int(row[0]) if row else 0


def wait_for_outcomes(
    db: psycopg.Connection[Any], room: Room, count: int, *, deadline_s: float
) -> int:
    """Poll until ``count`` mails have an outcome, a worker exits, or the deadline passes."""
    end = time.monotonic() + deadline_s
    while True:
        done = scalar(db, "SELECT count(*) FROM mail_outcomes")
        if done >= count or room.exited_workers() or time.monotonic() > end:
            return done
        time.sleep(0.05)


def tally(db: psycopg.Connection[Any]) -> dict[str, int]:
    """Outcomes by kind, and what the user sees: request mails and dead-letter entries."""
    rows = db.execute("SELECT outcome, count(*) FROM mail_outcomes GROUP BY outcome ORDER BY 1")
    counts = {outcome: n for outcome, n in rows}
    counts["request mails"] = scalar(db, "SELECT count(*) FROM request_mails")
    counts["dead letters"] = scalar(db, "SELECT count(*) FROM dead_letters")
    counts["fetched"] = scalar(db, "SELECT count(*) FROM fetched_mails")
    return counts


@dataclass(frozen=True)
class WorkerRun:
    """What the workers did, read before they were stopped."""

    seconds: float
    done: int
    peak_rss_mib: dict[str, float | None]
    exited: dict[str, int]
    exit_logs: dict[str, str]
    tally: dict[str, int]


def run_workers(
    room: Room, db: psycopg.Connection[Any], count: int, *, deadline_s: float, per_stage: int = 1
) -> WorkerRun:
    """Time the workers (``per_stage`` of each stage) from their start until every mail has
    an outcome, then stop them."""
    start = time.perf_counter()
    room.start_workers(per_stage)
    done = wait_for_outcomes(db, room, count, deadline_s=deadline_s)
    seconds = time.perf_counter() - start
    memory = room.peak_memory()
    exited = room.exited_workers()
    logs = {stage: room.worker_log(stage) for stage in exited}
    room.stop_workers()
    return WorkerRun(seconds, done, memory, exited, logs, tally(db))
