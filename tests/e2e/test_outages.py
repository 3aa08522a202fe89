"""Workers ride out outages of RabbitMQ and PostgreSQL: not ready meanwhile, no mail
dead-lettered or lost, and an outage never uses up a mail's delivery budget.

The servers here are this module's own: the tests stop, kill and wipe them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from harness import Mailroom
from servers import PostgreSQL, RabbitMQ, free_port, until_done
from store_faults import StoreFaults

from bench.mailgen import make_mixed_mail
from bench.procs import REPO
from bench.room import mailroom, settings_for
from contracts import queues
from services.runtime.store import Store

STAGES = ("poller", "parser", "validator", "router", "notifier")


@pytest.fixture(scope="module")
def own_rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    yield from until_done(RabbitMQ.start(tmp_path_factory.mktemp("own-rabbitmq")))


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgreSQL]:
    yield from until_done(PostgreSQL.start(tmp_path_factory.mktemp("own-postgres")))


class Deployment(Mailroom):
    """A scaled Mailroom on this module's servers, each worker with a health port."""

    def __init__(self, workdir: Path, rabbitmq: RabbitMQ, postgres: PostgreSQL) -> None:
        self.vhost = f"outage-{workdir.name[-24:]}".replace("_", "-")
        self.dbname = f"outage_{abs(hash(workdir)) % 10**9}"
        broker_url = rabbitmq.new_vhost(self.vhost)
        postgres.new_database(self.dbname)
        super().__init__(workdir, broker_url, postgres.url(self.dbname))
        self.conninfo = postgres.conninfo(self.dbname)
        self.ports: dict[str, int] = {}

    def fill(self, count: int, seed: int = 1) -> None:
        """``count`` well-formed mails in the Maildir, and settings polling it every 3 s."""
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (self.maildir / "new" / f"mail-{seed}-{i:05d}").write_bytes(make_mixed_mail(i, seed))
        settings = settings_for(self.maildir)
        settings["helpdesks"][0]["mailboxes"][0]["fetch_every_minutes"] = 0.05
        self.apply(settings)

    def start(self, *stages: str) -> None:
        for stage in stages:
            self.ports[stage] = self.ports.get(stage) or free_port()
            self.start_worker(stage, health_port=self.ports[stage])

    def ready(self, stage: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.ports[stage]}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def outcomes(self) -> int:
        with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=2) as db:
            row = db.execute("SELECT count(*) FROM mail_outcomes WHERE outcome <> 'routing'")
            found = row.fetchone()
        return int(found[0]) if found else 0

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=2) as db:
            return db.execute(sql, args).fetchall()

    def log(self, stage: str) -> str:
        return (self.workdir / f"{stage}.log").read_text(errors="replace")


@pytest.fixture
def deployment(own_rabbitmq, own_postgres, tmp_path: Path) -> Iterator[Deployment]:  # type: ignore[no-untyped-def]
    room = Deployment(tmp_path, own_rabbitmq, own_postgres)
    try:
        yield room
    finally:
        room.stop_workers()


