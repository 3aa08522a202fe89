"""Idle poll: one IMAPS round with no new mail, on folders that keep 0, 10,000 and 100,000
handled mails, side by side; the empty folder's round is the baseline.

The kept mails are written straight into each user's Maildir and remembered as taken in the
store in bulk, as a poller that handed them off would have left them. A first round per
folder lets Dovecot index it and the poller settle; the rounds after it are timed, the
folders in turn (the median is kept). A round is what the poller runs: connect, log in,
list, hand off nothing, log out, on the store (SQLite here) and the in-process broker.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from bench.procs import REPO
from bench.report import Figure, Results
from contracts.settings import MailboxSettings
from services.poller.adapters import SqlFetchedLog, SqlSourceState
from services.poller.rounds import MailboxRound
from services.poller.sources.base import Cursor
from services.poller.sources.imap import ImapSource
from services.runtime import tables
from services.runtime.bus import Publisher, connect
from services.runtime.clock import SystemClock
from services.runtime.store import Store

sys.path.insert(0, str(REPO / "tests"))
from mailservers import Dovecot  # noqa: E402  (tests/ is not a package)

SIZES = (0, 10_000, 100_000)
TIMED_ROUNDS = 7
PASSWORD = "bench-secret"
MAILBOX = "idle"
# Rows per INSERT of taken refs: the store is filled in bulk, not mail by mail.
ROWS_PER_INSERT = 5_000
BASELINE = "the same round on an empty folder"


def measure(workdir: Path, results: Results) -> None:
    """Time an idle round on each folder of ``SIZES``; figures against the empty one."""
    workdir.mkdir(parents=True, exist_ok=True)
    folders: dict[int, tuple[Store, MailboxSettings]] = {}
    settling: dict[int, float] = {}
    timed: dict[int, list[float]] = {size: [] for size in SIZES}
    with ExitStack() as stack:
        dovecot = Dovecot.start(workdir / "dovecot")
        stack.callback(dovecot.stop)
        for size in SIZES:
            store = Store(f"sqlite:///{workdir / f'mailroom-{size}.db'}")
            stack.callback(store.dispose)
            store.migrate()
            folders[size] = store, _kept_folder(dovecot, store, size)
            # Dovecot indexes the folder; the poller settles (its watermark, where it has one)
            settling[size] = _round(*folders[size])
        for _ in range(TIMED_ROUNDS):  # in turn, so a passing load weighs on every size
            for size in SIZES:
                timed[size].append(_round(*folders[size]))
    seconds = {size: statistics.median(times) for size, times in timed.items()}
    base = seconds[SIZES[0]]
    results.figures += [
        Figure(
            f"idle poll: one IMAPS round without new mail, folder keeping {size:,} handled mails",
            BASELINE,
            "ms",
            seconds[size] * 1000,
            base * 1000,
        )
        for size in SIZES[1:]
    ]
    side_by_side = ", ".join(f"{size:,} kept: {s * 1000:.0f} ms" for size, s in seconds.items())
    results.notes.append(
        f"idle poll (median of {TIMED_ROUNDS} rounds after a settling one): {side_by_side}"
    )
    results.details["idle_poll"] = {
        str(size): {"seconds": timed[size], "settling_round_seconds": settling[size]}
        for size in SIZES
    }


def _kept_folder(dovecot: Dovecot, store: Store, size: int) -> MailboxSettings:
    """A Dovecot user whose INBOX holds ``size`` read mails, all taken in ``store``."""
    user = f"idle{size}@bench.example"
    dovecot.add_user(user, PASSWORD)
    validity = dovecot.uidvalidity(user)  # logs in once: Dovecot makes the Maildir
    _write_maildir(dovecot.home(user) / "Maildir", size)
    state = SqlSourceState(store, MAILBOX, SystemClock())
    state.save_cursor(Cursor(validity=str(validity), first_connected_at=datetime.now(UTC)))
    _taken_in_bulk(store, validity, size)
    return MailboxSettings.model_validate(
        {
            "name": MAILBOX,
            "protocol": "imaps",
            "host": "localhost",  # the name in the server certificate
            "port": dovecot.imaps_port,
            "username": user,
            "password": PASSWORD,
            "tls": {"ca_file": str(dovecot.ca_file)},
            "import_existing": "all",
        }
    )


def _write_maildir(maildir: Path, size: int) -> None:
    """``size`` small read mails in ``cur/``, owned as Dovecot's own files are."""
    cur = maildir / "cur"
    owner = maildir.stat()
    stamp = int(time.time())
    for n in range(1, size + 1):
        raw = (
            f"From: customer{n}@example.org\r\nTo: help@bench.example\r\n"
            f"Subject: handled mail {n}\r\nMessage-ID: <{n}.idle@bench.example>\r\n\r\n"
            f"This one was handed off long ago.\r\n"
        ).encode()
        path = cur / f"{stamp}.M{n}P1.bench,S={len(raw)}:2,S"
        path.write_bytes(raw)
        os.chown(path, owner.st_uid, owner.st_gid)


def _taken_in_bulk(store: Store, validity: int, size: int) -> None:
    """Every UID of the folder as handed off (Dovecot numbers the new files 1 to ``size``)."""
    at = datetime.now(UTC)
    rows = [
        {
            "mailbox": MAILBOX,
            "ref": f"{validity}:{uid}",
            "message_id": f"<{uid}.idle@bench.example>",
            "reason": "handed_off",
            "at": at,
        }
        for uid in range(1, size + 1)
    ]
    with store.transaction() as conn:
        for first in range(0, len(rows), ROWS_PER_INSERT):
            conn.execute(tables.taken_refs.insert(), rows[first : first + ROWS_PER_INSERT])


def _round(store: Store, box: MailboxSettings) -> float:
    """Seconds of one poller round on ``box``, from connecting to logging out."""
    state = SqlSourceState(store, MAILBOX, SystemClock())
    publisher = Publisher(connect("memory://"))
    start = time.perf_counter()
    source = ImapSource(box, state)
    try:
        handed_off = MailboxRound(
            mailbox=MAILBOX,
            helpdesk="bench",
            source=source,
            state=state,
            publisher=publisher,
            store=store,
            fetched=SqlFetchedLog(store),
            clock=SystemClock(),
        ).run()
    finally:
        source.close()
        elapsed = time.perf_counter() - start
        publisher.close()
    if handed_off:
        raise RuntimeError(f"idle poll: {len(handed_off)} mails were new in a handled folder")
    return elapsed
