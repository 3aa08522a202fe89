"""One 50 MB mail (a 40 MB attachment) through the scaled pipeline: peak memory per stage.

Each stage runs as its own ``mailroom worker`` process, started fresh for this one mail, so
its high-water mark (VmHWM) is what that mail cost it.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

import psycopg

from bench.mailgen import make_big_mail
from bench.outcomes import wait_for_outcomes
from bench.procs import REPO, run_measured
from bench.report import Figure, Results
from bench.room import MAILBOX, STAGES, Room, helpdesk_settings

sys.path.insert(0, str(REPO / "tests"))
from servers import PostgreSQL, RabbitMQ  # noqa: E402  (tests/ is not a package)

ATTACHMENT = 40 * 1024 * 1024
# The mail is 55 MB once base64-encoded: over a mailbox's default limit of 50 MB, at which
# the poller would refuse it unread.
MAX_MAIL_MB = 60
DEADLINE_S = 300
BASELINE = "python importing `services.cli`, nothing else"


def measure(workdir: Path, results: Results) -> None:
    with ExitStack() as stack:
        rabbitmq = RabbitMQ.start(workdir / "rabbitmq")
        stack.callback(rabbitmq.stop)
        postgres = PostgreSQL.start(workdir / "postgres")
        stack.callback(postgres.stop)
        room = Room(workdir / "room", rabbitmq.new_vhost("big"), postgres.new_database("big"))
        stack.callback(room.stop_workers)
        size = _prepare(room)
        peaks, done, dead = _run(room, postgres.conninfo("big"))
    baseline = run_measured([sys.executable, "-c", "import services.cli"], env=room.env)
    mib = size / 1024 / 1024
    results.stage_memory += [
        Figure(
            f"{mib:.0f} MB mail: worker {s}", BASELINE, "MiB", peaks.get(s), baseline.peak_rss_mib
        )
        for s in STAGES
    ]
    # The target: the parser's peak above the import baseline, in times the mail.
    parser = peaks.get("parser")
    above = parser - baseline.peak_rss_mib if parser and baseline.peak_rss_mib else None
    what = f"{mib:.0f} MB mail: parser worker's peak RSS above the import baseline"
    results.figures.append(Figure(what, "the size of the mail", "MiB", above, mib))
    if not done:
        results.notes.append("PROBLEM: the 50 MB mail had no outcome before the deadline")
    elif dead:
        results.notes.append(f"PROBLEM: the 50 MB mail was dead-lettered: {dead}")


def _prepare(room: Room) -> int:
    raw = make_big_mail(ATTACHMENT)
    for sub in ("cur", "new", "tmp"):
        (room.maildir / sub).mkdir(parents=True, exist_ok=True)
    (room.maildir / "new" / "big-1").write_bytes(raw)
    mailbox = {
        "name": MAILBOX,
        "protocol": "maildir",
        "path": str(room.maildir),
        "max_mail_mb": MAX_MAIL_MB,
    }
    room.apply(helpdesk_settings(mailbox, max_attachment_mb=45))
    return len(raw)


def _run(room: Room, conninfo: str) -> tuple[dict[str, float | None], bool, str | None]:
    """Peak memory per stage, whether the mail had an outcome, and why it was dead-lettered
    (None: it was not): a refused mail has an outcome too, and measures nothing."""
    room.start_workers()
    with psycopg.connect(conninfo, autocommit=True) as db:
        done = wait_for_outcomes(db, room, 1, deadline_s=DEADLINE_S) >= 1
        row = db.execute("SELECT stage, error FROM dead_letters").fetchone()
    peaks = room.peak_memory()
    room.stop_workers()
    return peaks, done, f"{row[0]}: {row[1]}" if row else None