def eventually(check: Callable[[], bool], what: str, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


@contextlib.contextmanager
def down(server_stop: Callable[[], None], server_start: Callable[[], None]) -> Iterator[None]:
    """The server is down for the block, and started again however the block ends."""
    server_stop()
    try:
        yield
    finally:
        server_start()


def quietly(read: Callable[[], int]) -> Callable[[], int]:
    """``read``, or -1 while the database is away."""

    def attempt() -> int:
        try:
            return read()
        except psycopg.Error:
            return -1

    return attempt


def assert_every_mail_is_a_request(room: Deployment, count: int) -> None:
    room.wait_for(lambda: room.outcomes() >= count, timeout=240, what=f"{count} outcomes")
    assert room.json("dlq", "list") == []
    mails = [m for r in room.json("requests", "list") for m in r["mails"]]
    assert len(mails) == count
    assert len({m["mail_id"] for m in mails}) == count
    assert room.exited_workers() == {}


#: Attempts logged while a server stays away this long: backing off from 0.5 s, a worker
#: makes a handful; a worker in a tight loop, or restarting, would make hundreds.
WATCHED_S = 8
BACKED_OFF = 8


def started_and_waiting(room: Deployment, stage: str, what: str) -> None:
    """Start ``stage`` while the ``what`` ("store", "broker") is down: it keeps running, not
    ready, saying why, and tries again backing off."""
    room.start(stage)
    eventually(lambda: room.ready(stage)[0] == 503, f"the {stage} to answer not ready")
    time.sleep(WATCHED_S)
    assert room.exited_workers() == {}
    assert f"the {what} cannot be reached" in room.ready(stage)[1]
    attempts = room.log(stage).count(f"the {what} cannot be reached")
    assert 2 <= attempts <= BACKED_OFF, room.log(stage)


# -- PostgreSQL ------------------------------------------------------------------------------


def test_a_postgresql_restart_mid_run_is_ridden_out_without_a_dead_letter(
    deployment: Deployment, own_postgres: PostgreSQL
) -> None:
    room = deployment
    room.fill(150)
    room.start(*STAGES)
    eventually(lambda: room.outcomes() >= 20, "the first requests")

    with down(own_postgres.stop_server, own_postgres.start_server):
        for stage in STAGES:  # the idle ones too: each asks the store now and then
            eventually(lambda s=stage: room.ready(s)[0] == 503, f"{stage} to report not ready")
        assert "the store cannot be reached" in room.ready("parser")[1]
        time.sleep(3)
        assert room.exited_workers() == {}

    assert_every_mail_is_a_request(room, 150)
    assert all(room.ready(s)[0] == 200 for s in STAGES)


def test_broken_connections_after_a_failover_are_replaced_and_dead_letter_nothing(
    deployment: Deployment, own_postgres: PostgreSQL
) -> None:
    room = deployment
    room.fill(150, seed=2)
    room.start(*STAGES)

    dropped = 0
    while quietly(room.outcomes)() < 150 and not room.exited_workers():
        dropped += own_postgres.drop_connections(room.dbname)
        time.sleep(0.7)

    assert dropped > 0
    assert_every_mail_is_a_request(room, 150)


def test_a_poller_started_while_postgresql_is_down_waits_for_it(
    deployment: Deployment, own_postgres: PostgreSQL
) -> None:
    room = deployment
    room.fill(20, seed=3)
    with down(own_postgres.stop_server, own_postgres.start_server):
        # An earlier release exited with status 2 within seconds
        started_and_waiting(room, "poller", "store")

    room.start("parser", "validator", "router", "notifier")
    eventually(lambda: room.ready("poller")[0] == 200, "the poller to be ready")
    assert_every_mail_is_a_request(room, 20)


# -- RabbitMQ --------------------------------------------------------------------------------


def test_a_rabbitmq_restart_mid_run_is_ridden_out_without_a_dead_letter(
    deployment: Deployment, own_rabbitmq: RabbitMQ
) -> None:
    room = deployment
    room.fill(150, seed=4)
    room.start(*STAGES)
    eventually(lambda: room.outcomes() >= 20, "the first requests")

    with down(own_rabbitmq.stop_node, own_rabbitmq.start_node):
        eventually(lambda: room.ready("parser")[0] == 503, "the parser to report not ready")
        assert "the broker cannot be reached" in room.ready("parser")[1]
        time.sleep(3)
        assert room.exited_workers() == {}

    assert_every_mail_is_a_request(room, 150)
    for stage in STAGES:
        # Each outage is one reconnection, not a tight loop of requeues.
        assert room.log(stage).count("not acked") <= queues.PREFETCH, room.log(stage)


def test_a_rabbitmq_that_comes_back_without_its_queues_gets_them_and_their_mail_back(
    deployment: Deployment, own_rabbitmq: RabbitMQ
) -> None:
    # Given mail handed off and waiting in mail.validated (no router runs yet)
    room = deployment
    room.fill(60, seed=5)
    room.start("poller", "parser", "validator", "notifier")
    eventually(
        lambda: (
            room.query("SELECT count(*) FROM fetched_mails WHERE handed_off_at IS NOT NULL")
            == [(60,)]
        ),
        "every mail handed off",
    )
    eventually(lambda: _ready_in(own_rabbitmq, room, queues.MAIL_VALIDATED) == 60, "validated")

    # When the broker comes back empty: no queues, no messages
    own_rabbitmq.wipe([room.vhost])

    # Then the workers declare the queues again and the mail comes back from the store
    room.start("router")
    assert_every_mail_is_a_request(room, 60)
    logs = "".join(room.log(s) for s in STAGES)
    assert "the broker had lost its queues: 60 mails without an outcome published again" in logs


def _ready_in(rabbitmq: RabbitMQ, room: Deployment, queue: str) -> int:
    """Messages of ``queue`` waiting for a consumer (not those handed out unacked)."""
    return _count_in(rabbitmq, room, queue, "messages_ready")


def _unacked_in(rabbitmq: RabbitMQ, room: Deployment, queue: str) -> int:
    """Messages of ``queue`` handed out to a consumer and not acknowledged yet."""
    return _count_in(rabbitmq, room, queue, "messages_unacknowledged")


def _count_in(rabbitmq: RabbitMQ, room: Deployment, queue: str, column: str) -> int:
    out = rabbitmq.rabbitmqctl("list_queues", "-p", room.vhost, "-q", "name", column)
    counts = dict(line.split("\t") for line in out.strip().splitlines() if "\t" in line)
    return int(counts.get(queue, 0))


# -- started while a server is down (bad input) ---------------------------------------------


def test_a_worker_started_while_postgresql_is_down_takes_no_mail_until_it_is_back(
    deployment: Deployment, own_rabbitmq: RabbitMQ, own_postgres: PostgreSQL
) -> None:
    # Given mail waiting for the parser
    room = deployment
    room.fill(30, seed=8)
    room.start("poller")
    eventually(lambda: _ready_in(own_rabbitmq, room, queues.MAIL_FETCHED) == 30, "handed off")

    # When a parser starts while PostgreSQL is down
    with down(own_postgres.stop_server, own_postgres.start_server):
        # Then it waits, not ready, backing off, and takes none of the mail it cannot handle
        started_and_waiting(room, "parser", "store")
        assert _unacked_in(own_rabbitmq, room, queues.MAIL_FETCHED) == 0

    # And once PostgreSQL is back it serves
    room.start("validator", "router", "notifier")
    assert_every_mail_is_a_request(room, 30)
    assert room.ready("parser")[0] == 200


def test_a_worker_started_while_rabbitmq_is_down_waits_not_ready_and_serves_once_it_is_back(
    deployment: Deployment, own_rabbitmq: RabbitMQ
) -> None:
    room = deployment
    room.fill(30, seed=9)
    with down(own_rabbitmq.stop_node, own_rabbitmq.start_node):
        started_and_waiting(room, "parser", "broker")

    eventually(lambda: room.ready("parser")[0] == 200, "the parser to be ready")
    room.start("poller", "validator", "router", "notifier")
    assert_every_mail_is_a_request(room, 30)


# -- stopping during an outage ---------------------------------------------------------------


@pytest.mark.parametrize("server", ["postgresql", "rabbitmq"])
def test_every_stage_stops_within_10_s_while_a_server_is_down_and_loses_nothing(
    deployment: Deployment, own_rabbitmq: RabbitMQ, own_postgres: PostgreSQL, server: str
) -> None:
    # Given every stage in the middle of a run, waiting out an outage
    room = deployment
    room.fill(150, seed=10)
    room.start(*STAGES)
    eventually(lambda: room.outcomes() >= 20, "the first requests")
    if server == "postgresql":
        outage = down(own_postgres.stop_server, own_postgres.start_server)
    else:
        outage = down(own_rabbitmq.stop_node, own_rabbitmq.start_node)
    with outage:
        for stage in STAGES:
            eventually(lambda s=stage: room.ready(s)[0] == 503, f"{stage} to report not ready")

        # When they are all stopped
        stopped = room.terminate()

    # Then each exits within 10 s, and once they run again no mail is lost or doubled
    assert {n: s.status for n, s in stopped.items()} == dict.fromkeys(STAGES, 0)
    assert all(s.seconds <= 10 for s in stopped.values()), stopped
    assert not any("Traceback" in room.log(s) for s in STAGES)
    room.start(*STAGES)
    assert_every_mail_is_a_request(room, 150)


# -- the delivery budget ---------------------------------------------------------------------


def test_a_mail_cut_off_by_more_broker_outages_than_the_delivery_limit_still_goes_through(
    deployment: Deployment, own_rabbitmq: RabbitMQ
) -> None:
    # Given one mail handed off to the parser
    room = deployment
    room.fill(1, seed=6)
    room.start("poller")
    eventually(lambda: _ready_in(own_rabbitmq, room, queues.MAIL_FETCHED) == 1, "handed off")

    # When the broker drops every connection while the parser is in the middle of that mail,
    # more times than the delivery limit (the parser reads blobs, which the test locks to
    # hold it there)
    outages = queues.DELIVERY_LIMIT + 2
    with psycopg.connect(room.conninfo, autocommit=True) as lock:
        hold = "LOCK TABLE blobs IN ACCESS EXCLUSIVE MODE"
        lock.execute("BEGIN")
        lock.execute(hold)
        room.start("parser")
        for n in range(outages):
            eventually(lambda: _waiting_on_a_lock(room), "the parser to be in the middle of it")
            own_rabbitmq.rabbitmqctl("close_all_connections", "-p", room.vhost, "chaos")
            lock.execute("ROLLBACK")  # the parser finishes its part, but cannot ack it
            if n < outages - 1:
                lock.execute("BEGIN")
                lock.execute(hold)  # granted once the parser's transaction is over

    # Then the mail was not set aside: it becomes a request once the rest of the pipeline runs
    room.start("validator", "router", "notifier")
    assert_every_mail_is_a_request(room, 1)
    log = room.log("parser")
    assert log.count("CONNECTION_FORCED") >= outages, log  # each one cut the mail off


def _waiting_on_a_lock(room: Deployment) -> bool:
    rows = room.query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
        room.dbname,
    )
    return bool(rows and rows[0][0])


