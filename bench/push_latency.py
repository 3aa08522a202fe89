"""Push delivery: the time from a mail's delivery to Dovecot to its request in the store,
with IMAP IDLE (``idle: true``) beside polling alone at ``POLL_MINUTES``.

``mailroom run`` (embedded: in-process broker, SQLite) on an IMAPS mailbox; mails are
delivered one at a time, each once the previous one became a request.
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from bench.imap import imaps_mailbox
from bench.procs import REPO
from bench.report import Figure, Results
from bench.room import Room, helpdesk_settings

sys.path.insert(0, str(REPO / "tests"))
from mailservers import Dovecot  # noqa: E402  (tests/ is not a package)

PASSWORD = "bench-secret"
#: Polling alone: the default interval, the one most mailboxes keep.
POLL_MINUTES = 1.0
MAILS_IDLE = 20
MAILS_POLLING = 6
WAIT_S = 180


def measure(workdir: Path, results: Results) -> None:
    with ExitStack() as stack:
        dovecot = Dovecot.start(workdir / "dovecot")
        stack.callback(dovecot.stop)
        polled = _latencies(workdir / "poll", dovecot, idle=False, mails=MAILS_POLLING)
        pushed = _latencies(workdir / "idle", dovecot, idle=True, mails=MAILS_IDLE)
    for name, pick in (("median", statistics.median), ("p95", _p95)):
        results.figures.append(
            Figure(
                what=f"push: delivery to request, {name}, IDLE (embedded)",
                baseline_what=f"polling every {POLL_MINUTES:g} min alone",
                unit="s",
                mailroom=pick(pushed) if pushed else None,
                baseline=pick(polled) if polled else None,
            )
        )
    results.details["push_latency"] = {"idle_s": pushed, "polling_s": polled}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _latencies(workdir: Path, dovecot: Dovecot, *, idle: bool, mails: int) -> list[float]:
    user = f"push-{uuid.uuid4().hex[:8]}@bench.example"
    dovecot.add_user(user, PASSWORD)
    db = workdir / "mailroom.db"
    room = Room(workdir, "memory://", f"sqlite:///{db}")
    mailbox = imaps_mailbox(dovecot, "push", user, PASSWORD)
    mailbox |= {"idle": idle, "fetch_every_minutes": POLL_MINUTES}
    room.apply(helpdesk_settings(mailbox, max_attachment_mb=10))
    room.start_command("run", "run")
    taken: list[float] = []
    try:
        _wait_for(db, 0, timeout=60)  # started, and the first round is over
        time.sleep(2)  # IDLE entered
        for n in range(mails):
            start = time.monotonic()
            dovecot.deliver(user, _mail(n))
            if not _wait_for(db, n + 1, timeout=WAIT_S):
                break
            taken.append(time.monotonic() - start)
    finally:
        room.stop_workers()
    return taken


def _wait_for(db: Path, count: int, *, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT count(*) FROM requests").fetchone()[0] >= count:
                    return True
        except sqlite3.Error:  # not made yet
            pass
        time.sleep(0.05)
    return False


def _mail(n: int) -> bytes:
    return (
        f"From: customer{n}@example.org\r\nTo: help@bench.example\r\nSubject: push {n}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.org>\r\n\r\nhello\r\n"
    ).encode()
