"""kill -9 the poller between hand-off and marking on IMAPS: nothing lost or doubled."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg
from harness import Mailroom

MAILS = 300


def mail(i: int) -> bytes:
    return (
        f"From: User {i} <u{i}@example.test>\r\nTo: help@example.test\r\n"
        f"Subject: Issue {i}\r\nMessage-ID: <crash-{i}@example.test>\r\n\r\n"
        f"Issue number {i}.\r\n"
    ).encode() + b"More detail here.\r\n" * 30


def unmarked_in_flight(conninfo: str) -> int:
    """Mails stored and on their way, but not yet marked on the server."""
    try:
        with psycopg.connect(conninfo, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*) FROM fetched_mails WHERE handed_off_at IS NULL"
            ).fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return 0  # tables not created yet


def test_a_poller_killed_between_hand_off_and_marking_loses_and_doubles_nothing(
    dovecot,
    rabbitmq,
    postgres,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    user = f"crash-{uuid.uuid4().hex[:8]}@example.test"
    dovecot.add_user(user, "secret")
    dovecot.deliver_many(user, [mail(i) for i in range(MAILS)])
    db_url = postgres.new_database()
    settings = (
        "helpdesks:\n  - id: default\n    mailboxes:\n      - name: box\n"
        f"        protocol: imaps\n        host: localhost\n        port: {dovecot.imaps_port}\n"
        f"        username: {user}\n        password: secret\n        import_existing: all\n"
        f"        fetch_every_minutes: 0.05\n        tls: {{ca_file: {dovecot.ca_file}}}\n"
    )
    room = Mailroom(tmp_path, rabbitmq.new_vhost(), db_url)
    try:
        room.apply_settings(settings)
        for stage in ("parser", "validator", "router", "notifier"):
            room.start_worker(stage)
        conninfo = db_url.replace("postgresql+psycopg://", "postgresql://")

        room.start_worker("poller")
        end = time.monotonic() + 60
        while unmarked_in_flight(conninfo) == 0 and time.monotonic() < end:
            time.sleep(0.005)
        room.kill_worker("poller")
        caught_in_the_window = unmarked_in_flight(conninfo)
        room.start_worker("poller")
        room.wait_for(lambda: len(set(room.accounted_mail_ids())) >= MAILS, timeout=240, what="all")

        assert caught_in_the_window > 0, "the kill did not land between hand-off and marking"
        accounted = Counter(room.accounted_mail_ids())
        assert len(accounted) == MAILS and max(accounted.values()) == 1
        flags = dovecot.imap_flags(user)
        assert len(flags) == MAILS and all("\\Seen" in f for f in flags.values())
    finally:
        room.stop_workers()
