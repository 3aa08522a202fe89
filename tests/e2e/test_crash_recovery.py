"""kill -9 workers in the middle of a run: every mail still ends exactly once."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

from harness import MAILROOM, Mailroom, settings_yaml

from bench.mailgen import fill_maildir, kind_of
from contracts.ids import mail_id

MAILS = 300


def test_killed_workers_lose_and_double_nothing(scaled: Mailroom) -> None:
    room = scaled
    keys = fill_maildir(room.maildir, MAILS)
    room.apply_settings(settings_yaml(room.maildir, mailbox="load"))
    room.start_workers()

    time.sleep(1.5)  # the poller is fetching and handing off by now
    room.kill_worker("poller")
    room.start_worker("poller")
    room.wait_for(lambda: len(room.accounted_mail_ids()) >= 60, what="60 mails")
    room.kill_worker("router")
    room.start_worker("router")
    room.wait_for(lambda: len(room.accounted_mail_ids()) >= 150, what="150 mails")
    room.kill_worker("parser")
    room.start_worker("parser")
    room.wait_for(lambda: len(set(room.accounted_mail_ids())) >= MAILS, timeout=300, what="all")

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
    room = Mailroom(tmp_path, "memory://", f"sqlite:///{tmp_path / 'var' / 'mailroom.db'}")
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
