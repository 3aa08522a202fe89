"""What a sender chose (subject, names, file names) is shown, never obeyed: control and bidi
characters reach neither the terminal nor a saved JSON file raw."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from harness import DEMO, Mailroom, settings_yaml

RED = "\x1b[31m"
RLO = "\u202e"
SUBJECT = f"{RED}Pay now{RLO}gnp.exe"
FILENAME = f"{RED}scan{RLO}fdp.exe"
#: A mail whose subject, sender name and stripped attachment's file name carry an ESC
#: sequence and a right-to-left override (RFC 2047 and RFC 2231 encoded, as mail does).
HOSTILE = (
    b"From: =?utf-8?q?=1B[31mMallory=E2=80=AE?= <mallory@evil.example>\r\n"
    b"To: support@demo.example\r\n"
    b"Subject: =?utf-8?q?=1B[31mPay_now=E2=80=AEgnp.exe?=\r\n"
    b"Message-ID: <hostile@evil.example>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''%1B%5B31mscan%E2%80%AEfdp.exe\r\n\r\n"
    b"TVqQAAMAAAAEAAAA\r\n--b--\r\n"
)
#: A Maildir file name (the dead-letter entry's ref) with the same characters.
BROKEN_NAME = f"broken{RED}{RLO}"


@pytest.fixture
def room(tmp_path: Path) -> Mailroom:
    room = Mailroom.on_sqlite(tmp_path)
    room.env["COLUMNS"] = "400"  # one table row per line: escapes are not wrapped apart
    for sub in ("cur", "new", "tmp"):
        (room.maildir / sub).mkdir(parents=True)
    (room.maildir / "new" / "1-hostile").write_bytes(HOSTILE)
    broken = (DEMO / "Maildir" / "new" / "demo-11-broken-mime").read_bytes()
    (room.maildir / "new" / BROKEN_NAME).write_bytes(broken)
    os.utime(room.maildir / "new" / BROKEN_NAME, (2_000_000_000, 2_000_000_000))
    room.apply_settings(settings_yaml(room.maildir))
    return room


def shown(room: Mailroom, *args: str) -> str:
    """A command's human-readable output, checked to hold no raw control or bidi character."""
    out = room.cli(*args).stdout
    raw = [c for c in out if c in (RED[0], RLO)]
    assert not raw, f"`mailroom {' '.join(args)}` printed raw {raw!r}:\n{out}"
    return out


def saved(room: Mailroom, *args: str) -> object:
    """A command's JSON, checked to hold no raw control or bidi character."""
    out = room.cli(*args, "--json").stdout
    assert RLO not in out and RED[0] not in out, out
    return json.loads(out)


def test_every_table_shows_escapes_instead_of_control_and_bidi_characters(room: Mailroom) -> None:
    sample = shown(room, "mailbox", "test", "demo")
    summary = shown(room, "run", "--once")

    assert "\\x1b[31mPay now\\u202egnp.exe" in sample
    assert "\\x1b[31mscan\\u202efdp.exe" in sample
    assert "\\x1b[31mscan\\u202efdp.exe" in summary, "the stripped attachments table"
    assert "broken\\x1b[31m\\u202e" in summary, "the dead-letter table"
    assert "\\x1b[31mPay now\\u202egnp.exe" in shown(room, "requests", "list")
    assert "broken\\x1b[31m\\u202e" in shown(room, "dlq", "list")
    [entry] = saved(room, "dlq", "list")  # type: ignore[misc]
    assert "broken\\x1b[31m\\u202e" in shown(room, "dlq", "show", str(entry["id"]))
    assert "\\u202e" in shown(room, "notifications", "list")
    shown(room, "errors", "list")
    shown(room, "mailbox", "list")
    shown(room, "mailbox", "show", "demo")


def test_json_escapes_them_and_reads_back_the_same_text(room: Mailroom) -> None:
    sample = saved(room, "mailbox", "test", "demo")
    summary = saved(room, "run", "--once")
    [request] = saved(room, "requests", "list")  # type: ignore[misc]
    [entry] = saved(room, "dlq", "list")  # type: ignore[misc]

    assert sample["subject"] == SUBJECT  # type: ignore[index]
    assert [s["filename"] for s in summary["stripped"]] == [FILENAME]  # type: ignore[index]
    assert request["subject"] == SUBJECT
    assert entry["source"]["ref"] == BROKEN_NAME
    assert any(RLO in n["subject"] for n in saved(room, "notifications", "list"))  # type: ignore[union-attr]
