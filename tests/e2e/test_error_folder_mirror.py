"""The error folder mirrors the dead-letter queue, whichever stage a mail fails in.

Failures are injected from the store (``store_faults``) into the validator, router and
notifier, and the parser meets a mail over its MIME depth limit; nothing in Mailroom is
told about the test.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from harness import Mailroom, settings_yaml
from store_faults import StoreFaults

from contracts.ids import mail_id

LOST = b"LOST-BY-STORAGE"


def plain(key: str, subject: str, sender: str = "ann@example.test") -> bytes:
    return (
        f"From: {sender}\r\nTo: support@demo.example\r\nSubject: {subject}\r\n"
        f"Message-ID: <{key}@example.test>\r\n\r\nPlease help.\r\n"
    ).encode()


def with_attachment(key: str, subject: str, filename: str, data: bytes) -> bytes:
    encoded = base64.encodebytes(data).decode().replace("\n", "\r\n")
    return (
        f"From: bob@example.test\r\nTo: support@demo.example\r\nSubject: {subject}\r\n"
        f"Message-ID: <{key}@example.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
        "--b0\r\nContent-Type: text/plain\r\n\r\nAttached.\r\n"
        f"--b0\r\nContent-Type: application/octet-stream\r\n"
        f'Content-Disposition: attachment; filename="{filename}"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}--b0--\r\n"
    ).encode()


def nested(key: str, depth: int) -> bytes:
    """A mail whose multiparts nest ``depth`` deep."""
    head = (
        f"From: deep@example.test\r\nSubject: nested\r\nMessage-ID: <{key}@example.test>\r\n"
        "MIME-Version: 1.0\r\n"
    )
    body = "Content-Type: text/plain\r\n\r\ninnermost\r\n"
    for level in range(depth):
        body = (
            f'Content-Type: multipart/mixed; boundary="n{level}"\r\n\r\n'
            f"--n{level}\r\n{body}--n{level}--\r\n"
        )
    return (head + body).encode()


MAILS = {
    "fine": plain("fine", "printer jammed"),
    "parser-fails": nested("parser-fails", depth=6),
    "validator-fails": with_attachment(
        "validator-fails", "see report.pdf", "report.pdf", b"%PDF-1.4\n" + LOST + b"\n%%EOF\n"
    ),
    "router-fails": plain("router-fails", "FAIL-ROUTER screen flickers"),
    "notifier-fails": with_attachment(
        "notifier-fails", "FAIL-NOTIFIER setup", "setup.exe", b"MZ" * 64
    ),
}


@pytest.fixture
def faults(mailroom: Mailroom) -> Iterator[StoreFaults]:
    mailroom.env["MAILROOM_MAX_MIME_DEPTH"] = "4"
    mailroom.maildir.mkdir()
    for sub in ("new", "cur", "tmp"):
        (mailroom.maildir / sub).mkdir()
    mailroom.apply_settings(settings_yaml(mailroom.maildir))  # migrates the store first
    injected = StoreFaults(mailroom.env["MAILROOM_DATABASE_URL"])
    injected.lose_blobs_containing(LOST)
    injected.refuse_requests_titled("FAIL-ROUTER")
    injected.refuse_emails_titled("FAIL-NOTIFIER")
    yield injected
    injected.close()


def deliver(room: Mailroom, mails: dict[str, bytes]) -> None:
    for key, raw in mails.items():
        (room.maildir / "new" / key).write_bytes(raw)


def error_folder(room: Mailroom) -> set[str]:
    cur = room.maildir / ".Errors" / "cur"
    return {p.name.split(":2,")[0] for p in cur.iterdir()} if cur.exists() else set()


def mailbox_entries(room: Mailroom) -> set[str]:
    """Refs of the dead-letter entries that belong to the mailbox (not to a notification)."""
    return {
        d["source"]["ref"]
        for d in room.json("dlq", "list")
        if d["source"] and d["source"]["mailbox"] == "demo"
    }


def test_failures_in_every_stage_end_in_the_dlq_and_the_error_folder_alike(
    mailroom: Mailroom, faults: StoreFaults
) -> None:
    room = mailroom
    deliver(room, MAILS)

    summary = room.json("run", "--once")

    entries = room.json("dlq", "list")
    dead = {d["stage"]: d for d in entries}
    assert set(dead) == {"parser", "validator", "router", "notifier"}
    assert {stage: d["mail_id"] for stage, d in dead.items() if stage != "notifier"} == {
        "parser": mail_id("demo", "parser-fails"),
        "validator": mail_id("demo", "validator-fails"),
        "router": mail_id("demo", "router-fails"),
    }
    failed_emails = [d for d in entries if d["stage"] == "notifier"]
    assert len(failed_emails) == 2, "the notices to the sender and to the reps both failed"
    assert "MAILROOM_MAX_MIME_DEPTH" in dead["parser"]["error"]
    assert "report.pdf" in dead["validator"]["error"]
    assert "injected fault: requests refused" in dead["router"]["error"]
    assert dead["router"]["attempts"] == 3, "a store failure is retried before giving up"
    assert dead["notifier"]["source"]["mailbox"] is None, "the mail itself became a request"
    failed_mails = {"parser-fails", "validator-fails", "router-fails"}
    assert error_folder(room) == mailbox_entries(room) == failed_mails
    assert summary["dead_lettered"] == 3
    [counts] = room.json("errors", "list")
    assert counts["error_count"] == 3
    subjects = {r["subject"] for r in room.json("requests", "list")}
    assert subjects == {"printer jammed", "FAIL-NOTIFIER setup"}

    # The admin fixes the cause and moves the mails back: what now succeeds leaves the DLQ.
    faults.clear()
    room.cli("errors", "move-to-inbox", "demo")
    again = room.json("run", "--once")

    assert again["fetched"] == 3
    assert error_folder(room) == mailbox_entries(room) == {"parser-fails"}
    subjects = {r["subject"] for r in room.json("requests", "list")}
    assert {"see report.pdf", "FAIL-ROUTER screen flickers"} <= subjects
    assert {d["stage"] for d in room.json("dlq", "list")} == {"parser", "notifier"}

    # The failed notifications are replayed as they were: each recipient gets one.
    for entry in failed_emails:
        room.cli("dlq", "replay", str(entry["id"]))
    room.json("run", "--once")  # on RabbitMQ the notifier is there to take them
    assert [d["stage"] for d in room.json("dlq", "list")] == ["parser"]
    emails = [
        n
        for n in room.json("notifications", "list")
        if n["channel"] == "email" and "FAIL-NOTIFIER" in n["subject"]
    ]
    assert sorted(n["to"] for n in emails) == [["bob@example.test"], ["reps@demo.example"]]


def test_an_error_folder_deleted_by_hand_is_made_again_and_loses_nothing(
    mailroom: Mailroom, faults: StoreFaults
) -> None:
    room = mailroom
    deliver(room, {"router-fails": MAILS["router-fails"]})
    room.json("run", "--once")
    assert error_folder(room) == {"router-fails"}

    for path in sorted((room.maildir / ".Errors").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (room.maildir / ".Errors").rmdir()
    deliver(room, {"parser-fails": MAILS["parser-fails"]})
    room.json("run", "--once")

    assert error_folder(room) == {"parser-fails"}, "the folder was made again for the new mail"
    faults.clear()
    said = room.cli("errors", "move-to-inbox", "demo").stdout
    room.json("run", "--once")

    assert "1 mails were no longer in the error folder" in said
    subjects = {r["subject"] for r in room.json("requests", "list")}
    assert "FAIL-ROUTER screen flickers" in subjects, "processed again from the stored copy"
    assert mailbox_entries(room) == error_folder(room) == {"parser-fails"}
