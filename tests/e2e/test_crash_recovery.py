"""kill -9 workers in the middle of a run: every mail still ends exactly once."""

from __future__ import annotations

import time
from collections import Counter

from harness import Mailroom, settings_yaml

from bench.mailgen import fill_maildir, kind_of
from contracts.ids import mail_id

MAILS = 300


def test_killed_workers_lose_and_double_nothing(scaled: Mailroom) -> None:
    room = scaled
    keys = fill_maildir(room.maildir, MAILS)
    room.apply_settings(settings_yaml(room.maildir, mailbox="load"))
    room.start_all_workers()

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
    room.wait_for(lambda: all(d["moved_to_error_folder_at"] for d in room.json("dlq", "list")),
                  what="error-folder moves")
    in_errors = {p.name.split(":2,")[0] for p in (room.maildir / ".Errors" / "cur").iterdir()}
    assert in_errors == {d["source"]["ref"] for d in dead}
    assert not any((room.maildir / "new").iterdir()), "every mail was marked handed off"
