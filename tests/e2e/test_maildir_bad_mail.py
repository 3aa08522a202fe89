"""A careless Maildir never hangs ``run --once``, stops its mailbox or raises a false alert;
the summary says what happened, and a mailbox held by another poller is named."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from harness import MAILROOM, Mailroom, settings_yaml

from bench.mailgen import fill_maildir
from services.poller.adapters import SqlLeases
from services.runtime.clock import SystemClock
from services.runtime.store import Store

OUTCOMES = ("requests_created", "conversations_added", "duplicates", "rejected", "dead_lettered")
PLAIN = "demo-01-plain-text"


@pytest.fixture
def room(tmp_path: Path) -> Mailroom:
    room = Mailroom.on_sqlite(tmp_path)
    room.use_demo_maildir()
    room.apply_settings()
    return room


def run_once(room: Mailroom) -> dict:  # type: ignore[type-arg]
    return room.json("run", "--once")


def handled(summary: dict) -> int:  # type: ignore[type-arg]
    return sum(summary[k] for k in OUTCOMES)


def mailbox_state(room: Mailroom) -> dict:  # type: ignore[type-arg]
    [state] = room.json("mailbox", "list")
    return state


def test_a_handled_mail_copied_back_into_new_ends_the_run_as_a_duplicate(room: Mailroom) -> None:
    # Given a handled mail copied back into new/ under the same key
    run_once(room)
    requests = len(room.json("requests", "list"))
    shutil.copy(room.maildir / "cur" / f"{PLAIN}:2,S", room.maildir / "new" / PLAIN)

    # When Mailroom runs again, twice
    again = json.loads(room.cli("run", "--once", "--json", timeout=120).stdout)
    third = run_once(room)

    # Then the run ends, counts the copy once as a duplicate, and never takes it again
    assert (again["fetched"], again["duplicates"], handled(again)) == (1, 1, 1)
    assert third["fetched"] == 0
    assert len(room.json("requests", "list")) == requests
    assert (room.maildir / "new" / PLAIN).exists(), "the copy is left where it is"
    assert (room.maildir / "cur" / f"{PLAIN}:2,S").exists(), "the handled mail is kept"
    assert again["mailbox_errors"] == [] and mailbox_state(room)["consecutive_failures"] == 0


def test_a_mail_marked_unread_again_is_counted_as_a_duplicate(room: Mailroom) -> None:
    run_once(room)
    (room.maildir / "cur" / f"{PLAIN}:2,S").rename(room.maildir / "cur" / f"{PLAIN}:2,")

    again = run_once(room)

    assert (again["fetched"], again["duplicates"], again["requests_created"]) == (1, 1, 0)
    assert again["notifications"] == 0 and again["attachments_stripped"] == 0
    assert (room.maildir / "cur" / f"{PLAIN}:2,S").exists(), "marked read again"


def test_a_name_too_long_to_mark_is_dead_lettered_and_the_mailbox_keeps_working(
    room: Mailroom,
) -> None:
    # Given a mail whose name is too long to mark read (NAME:2,S is over NAME_MAX, 255)
    long_name = "k" * 253
    shutil.copy(room.maildir / "new" / PLAIN, room.maildir / "new" / long_name)

    # When Mailroom runs six times
    first = run_once(room)
    later = [run_once(room) for _ in range(5)]

    # Then the first run counts every mail, the long-named one as a dead letter that says
    # why and that it could not be moved; no later run takes it again or fails
    assert first["fetched"] == 13 and handled(first) == 13
    assert first["requests_created"] >= 1 and first["mailbox_errors"] == []
    [entry] = [d for d in room.json("dlq", "list") if d["source"]["ref"] == long_name]
    assert entry["error_class"] == "MailUnmarkable" and "too long" in entry["error"]
    assert entry["moved_to_error_folder_at"] is None
    assert "too long" in (entry["move_error"] or "")
    assert [s["fetched"] for s in later] == [0] * 5
    assert mailbox_state(room)["consecutive_failures"] == 0
    kinds = {n["kind"] for n in room.json("notifications", "list")}
    assert "connectivity" not in kinds, "no false 'mailbox cannot be reached' alert"
    assert (room.maildir / "new" / long_name).exists()


def test_a_mailbox_held_by_another_poller_is_named_with_its_holder_and_until_when(
    room: Mailroom,
) -> None:
    # Given another poller (on another host) holding the mailbox's lease
    store = Store(room.env["MAILROOM_DATABASE_URL"])
    now = SystemClock().now()
    assert SqlLeases(store, holder="mailhost-2:4242:9f3a").acquire(
        "demo", now, timedelta(minutes=5)
    )
    store.dispose()

    # When Mailroom runs once
    done = room.cli("run", "--once", "--json")
    text = room.cli("run", "--once")

    # Then it says who holds the mailbox and until when, and takes nothing from it
    summary = json.loads(done.stdout)
    until = (now + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
    note = f"held by another poller (mailhost-2:4242) until {until} UTC; skipped"
    assert summary["fetched"] == 0
    assert summary["mailbox_errors"] == [{"mailbox": "demo", "error": note}]
    assert f"mailbox=demo {note}" in done.stderr
    assert "held by another poller" in " ".join(text.stdout.split())
    assert len(list((room.maildir / "new").iterdir())) == 12


def test_a_killed_run_is_finished_and_counted_by_the_next_one(tmp_path: Path) -> None:
    # Given a run --once killed while it was handing mail off
    room = Mailroom.on_sqlite(tmp_path)
    fill_maildir(room.maildir, 600)
    room.apply_settings(settings_yaml(room.maildir))
    run = subprocess.Popen(
        [*MAILROOM, "run", "--once"],
        env=room.env,
        cwd=room.workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    end = time.monotonic() + 120
    while time.monotonic() < end and not any((room.maildir / "cur").iterdir()):
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    marked = len(list((room.maildir / "cur").iterdir()))
    before = sum(mailbox_state(room)["outcomes"].values())

    # When Mailroom runs again at once (the killed run's lease has not expired)
    again = run_once(room)

    # Then it takes over the dead run's lease, and counts what it did: the mails the killed
    # run had handed off and this one finished, and those it fetched itself
    assert 0 < marked < 600, "the kill did not land while mail was being handed off"
    assert again["mailbox_errors"] == []
    assert again["recovered"] > 0 and again["in_flight"] == 0
    assert handled(again) == again["fetched"] + again["recovered"]
    after = sum(mailbox_state(room)["outcomes"].values())
    assert after == 600
    assert handled(again) - again["duplicates"] <= after - before


def test_sigint_stops_run_once_and_the_next_run_takes_up_the_rest(tmp_path: Path) -> None:
    # Given a run --once started as a script's background job, which inherits SIGINT ignored
    room = Mailroom.on_sqlite(tmp_path)
    fill_maildir(room.maildir, 600)
    room.apply_settings(settings_yaml(room.maildir))
    run = subprocess.Popen(
        [*MAILROOM, "run", "--once"],
        env=room.env,
        cwd=room.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    end = time.monotonic() + 120
    while time.monotonic() < end and not any((room.maildir / "cur").iterdir()):
        time.sleep(0.01)

    # When it gets SIGINT (Ctrl-C) while handing mail off
    run.send_signal(signal.SIGINT)
    try:
        _, err = run.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        run.kill()
        run.wait()
        raise AssertionError("run --once did not stop on SIGINT") from None

    # Then it stops, says so, and the next run takes up the rest: nothing is lost
    assert run.returncode == 130, err
    assert "stopped before the end; the next run takes up the rest" in err
    assert "Traceback" not in err
    again = run_once(room)
    assert sum(mailbox_state(room)["outcomes"].values()) == 600
    assert again["in_flight"] == 0 and again["mailbox_errors"] == []


def test_an_unreadable_mail_is_dead_lettered_and_fetched_again_after_a_replay(
    room: Mailroom,
) -> None:
    # Given a "mail" in new/ that cannot be read (a folder where the file should be)
    (room.maildir / "new" / "unreadable").mkdir()

    first = run_once(room)
    [entry] = [d for d in room.json("dlq", "list") if d["source"]["ref"] == "unreadable"]
    second = run_once(room)

    assert first["fetched"] == 13 and handled(first) == 13
    assert entry["error_class"] == "MailUnreadable" and entry["stage"] == "poller"
    assert second["fetched"] == 0, "reported once, not taken again"
    assert mailbox_state(room)["consecutive_failures"] == 0

    # When the admin puts the mail right in the error folder and replays the entry
    moved = room.maildir / ".Errors" / "cur" / "unreadable:2,"
    assert entry["moved_to_error_folder_at"] and moved.is_dir()
    moved.rmdir()
    fixed = (room.maildir / "cur" / f"{PLAIN}:2,S").read_bytes()
    moved.write_bytes(fixed.replace(b"Message-ID: <", b"Message-ID: <fixed-"))
    room.cli("dlq", "replay", str(entry["id"]))
    third = run_once(room)

    # Then it is fetched again and becomes a request
    assert (third["fetched"], third["requests_created"]) == (1, 1)
