"""Scaled mode (RabbitMQ, PostgreSQL, one process per stage) vs the bare broker; and two
processes per stage beside one, on the same mails in the same run.

The servers are started here on loopback ports of their own and stopped at the end.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import psycopg

from bench import broker
from bench.outcomes import WorkerRun, run_workers
from bench.procs import REPO, run_measured
from bench.report import Figure, Results
from bench.room import STAGES, Room

sys.path.insert(0, str(REPO / "tests"))
from servers import PostgreSQL, RabbitMQ  # noqa: E402  (tests/ is not a package)

DEADLINE_S = 120
BROKER_BASELINE = (
    "pika alone: persistent 1 KiB msgs, confirm per publish, quorum queue, "
    "then consume with manual acks"
)
IMPORT_BASELINE = "python importing `services.cli`, nothing else"
TWO_PER_STAGE_BASELINE = (
    "the same mails with 1 worker per stage, same run (one Maildir mailbox: the second "
    "poller only waits for the lease)"
)


Run = WorkerRun


def measure(workdir: Path, count: int, results: Results) -> None:
    with ExitStack() as stack:
        rabbitmq = RabbitMQ.start(workdir / "rabbitmq")
        stack.callback(rabbitmq.stop)
        postgres = PostgreSQL.start(workdir / "postgres")
        stack.callback(postgres.stop)
        bare = broker.round_trip(rabbitmq.new_vhost("baseline"), count)
        runs = {}
        for per_stage in (1, 2):
            name = f"mr{per_stage}"
            room = Room(workdir / name, rabbitmq.new_vhost(name), postgres.new_database(name))
            stack.callback(room.stop_workers)
            room.prepare(count)
            runs[per_stage] = _run(room, postgres.conninfo(name), count, per_stage)
            if per_stage == 1:
                results.stage_memory += _memory(room, runs[1])
    run, doubled = runs[1], runs[2]
    results.figures += [
        Figure(
            "scaled: mails/s, end to end", BROKER_BASELINE, "mails/s", _rate(run), bare.per_second
        ),
        Figure(
            "scaled: mails/s, end to end, 2 workers per stage",
            TWO_PER_STAGE_BASELINE,
            "mails/s",
            _rate(doubled),
            _rate(run),
        ),
    ]
    results.notes += _notes(count, run) + _notes(count, doubled, "scaled, 2 per stage")
    results.details["scaled"] = asdict(run) | {
        "baseline_publish_per_s": bare.count / bare.publish_seconds,
        "baseline_consume_per_s": bare.count / bare.consume_seconds,
    }
    results.details["scaled_two_per_stage"] = asdict(doubled)


def _run(room: Room, conninfo: str, count: int, per_stage: int) -> Run:
    with psycopg.connect(conninfo, autocommit=True) as db:
        return run_workers(room, db, count, deadline_s=DEADLINE_S, per_stage=per_stage)


def _rate(run: Run) -> float | None:
    return run.done / run.seconds if run.done else None


def _memory(room: Room, run: Run) -> list[Figure]:
    imports_only = run_measured([sys.executable, "-c", "import services.cli"], env=room.env)
    baseline = imports_only.peak_rss_mib
    return [
        Figure(f"worker {stage}", IMPORT_BASELINE, "MiB", run.peak_rss_mib.get(stage), baseline)
        for stage in STAGES
    ]


def _notes(count: int, run: Run, what: str = "scaled") -> list[str]:
    kinds = ", ".join(f"{k} {v}" for k, v in run.tally.items())
    notes = [
        f"{what}: {run.done} of {count} mails had an outcome after {run.seconds:.1f} s; {kinds}"
    ]
    seen = run.tally["request mails"] + run.tally["dead letters"]
    if run.done != count or seen != count:
        notes.append(
            f"PROBLEM: {what} run has {run.done} outcomes and {seen} request mails + dead "
            f"letters for {count} mails"
        )
    for stage, code in run.exited.items():
        notes.append(f"PROBLEM: worker {stage} exited with status {code}:\n{run.exit_logs[stage]}")
    return notes
