"""IMAPS: Mailroom fetching a generated mailbox from Dovecot vs stdlib imaplib alone.

The baseline is the physical limit of the protocol on this machine: one imaplib session
downloading every mail, nothing else. Mailroom runs in scaled mode (RabbitMQ, PostgreSQL,
one ``mailroom worker`` per stage) against the same mailbox. Dovecot, RabbitMQ and
PostgreSQL are started here on loopback ports of their own and stopped at the end.
"""

from __future__ import annotations

import imaplib
import ssl
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.mailgen import MIXED_TO, make_mixed_mail
from bench.outcomes import WorkerRun, run_workers
from bench.procs import REPO
from bench.report import Figure, Results
from bench.room import Room, helpdesk_settings

sys.path.insert(0, str(REPO / "tests"))
from mailservers import Dovecot  # noqa: E402  (tests/ is not a package)
from servers import PostgreSQL, RabbitMQ  # noqa: E402

PASSWORD = "bench-secret"
# A stuck pipeline must not hold `make bench` much past eight minutes.
DEADLINE_S = 360
FETCH_DEADLINE_S = 120
FETCH_BATCH = 100
# Mails are generated and delivered this many at a time: the bench never holds them all.
DELIVERY_CHUNK = 500
MB = 1_000_000
IMAPLIB_BASELINE = (
    f"stdlib imaplib alone over IMAPS: UID FETCH BODY.PEEK[] of the same mailbox, {FETCH_BATCH}"
    " mails per command"
)


@dataclass(frozen=True)
class Transfer:
    """Mails and bytes moved in some seconds; ``complete`` is False when time ran out."""

    mails: int
    size: int
    seconds: float
    complete: bool = True

    @property
    def per_second(self) -> float | None:
        return self.mails / self.seconds if self.mails and self.seconds > 0 else None

    @property
    def mb_per_second(self) -> float | None:
        return self.size / MB / self.seconds if self.size and self.seconds > 0 else None


@dataclass(frozen=True)
class Run(WorkerRun):
    #: The poller's part alone, from its own timestamps in PostgreSQL.
    poller: Transfer


def measure(workdir: Path, count: int, results: Results) -> None:
    """Deliver ``count`` mixed mails into Dovecot, fetch them with imaplib, then with Mailroom."""
    with ExitStack() as stack:
        dovecot = Dovecot.start(workdir / "dovecot")
        stack.callback(dovecot.stop)
        size = deliver(dovecot, count)
        bare = fetch_all(dovecot)
        run = _mailroom(stack, workdir, dovecot, count)
    results.figures += _figures(bare, run)
    results.notes += _notes(count, size, bare, run)
    details = {"mails": count, "bytes": size, "imaplib": asdict(bare)}
    results.details["imaps"] = details | asdict(run)


def deliver(dovecot: Dovecot, count: int) -> int:
    """Generate the mailbox into Dovecot; returns its size in bytes."""
    dovecot.add_user(MIXED_TO, PASSWORD)
    size = 0
    for first in range(0, count, DELIVERY_CHUNK):
        raws = [make_mixed_mail(i) for i in range(first, min(first + DELIVERY_CHUNK, count))]
        dovecot.deliver_many(MIXED_TO, raws)
        size += sum(map(len, raws))
    return size


def imaps_mailbox(dovecot: Dovecot, name: str, user: str, password: str) -> dict[str, Any]:
    """A mailbox polling ``user`` on ``dovecot`` over IMAPS, taking every mail in it."""
    return {
        "name": name,
        "protocol": "imaps",
        "host": "localhost",  # the name in the server certificate
        "port": dovecot.imaps_port,
        "username": user,
        "password": password,
        "tls": {"ca_file": str(dovecot.ca_file)},
        "addresses": [user],
        "import_existing": "all",
        "fetch_every_minutes": 1,
        "max_mail_mb": 50,
    }


def imaps_settings(dovecot: Dovecot) -> dict[str, Any]:
    """One help desk polling the generated mailbox over IMAPS."""
    mailbox = imaps_mailbox(dovecot, "bench-imaps", MIXED_TO, PASSWORD)
    return helpdesk_settings(mailbox, max_attachment_mb=10)


# -- the baseline --------------------------------------------------------------------------


def fetch_all(dovecot: Dovecot) -> Transfer:
    """Download every mail of the INBOX as a bare client would, timed from connect to the end."""
    context = ssl.create_default_context(cafile=str(dovecot.ca_file))
    start = time.perf_counter()
    with imaplib.IMAP4_SSL("localhost", dovecot.imaps_port, ssl_context=context, timeout=60) as c:
        c.login(MIXED_TO, PASSWORD)
        # Read-only, so the baseline leaves no trace (not even \Recent) for Mailroom to see.
        c.select("INBOX", readonly=True)
        return _fetch_uids(c, c.uid("SEARCH", "ALL")[1][0].split(), start)


