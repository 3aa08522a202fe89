"""A worker killed while it holds a failing mail: after restart the mail is dead-lettered once.

The router keeps failing on one mail (a store fault) and retries it; it is killed mid-retry,
so the mail was delivered but never acked. The restarted router meets it again and gives up
on it: one dead-letter entry, the mail in the error folder, every other mail a request.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator

import pytest
from harness import MAILROOM, Mailroom, settings_yaml
from store_faults import StoreFaults

from contracts.ids import mail_id

FAILING = "FAIL-ROUTER keyboard"


def mail(key: str, subject: str) -> bytes:
    return (
        f"From: ann@example.test\r\nTo: support@demo.example\r\nSubject: {subject}\r\n"
        f"Message-ID: <{key}@example.test>\r\n\r\nPlease help.\r\n"
    ).encode()


@pytest.fixture
def failing_router(mailroom: Mailroom) -> Iterator[Mailroom]:
    """A store that refuses one mail's request, and retries that go on long enough to kill
    the worker in the middle of them."""
    room = mailroom
    for sub in ("new", "cur", "tmp"):
        (room.maildir / sub).mkdir(parents=True)
    room.apply_settings(settings_yaml(room.maildir))
    faults = StoreFaults(room.env["MAILROOM_DATABASE_URL"])
    faults.refuse_requests_titled("FAIL-ROUTER")
    for key, subject in [("one", "mouse"), ("stuck", FAILING), ("two", "screen")]:
        (room.maildir / "new" / key).write_bytes(mail(key, subject))
    room.env["MAILROOM_MAX_ATTEMPTS"] = "1000"
    yield room
    faults.close()


def retrying(log: str) -> bool:
    return f"mail_id={mail_id('demo', 'stuck')} attempt=2 failed" in log


def test_a_router_killed_mid_retry_dead_letters_the_mail_once_after_restart(
    failing_router: Mailroom,
) -> None:
    room = failing_router
    log = room.workdir / "run.log"
    if room.embedded:
        run_until_retrying(room, log)
        room.env["MAILROOM_MAX_ATTEMPTS"] = "3"
        room.json("run", "--once")  # recovery hands the unfinished mail out again
    else:
        room.start_workers()
        room.wait_for(lambda: retrying(room.worker_log("router")), what="the router retrying")
        room.kill_worker("router")
        room.env["MAILROOM_MAX_ATTEMPTS"] = "3"
        room.start_worker("router")
        room.wait_for(lambda: len(room.json("dlq", "list")) == 1, what="the dead letter")
        room.wait_for(
            lambda: room.json("dlq", "list")[0]["moved_to_error_folder_at"] is not None,
            what="the move to the error folder",
        )

    [entry] = room.json("dlq", "list")
    assert (entry["mail_id"], entry["stage"]) == (mail_id("demo", "stuck"), "router")
    assert entry["attempts"] >= 3
    assert [p.name.split(":2,")[0] for p in (room.maildir / ".Errors" / "cur").iterdir()] == [
        "stuck"
    ]
    requests = room.json("requests", "list")
    assert sorted(r["subject"] for r in requests) == ["mouse", "screen"]


def run_until_retrying(room: Mailroom, log_path) -> None:  # type: ignore[no-untyped-def]
    """``mailroom run`` on the embedded broker, killed (-9) while it retries the mail."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*MAILROOM, "run"], env=room.env, cwd=room.workdir, stdout=log, stderr=log
        )
    try:
        room.wait_for(
            lambda: retrying(log_path.read_text(errors="replace")), what="the router retrying"
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