POISON = (
    b"From: Looping Sender <loop@customer.example>\r\nTo: support@demo.example\r\n"
    b"Subject: Poison mail 4711\r\nMessage-ID: <poison-4711@customer.example>\r\n"
    b"Date: Mon, 02 Nov 2026 09:00:00 +0000\r\n\r\nThis mail makes the router hang.\r\n"
)


def test_a_mail_that_keeps_killing_its_worker_is_set_aside_after_the_limit(
    deployment: Deployment, own_postgres: PostgreSQL
) -> None:
    # Given a mail whose request the database takes forever to store (the router hangs on it)
    room = deployment
    room.fill(9, seed=7)
    (room.maildir / "new" / "poison-4711").write_bytes(POISON)
    faults = StoreFaults(own_postgres.url(room.dbname))
    try:
        faults.hang_requests_titled("Poison mail 4711")
        room.start(*STAGES)

        # When the router is killed each time it hangs on that mail
        kills = 0
        while kills <= queues.DELIVERY_LIMIT and not room.json("dlq", "list"):
            if _hanging(room):
                room.kill_worker("router")
                kills += 1
                room.query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND wait_event = 'PgSleep'",
                    room.dbname,
                )
                room.start("router")
            time.sleep(0.2)
        room.wait_for(lambda: room.outcomes() >= 10, timeout=120, what="every outcome")
    finally:
        faults.clear()
        faults.close()

    # Then after the delivery limit it is set aside, saying what happened; the rest go on
    assert kills == queues.DELIVERY_LIMIT
    [dead] = room.json("dlq", "list")
    assert dead["error_class"] == "DeliveryLimitExceeded"
    assert dead["stage"] == "router"
    assert (
        f"{queues.DELIVERY_LIMIT} deliveries of this message ended without the router"
        in (dead["error"])
    )
    assert len([m for r in room.json("requests", "list") for m in r["mails"]]) == 9


