"""SIGTERM stops ``mailroom worker STAGE`` and ``mailroom run`` within 10 s with status 0, in
every state: idle, in the middle of a mail, and waiting on a server that stopped answering
(a mail server, or a database holding a lock). What was in hand is finished or handed back:
after a restart every mail has exactly one outcome, and every notice is sent once.

Stopping while RabbitMQ or PostgreSQL is unreachable: ``test_outages.py``; idle workers at
scale: ``test_scaling.py``.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from faults import FaultyRelay, SilentServer, Stall
from harness import Mailroom
from mailservers import Dovecot
from outgoing_scenario import REPS, SENDER, emails, settings, write_mail_with_an_exe
from servers import RabbitMQ
from smtp_servers import SmtpServer

from bench.imap import imaps_mailbox
from bench.mailgen import make_mixed_mail
from bench.room import Stopped, helpdesk_settings, settings_for
from chaos.audit import audit, read_mailbox
from contracts import queues
from services.runtime.store import Store

#: What a stopping process is given (Kubernetes' default grace is 30 s).
STOP_WITHIN_S = 10.0


def stop(room: Mailroom, name: str) -> Stopped:
    [(_, stopped)] = room.terminate(name).items()
    return stopped


def assert_stopped_in_time(room: Mailroom, stopped: Stopped, name: str) -> None:
    log = (room.workdir / f"{name}.log").read_text(errors="replace")
    assert stopped.status == 0, f"{name} ended with {stopped.status}:\n{log[-3000:]}"
    assert stopped.seconds <= STOP_WITHIN_S, f"{name} took {stopped.seconds:.1f} s:\n{log}"
    assert "Traceback" not in log, log


def every_mail_has_one_outcome(room: Mailroom, count: int) -> None:
    room.wait_for(lambda: len(room.accounted_mail_ids()) >= count, what=f"{count} outcomes")
    ids = room.accounted_mail_ids()
    assert len(ids) == count and len(set(ids)) == count, ids


def leases(room: Mailroom) -> int:
    """Mailbox leases held: a poller that stopped cleanly holds none."""
    store = Store(room.env["MAILROOM_DATABASE_URL"])
    try:
        with store.transaction() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM mailbox_leases")).scalar_one())
    finally:
        store.dispose()


def start_pipeline(room: Mailroom, *stages: str) -> str:
    """``mailroom run`` on the embedded broker, else the workers ``stages``; returns the name
    of the process that polls."""
    if room.embedded:
        room.start_command("run", "run")
        return "run"
    for stage in stages:
        room.start_worker(stage)
    return "poller"


# -- in the middle of a mail -----------------------------------------------------------------


def fill(room: Mailroom, count: int, seed: int) -> None:
    """``count`` mails in the room's Maildir, and settings polling it every 3 s."""
    for sub in ("cur", "new", "tmp"):
        (room.maildir / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (room.maildir / "new" / f"mail-{i}").write_bytes(make_mixed_mail(i, seed=seed))
    room.apply(settings_for(room.maildir))


@contextlib.contextmanager
def locked(room: Mailroom, table: str) -> Iterator[psycopg.Connection[Any]]:
    """``table`` locked for the block, or until the lock's transaction is rolled back."""
    with psycopg.connect(_conninfo(room), autocommit=True) as lock:
        lock.execute("BEGIN")
        lock.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield lock
        finally:
            lock.execute("ROLLBACK")


@pytest.fixture
def room(scaled: Mailroom) -> Mailroom:
    """Five mails handed off by a poller, waiting in mail.fetched; the poller stopped."""
    fill(scaled, 5, seed=12)
    scaled.start_worker("poller")
    scaled.wait_for(lambda: _handed_off(scaled) == 5, what="the mails to be handed off")
    assert_stopped_in_time(scaled, stop(scaled, "poller"), "poller")
    return scaled


@pytest.mark.parametrize("lock_held_s", [1.0, None], ids=["finishes", "hands-back"])
def test_a_parser_stopped_while_the_store_holds_its_mail_up_finishes_or_hands_it_back(
    room: Mailroom, rabbitmq: RabbitMQ, lock_held_s: float | None
) -> None:
    # Given a parser in the middle of a mail, waiting for a table the database keeps locked
    with locked(room, "blobs") as lock:
        room.start_worker("parser")
        room.wait_for(lambda: _waiting_on_a_lock(room), what="the parser to wait on the lock")

        # When it is stopped, and the database lets go soon (or not before it is gone)
        proc = room.workers["parser"]
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        if lock_held_s is not None:
            time.sleep(lock_held_s)
            lock.execute("ROLLBACK")
        code = proc.wait(timeout=60)
        took = time.monotonic() - start
        room.workers.pop("parser")

    # Then it exits in time, having finished the batch in hand (some of the five, or all)
    # or handed it back, and handed back the mails it had not started
    assert_stopped_in_time(room, Stopped(code, took), "parser")

    def settled() -> bool:
        ready = _ready(rabbitmq, room)
        parsed = ready.get(queues.MAIL_PARSED, 0)
        finished = parsed > 0 if lock_held_s is not None else parsed == 0
        return finished and ready.get(queues.MAIL_FETCHED, 0) + parsed == 5

    room.wait_for(settled, what="the five mails back in mail.fetched or in mail.parsed")
    log = room.worker_log("parser")
    assert ("work in hand was abandoned" in log) == (lock_held_s is None), log

    # And once the pipeline runs, every mail has exactly one outcome
    for stage in ("parser", "validator", "router", "notifier"):
        room.start_worker(stage)
    every_mail_has_one_outcome(room, 5)


def test_a_poller_whose_round_the_store_holds_up_stops_in_time_and_loses_nothing(
    scaled: Mailroom,
) -> None:
    # Given a poller's round waiting for a table the database keeps locked
    fill(scaled, 5, seed=15)
    with locked(scaled, "taken_refs"):
        scaled.start_command("poller", "-v", "worker", "poller")
        scaled.wait_for(lambda: "round starts" in scaled.worker_log("poller"), what="a round")
        scaled.wait_for(lambda: _waiting_on_a_lock(scaled), what="the round to wait on the lock")

        # When the poller is stopped
        stopped = stop(scaled, "poller")

    # Then it exits in time, leaving the round, and once it runs again nothing is lost
    assert_stopped_in_time(scaled, stopped, "poller")
    assert "work in hand was abandoned" in scaled.worker_log("poller")
    scaled.start_workers()
    every_mail_has_one_outcome(scaled, 5)


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    """A server that accepts connections and never answers."""
    server = SilentServer()
    yield server
    server.close()


def test_a_stop_while_a_notice_is_being_sent_ends_in_time_and_the_notice_goes_out_once(
    mailroom: Mailroom, silent: SilentServer
) -> None:
    # Given a mail that makes the help desk send two notices, to a server that never answers
    write_mail_with_an_exe(mailroom.maildir)
    mailroom.apply(settings(mailroom.maildir, silent.port, first_retry_s=0.5))
    start_pipeline(mailroom, "poller", "parser", "validator", "router", "notifier")
    sender = "run" if mailroom.embedded else "notifier"
    assert silent.accepted.wait(120), mailroom.worker_logs()

    # When the process sending it is stopped in the middle of the SMTP conversation
    stopped = stop(mailroom, sender)

    # Then it exits in time; the notices it took are kept, to be sent once the server answers
    assert_stopped_in_time(mailroom, stopped, sender)
    kept = emails(mailroom.json("notifications", "list"))
    assert kept and set(kept) <= {SENDER, REPS}, kept
    assert not any(n["sent_at"] for n in kept.values()), kept
    silent.close()
    server = SmtpServer(silent.port)
    server.start()
    try:
        start_pipeline(mailroom, "notifier")
        mailroom.wait_for(lambda: _all_sent(mailroom), what="both notices to be sent")
        mailroom.stop_workers()
    finally:
        server.stop()
    assert sorted(m["To"] for m in server.collector.mails()) == sorted([SENDER, REPS])
    every_mail_has_one_outcome(mailroom, 1)


# -- a mail server that stops answering ------------------------------------------------------


def test_a_poller_stopped_in_the_middle_of_a_fetch_exits_in_time_and_loses_nothing(
    scaled: Mailroom, dovecot: Dovecot
) -> None:
    # Given a poller in the middle of downloading mail from an IMAPS server that stalls
    user, count = "stalled@helpdesk.example", 120
    dovecot.add_user(user, "stall-secret")
    dovecot.deliver_many(user, [make_mixed_mail(i, seed=13) for i in range(count)])
    stall = Stall(limit=4_000_000)  # past the first batch of mails (about 3 MB), in the next
    relay = FaultyRelay(dovecot.imaps_port, stall)
    try:
        box = imaps_mailbox(dovecot, "stalled", user, "stall-secret")
        box |= {"port": relay.port, "fetch_every_minutes": 0.05}
        scaled.apply(helpdesk_settings(box, max_attachment_mb=10))
        scaled.start_worker("poller")
        assert stall.stalled.wait(120), scaled.worker_logs()

        # When it is stopped
        stopped = stop(scaled, "poller")

        # Then it exits in time, and gives the mailbox up without counting a failure
        assert_stopped_in_time(scaled, stopped, "poller")
        assert leases(scaled) == 0
        [state] = scaled.json("mailbox", "list")
        assert state["consecutive_failures"] == 0 and not state["last_error"], state
        stall.release()

        # And once the pipeline runs again, every mail in the mailbox has exactly one outcome
        scaled.start_workers()
        every_mail_has_one_outcome(scaled, count)
    finally:
        stall.release()
        relay.close()
    with dovecot.imap(user) as client, psycopg.connect(_conninfo(scaled)) as db:
        result = audit([read_mailbox(client, "stalled")], db)
    assert (result.mails, result.lost, result.doubled) == (count, 0, 0), result


@pytest.mark.parametrize("protocol", ["imap", "imaps"])
def test_a_poller_whose_mail_server_never_answers_stops_in_time(
    mailroom: Mailroom, silent: SilentServer, protocol: str
) -> None:
    # Given a poller connected to a mail server that accepted the connection and hangs
    # (its timeout, 30 s, is far longer than a stop may take)
    box = {
        "name": "hung",
        "protocol": protocol,
        "host": "localhost",
        "port": silent.port,
        "username": "hung@helpdesk.example",
        "password": "hung-secret",
        "addresses": ["hung@helpdesk.example"],
        "fetch_every_minutes": 0.05,
    }
    mailroom.apply(helpdesk_settings(box, max_attachment_mb=10))
    poller = start_pipeline(mailroom, "poller")
    assert silent.accepted.wait(60), mailroom.worker_logs()
    time.sleep(1)  # well into the wait for the server's first word

    # When it is stopped
    stopped = stop(mailroom, poller)

    # Then it exits in time, holding no lease, and the mailbox is not counted as failing
    assert_stopped_in_time(mailroom, stopped, poller)
    assert leases(mailroom) == 0
    [state] = mailroom.json("mailbox", "list")
    assert state["consecutive_failures"] == 0 and not state["last_error"], state


# -- idle ------------------------------------------------------------------------------------


def test_an_idle_mailroom_run_stops_in_time(tmp_path: Path) -> None:
    room = Mailroom.on_sqlite(tmp_path)
    for sub in ("cur", "new", "tmp"):
        (room.maildir / sub).mkdir(parents=True, exist_ok=True)
    (room.maildir / "new" / "mail-1").write_bytes(make_mixed_mail(1, seed=14))
    room.apply(settings_for(room.maildir))
    room.start_command("run", "run")
    every_mail_has_one_outcome(room, 1)

    assert_stopped_in_time(room, stop(room, "run"), "run")


# -- helpers ---------------------------------------------------------------------------------


def _conninfo(room: Mailroom) -> str:
    return room.env["MAILROOM_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")


def _query(room: Mailroom, sql: str) -> Any:
    with psycopg.connect(_conninfo(room), autocommit=True, connect_timeout=5) as db:
        row = db.execute(sql).fetchone()
    return row[0] if row else None


def _handed_off(room: Mailroom) -> int:
    return int(_query(room, "SELECT count(*) FROM fetched_mails WHERE handed_off_at IS NOT NULL"))


def _waiting_on_a_lock(room: Mailroom) -> bool:
    sql = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return bool(_query(room, sql))


def _ready(rabbitmq: RabbitMQ, room: Mailroom) -> dict[str, int]:
    """Messages waiting in each work queue that holds any; -1 where some are handed out."""
    vhost = room.env["MAILROOM_BROKER_URL"].rsplit("/", 1)[1]
    out = rabbitmq.rabbitmqctl(
        "list_queues", "-p", vhost, "-q", "name", "messages_ready", "messages_unacknowledged"
    )
    counts: dict[str, int] = {}
    for line in out.strip().splitlines():
        name, ready, unacked = line.split("\t")
        if name in queues.WORK_QUEUES and (int(ready) or int(unacked)):
            counts[name] = -1 if int(unacked) else int(ready)
    return counts


def _all_sent(room: Mailroom) -> bool:
    kept = emails(room.json("notifications", "list"))
    return set(kept) == {SENDER, REPS} and all(n["sent_at"] for n in kept.values())