def _fetch_uids(client: imaplib.IMAP4, uids: list[bytes], start: float) -> Transfer:
    """Every mail, ``FETCH_BATCH`` per command, until done or the deadline after ``start``."""
    mails = size = 0
    for first in range(0, len(uids), FETCH_BATCH):
        if time.perf_counter() - start > FETCH_DEADLINE_S:
            return Transfer(mails, size, time.perf_counter() - start, complete=False)
        got = _fetch_batch(client, uids[first : first + FETCH_BATCH])
        mails, size = mails + len(got), size + sum(map(len, got))
    return Transfer(mails, size, time.perf_counter() - start)


def _fetch_batch(client: imaplib.IMAP4, uids: list[bytes]) -> list[bytes]:
    typ, data = client.uid("FETCH", b",".join(uids).decode(), "(BODY.PEEK[])")
    if typ != "OK":
        raise RuntimeError(f"UID FETCH failed: {data!r}")
    # Each mail comes as (b"N (UID U BODY[] {size}", raw); the rest are closing parentheses.
    return [item[1] for item in data if isinstance(item, tuple)]


# -- Mailroom ------------------------------------------------------------------------------


def _mailroom(stack: ExitStack, workdir: Path, dovecot: Dovecot, count: int) -> Run:
    """Scaled mode on a RabbitMQ and a PostgreSQL of its own, polling ``dovecot``."""
    rabbitmq = RabbitMQ.start(workdir / "rabbitmq")
    stack.callback(rabbitmq.stop)
    postgres = PostgreSQL.start(workdir / "postgres")
    stack.callback(postgres.stop)
    room = Room(workdir / "room", rabbitmq.new_vhost("imaps"), postgres.new_database("imaps"))
    stack.callback(room.stop_workers)
    room.apply(imaps_settings(dovecot))
    return _run(room, postgres.conninfo("imaps"), count)


def _run(room: Room, conninfo: str, count: int) -> Run:
    with psycopg.connect(conninfo, autocommit=True) as db:
        workers = run_workers(room, db, count, deadline_s=DEADLINE_S)
        return Run(**vars(workers), poller=_poller(db))


def _poller(db: psycopg.Connection[Any]) -> Transfer:
    """From the first batch's start to the last hand-off: fetch, store, publish, mark.

    ``fetched_at`` is taken as a batch starts, ``handed_off_at`` once it is published and
    marked, so the span covers the poller's whole work and nothing of the later stages
    (which run meanwhile, on the same cores).
    """
    row = db.execute(
        "SELECT count(*), coalesce(sum(size), 0),"
        " coalesce(extract(epoch FROM max(handed_off_at) - min(fetched_at)), 0)"
        " FROM fetched_mails WHERE handed_off_at IS NOT NULL"
    ).fetchone()
    mails, size, seconds = row if row else (0, 0, 0)
    return Transfer(int(mails), int(size), float(seconds))


# -- report --------------------------------------------------------------------------------


def _figures(bare: Transfer, run: Run) -> list[Figure]:
    baseline_mb = IMAPLIB_BASELINE + ", MB/s"
    return [
        Figure(
            "imaps: mails/s, end to end (IMAPS to requests in PostgreSQL, 5 workers)",
            IMAPLIB_BASELINE,
            "mails/s",
            run.done / run.seconds if run.done else None,
            bare.per_second,
        ),
        Figure(
            "imaps: mails/s, poller's part (fetch, store, publish, mark seen)",
            IMAPLIB_BASELINE,
            "mails/s",
            run.poller.per_second,
            bare.per_second,
        ),
        Figure(
            "imaps: MB/s, poller's part",
            baseline_mb,
            "MB/s",
            run.poller.mb_per_second,
            bare.mb_per_second,
        ),
    ]


def _notes(count: int, size: int, bare: Transfer, run: Run) -> list[str]:
    kinds = ", ".join(f"{k} {v}" for k, v in run.tally.items())
    notes = [
        f"imaps: mailbox of {count} mails, {size / MB:,.0f} MB; imaplib fetched {bare.mails} in "
        f"{bare.seconds:.2f} s; Mailroom: {run.done} had an outcome after {run.seconds:.1f} s "
        f"(poller handed off {run.poller.mails} in {run.poller.seconds:.1f} s); {kinds}"
    ]
    if not bare.complete:
        notes.append(f"PROBLEM: imaplib fetched only {bare.mails} of {count} mails in time")
    return notes + _problems(count, run)


def _problems(count: int, run: Run) -> list[str]:
    seen = run.tally["request mails"] + run.tally["dead letters"]
    problems = []
    if run.done != count or seen != count:
        problems.append(
            f"PROBLEM: imaps run has {run.done} outcomes and {seen} request mails + dead letters "
            f"for {count} mails after {run.seconds:.0f} s (deadline {DEADLINE_S} s)"
        )
    for stage, code in run.exited.items():
        log = run.exit_logs[stage]
        problems.append(f"PROBLEM: imaps worker {stage} exited with status {code}:\n{log}")
    return problems