def _hanging(room: Deployment) -> bool:
    rows = room.query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event = 'PgSleep'",
        room.dbname,
    )
    return bool(rows and rows[0][0])


# -- giving up, and stopping meanwhile -------------------------------------------------------


def worker_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """A worker's environment on a SQLite store made as `config apply` makes it."""
    (tmp_path / "var").mkdir(exist_ok=True)
    store = Store(f"sqlite:///{tmp_path / 'var' / 'mailroom.db'}")
    store.migrate()
    store.dispose()
    base = {
        **os.environ,
        "MAILROOM_VAR_DIR": str(tmp_path / "var"),
        "MAILROOM_SECRET_KEY": Fernet.generate_key().decode(),
        "MAILROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'mailroom.db'}",
        "PYTHONPATH": str(REPO),
    }
    return base | {f"MAILROOM_{k.upper()}": v for k, v in env.items()}


@pytest.mark.parametrize(
    ("down", "what"),
    [
        ({"database_url": "postgresql+psycopg://mailroom:s3cret@127.0.0.1:{port}/mr"}, "store"),
        ({"broker_url": "amqp://mailroom:s3cret@127.0.0.1:{port}//"}, "broker"),
    ],
    ids=["store", "broker"],
)
def test_a_worker_gives_up_only_after_the_outage_limit_and_says_what_was_down(
    tmp_path: Path, down: dict[str, str], what: str
) -> None:
    port = str(free_port())  # nothing listens there
    env = worker_env(
        tmp_path, outage_limit_seconds="4", **{k: v.format(port=port) for k, v in down.items()}
    )

    done = subprocess.run(
        mailroom("worker", "parser"), env=env, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 3, done.stderr
    assert f"gave up: the {what} could not be reached" in done.stderr
    assert "MAILROOM_OUTAGE_LIMIT_SECONDS=4" in done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert "s3cret" not in done.stderr
    assert "Traceback" not in done.stderr
    assert f"the {what} cannot be reached" in done.stderr  # it did wait, saying so


@pytest.mark.parametrize(
    "down",
    [
        {"database_url": "postgresql+psycopg://mailroom@127.0.0.1:{port}/mr"},
        {"broker_url": "amqp://guest:guest@127.0.0.1:{port}//"},
    ],
    ids=["store", "broker"],
)
# The poller differs: its stage is built, with its pool of rounds, before the broker is asked.
@pytest.mark.parametrize("stage", ["router", "poller"])
def test_sigterm_during_an_outage_stops_the_worker_at_once(  # type: ignore[no-untyped-def]
    tmp_path: Path, down, stage: str
) -> None:
    port = str(free_port())
    env = worker_env(tmp_path, **{k: v.format(port=port) for k, v in down.items()})
    proc = subprocess.Popen(
        mailroom("worker", stage), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        time.sleep(4)  # well into its wait
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 0, err
    assert b"Traceback" not in err
