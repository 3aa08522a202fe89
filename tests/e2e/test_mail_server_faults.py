"""A server that drops the connection or garbles a FETCH: the round ends cleanly, nothing lost."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults import FaultyRelay, drop_after, garble_first, passthrough
from harness import Mailroom

MAILS = 120


def mail(i: int) -> bytes:
    body = f"Mail number {i}.\r\n".encode() + b"Some words to fill a line or two.\r\n" * 40
    return (
        f"From: Sender {i} <s{i}@example.test>\r\nTo: box@example.test\r\n"
        f"Subject: Problem {i}\r\nMessage-ID: <fault-{i}@example.test>\r\n\r\n"
    ).encode() + body


@pytest.fixture
def relay(dovecot) -> Iterator[FaultyRelay]:  # type: ignore[no-untyped-def]
    relay = FaultyRelay(dovecot.imap_port)
    yield relay
    relay.close()


@pytest.fixture
def room(tmp_path: Path, dovecot, relay: FaultyRelay) -> Mailroom:  # type: ignore[no-untyped-def]
    user = f"f{uuid.uuid4().hex[:8]}@example.test"
    dovecot.add_user(user, "secret")
    dovecot.deliver_many(user, [mail(i) for i in range(MAILS)])
    room = Mailroom.on_sqlite(tmp_path)
    room.apply_settings(
        "helpdesks:\n  - id: default\n    mailboxes:\n      - name: box\n"
        f"        protocol: imap\n        host: 127.0.0.1\n        port: {relay.port}\n"
        f"        username: {user}\n        password: secret\n        import_existing: all\n"
        "        timeout_seconds: 5\n"
    )
    return room


def run_until_clean(room: Mailroom, relay: FaultyRelay) -> tuple[dict, dict, dict]:  # type: ignore[type-arg]
    """A run through the fault, what ``mailbox show`` says then, and a run once it healed."""
    first = room.json("run", "--once")
    shown = room.json("mailbox", "show", "box")
    relay.fault = passthrough
    return first, shown, room.json("run", "--once")


def test_a_connection_dropped_mid_fetch_keeps_what_was_handed_off(
    room: Mailroom, relay: FaultyRelay
) -> None:
    relay.fault = drop_after(len(mail(0)) * 70)

    first, shown, second = run_until_clean(room, relay)

    assert 0 < first["fetched"] < MAILS
    assert "dropped the connection" in first["mailbox_errors"][0]["error"]
    assert shown["consecutive_failures"] == 1 and "dropped" in shown["last_error"]
    assert first["fetched"] + second["fetched"] == MAILS
    assert second["mailbox_errors"] == []
    ids = [m["mail_id"] for r in room.json("requests", "list") for m in r["mails"]]
    assert len(ids) == len(set(ids)) == MAILS


def test_a_malformed_fetch_response_ends_the_round_and_the_next_one_finishes(
    room: Mailroom, relay: FaultyRelay
) -> None:
    relay.fault = garble_first(b" FETCH (", b" FETCH ((((")

    first, shown, second = run_until_clean(room, relay)

    assert first["mailbox_errors"], "the garbled response was noticed"
    assert shown["consecutive_failures"] == 1
    assert room.json("mailbox", "show", "box")["consecutive_failures"] == 0, "healed"
    assert first["fetched"] + second["fetched"] == MAILS
    assert len(room.json("requests", "list")) == MAILS


def test_a_mail_over_the_size_limit_is_dead_lettered_without_download(
    tmp_path: Path,
    dovecot,  # type: ignore[no-untyped-def]
) -> None:
    user = f"big{uuid.uuid4().hex[:8]}@example.test"
    dovecot.add_user(user, "secret")
    huge = mail(1) + b"x" * 80 * 1024 + b"\r\n"
    dovecot.deliver_many(user, [mail(0), huge, mail(2)])
    room = Mailroom.on_sqlite(tmp_path)
    room.apply_settings(
        "helpdesks:\n  - id: default\n    mailboxes:\n      - name: box\n"
        f"        protocol: imaps\n        host: localhost\n        port: {dovecot.imaps_port}\n"
        f"        username: {user}\n        password: secret\n        import_existing: all\n"
        f"        max_mail_mb: 0.05\n        tls: {{ca_file: {dovecot.ca_file}}}\n"
    )

    summary = room.json("run", "--once")

    assert (summary["fetched"], summary["requests_created"], summary["dead_lettered"]) == (3, 2, 1)
    [dead] = room.json("dlq", "list")
    assert (dead["stage"], dead["error_class"]) == ("poller", "MailTooLarge")
    assert "over this mailbox's limit of 0.05 MB" in dead["error"]
    assert dovecot.folder_count(user, "Errors") == 1
    assert summary["mailbox_errors"] == []
