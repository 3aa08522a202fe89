"""kill -9 workers in the middle of a run: every mail still ends exactly once."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
from harness import MAILROOM, Mailroom, settings_yaml

from bench.mailgen import fill_maildir, kind_of
from contracts.ids import mail_id

MAILS = 300


def store_counts(conninfo: str) -> tuple[int, int]:
    """Mails fetched, and mails with an outcome (a request, a rejection, a dead letter...).

    Read from the store directly: the CLI is too slow to catch the poller half-way.
    """
    try:
        with psycopg.connect(conninfo, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM fetched_mails), (SELECT count(*) FROM mail_outcomes)"
            ).fetchone()
            return (int(row[0]), int(row[1])) if row else (0, 0)
    except psycopg.Error:
        return 0, 0  # tables not created yet


def kill_when(room: Mailroom, stage: str, ready: Callable[[], bool]) -> None:
    """``kill -9`` the stage's worker as soon as ``ready()``: polled every 5 ms, for a
    window a poll every half second would miss."""
    end = time.monotonic() + 120
    while not ready():
        if time.monotonic() > end or room.exited_workers():
            raise AssertionError(f"no time to kill the {stage}\n{room.worker_logs()}")
        time.sleep(0.005)
    room.kill_worker(stage)


def test_killed_workers_lose_and_double_nothing(scaled: Mailroom) -> None:
    room = scaled
    conninfo = room.env["MAILROOM_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    keys = fill_maildir(room.maildir, MAILS)
    room.apply_settings(settings_yaml(room.maildir, mailbox="load"))
    room.start_workers()

    # The poller dies once it has handed off some mail, before it has all of it
    kill_when(room, "poller", lambda: store_counts(conninfo)[0] >= 1)
    fetched_at_kill, _ = store_counts(conninfo)
    left_in_new = len(list((room.maildir / "new").iterdir()))
    room.start_worker("poller")
    # The router and the parser die with mail still on its way through
    kill_when(room, "router", lambda: store_counts(conninfo)[1] >= 60)
    done_at_router_kill = store_counts(conninfo)[1]
    room.start_worker("router")
    kill_when(room, "parser", lambda: store_counts(conninfo)[1] >= 150)
    done_at_parser_kill = store_counts(conninfo)[1]
    room.start_worker("parser")
    room.wait_for(lambda: len(set(room.accounted_mail_ids())) >= MAILS, timeout=300, what="all")

    assert 0 < fetched_at_kill < MAILS, "the poller was not killed while it was fetching"
    assert left_in_new > 0, "the poller was killed after it had marked every mail"
    assert done_at_router_kill < MAILS, "the router was killed after every mail was done"
    assert done_at_parser_kill < MAILS, "the parser was killed after every mail was done"
    accounted = Counter(room.accounted_mail_ids())
    expected = {mail_id("load", k) for k in keys}
    assert set(accounted) == expected, "a mail was lost"
    assert [m for m, n in accounted.items() if n > 1] == [], "a mail was doubled"
    dead = room.json("dlq", "list")
    assert len(dead) == sum(kind_of(i) == "broken" for i in range(MAILS))
    assert {d["stage"] for d in dead} == {"parser"}
    room.wait_for(
        lambda: all(d["moved_to_error_folder_at"] for d in room.json("dlq", "list")),
        what="error-folder moves",
    )
    in_errors = {p.name.split(":2,")[0] for p in (room.maildir / ".Errors" / "cur").iterdir()}
    assert in_errors == {d["source"]["ref"] for d in dead}
    assert not any((room.maildir / "new").iterdir()), "every mail was marked handed off"


def wait_for_outcomes(db: Path, count: int) -> None:
    """Read the store directly: the CLI is too slow to catch an embedded run half-way."""
    end = time.monotonic() + 120
    while time.monotonic() < end:
        try:
            with sqlite3.connect(db, timeout=1) as conn:
                if conn.execute("SELECT count(*) FROM mail_outcomes").fetchone()[0] >= count:
                    return
        except sqlite3.OperationalError:
            pass  # not created yet
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} outcomes in {db}")


def test_a_killed_embedded_run_is_finished_by_the_next_run(tmp_path: Path) -> None:
    room = Mailroom.on_sqlite(tmp_path)
    keys = fill_maildir(room.maildir, MAILS)
    room.apply_settings(settings_yaml(room.maildir, mailbox="load"))
    run = subprocess.Popen(
        [*MAILROOM, "run", "--once"],
        env=room.env,
        cwd=room.workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_outcomes(tmp_path / "var" / "mailroom.db", 20)
    run.send_signal(signal.SIGKILL)
    run.wait()
    lost_with_the_process = MAILS - len(room.accounted_mail_ids())

    again = room.json("run", "--once")

    assert lost_with_the_process > 0, "the kill came too late to test anything"
    assert again["fetched"] == 0, "every mail had been handed off before the kill"
    accounted = Counter(room.accounted_mail_ids())
    assert set(accounted) == {mail_id("load", k) for k in keys}
    assert [m for m, n in accounted.items() if n > 1] == []
