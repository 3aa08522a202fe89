"""Scaling on the host: 2 pollers, 3 parsers, 2 validators, 2 routers and a notifier on
RabbitMQ + PostgreSQL over 2,000 mails in four Dovecot mailboxes. Every mail is handled
exactly once, each mailbox is polled by one poller at a time, and every worker stops within
10 s of SIGTERM once the work is done."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import psycopg
from harness import Mailroom
from mailservers import Dovecot
from servers import PostgreSQL, RabbitMQ

from chaos.audit import audit
from chaos.scenario import deliver, imaps_settings, mailbox_of, read_mailboxes, worker_names

MAILS = 2000
MAILBOXES = 4
WORKERS = {"poller": 2, "parser": 3, "validator": 2, "router": 2, "notifier": 1}
ROUND = re.compile(
    r"^(\S+ \S+) INFO services\.poller\.worker: mailbox=(\S+) "
    r"(lease taken by \S+; round starts|round over)",
    re.M,
)

Span = tuple[datetime, datetime]


def test_scaled_workers_handle_each_mail_once_and_poll_each_mailbox_one_at_a_time(
    tmp_path: Path, rabbitmq: RabbitMQ, postgres: PostgreSQL, dovecot: Dovecot
) -> None:
    # Given 2,000 mails in four mailboxes, and the stages scaled out
    users = deliver(dovecot, MAILS, MAILBOXES, prefix="scale")
    dbname = f"scale_{tmp_path.name[-20:].lower()}".replace("-", "_")
    room = Mailroom(tmp_path, rabbitmq.new_vhost(), postgres.new_database(dbname))
    room.apply(imaps_settings(dovecot, users))
    names = worker_names(WORKERS)
    try:
        for name, stage in names.items():
            verbose = ("-v",) if stage == "poller" else ()  # the rounds, with their times
            room.start_command(name, *verbose, "worker", stage)

        # When they have worked through all of it
        room.wait_for(lambda: _outcomes(postgres, dbname) >= MAILS, timeout=600, what="outcomes")

        # Then every worker, idle now, stops within 10 s of SIGTERM
        stopped = room.terminate()
    finally:
        room.stop_workers()
    assert {n: s.status for n, s in stopped.items()} == dict.fromkeys(names, 0), room.worker_logs()
    assert all(s.seconds <= 10 for s in stopped.values()), stopped

    # And each mail has exactly one outcome: none lost, none doubled, none dead-lettered
    with psycopg.connect(postgres.conninfo(dbname)) as db:
        result = audit(read_mailboxes(dovecot, users), db)
    assert result.mails == MAILS
    assert (result.lost, result.doubled, result.two_outcomes) == (0, 0, 0), result
    assert result.falsely_dead_lettered == 0, result

    # And each mailbox was polled by one poller at a time, though both tried: by the
    # pollers' own account (rounds within their lease, and leases refused), and by Dovecot's,
    # whose IMAP sessions of one mailbox never overlap
    logs = {n: (room.workdir / f"{n}.log").read_text(errors="replace") for n in names}
    pollers = [n for n, stage in names.items() if stage == "poller"]
    refused = {n: logs[n].count("held by another poller") for n in pollers}
    rounds = {n: _rounds(logs[n]) for n in pollers}
    for user in users:
        box = mailbox_of(user)
        _assert_one_at_a_time([s for r in rounds.values() for s in r.get(box, [])], box)
        _assert_one_at_a_time(_sessions(dovecot, user), user)
    assert all(rounds[n] or refused[n] for n in pollers), (rounds, refused)
    assert sum(refused.values()) > 0, "the pollers never wanted one mailbox at the same time"


def _outcomes(postgres: PostgreSQL, dbname: str) -> int:
    try:
        with psycopg.connect(postgres.conninfo(dbname), connect_timeout=5) as db:
            query = "SELECT count(*) FROM mail_outcomes WHERE outcome <> 'routing'"
            row = db.execute(query).fetchone()
    except psycopg.Error:
        return 0  # not migrated yet
    return int(row[0]) if row else 0


def _rounds(log: str) -> dict[str, list[Span]]:
    """The rounds a poller's log tells of, by mailbox: from its lease taken to the round's end."""
    rounds: dict[str, list[Span]] = {}
    started: dict[str, datetime] = {}
    for stamp, box, what in ROUND.findall(log):
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        if what.startswith("lease taken"):
            started[box] = at
        else:
            rounds.setdefault(box, []).append((started.pop(box), at))
    assert not started, f"rounds without an end: {started}"
    return rounds


def _sessions(dovecot: Dovecot, user: str) -> list[Span]:
    """Every IMAP session of ``user``, once Dovecot has logged the end of each."""
    end = time.monotonic() + 30
    while True:
        sessions = dovecot.imap_sessions(user)
        spans = [(began, ended) for began, ended in sessions if ended is not None]
        if len(spans) == len(sessions):
            return spans
        assert time.monotonic() < end, f"sessions of {user} without an end: {sessions}"
        time.sleep(0.2)


def _assert_one_at_a_time(spans: list[Span], what: str) -> None:
    spans = sorted(spans)
    assert spans, f"{what} was never polled"
    for (_, ended), (began, _) in zip(spans, spans[1:], strict=False):
        assert began >= ended, f"{what}: a session began at {began} before one ended at {ended}"
