"""Deterministic generated mail for load and crash tests: requests, replies, broken MIME."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

BROKEN = (
    b"From: Scanner <scanner@load.example>\r\nTo: support@demo.example\r\n"
    b"Subject: scan %d\r\nMessage-ID: <gen-%d@load.example>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="missing"\r\n\r\nno parts here\r\n'
)


def kind_of(i: int) -> str:
    if i % 20 == 7:
        return "broken"
    if i % 5 == 3 and i > 10:
        return "reply"
    return "request"


def make_mail(i: int) -> bytes:
    """Mail number ``i``: every 20th is broken MIME, every 5th (after 10) replies to i-3."""
    if kind_of(i) == "broken":
        return BROKEN % (i, i)
    msg = _message(f"User {i} <user{i}@load.example>", f"<gen-{i}@load.example>", i)
    if kind_of(i) == "reply":
        msg["Subject"] = f"Re: Problem number {i - 3}"
        msg["In-Reply-To"] = f"<gen-{i - 3}@load.example>"
        msg["References"] = f"<gen-{i - 3}@load.example>"
    else:
        msg["Subject"] = f"Problem number {i}"
    msg.set_content(f"Hello,\n\nthis is problem number {i}.\n" + "Details. " * (i % 50))
    if i % 4 == 0:
        log = f"log line {i}\n".encode() * 20
        msg.add_attachment(log, maintype="text", subtype="plain", filename=f"log-{i}.txt")
    return _crlf(msg)


def make_big_mail(attachment_size: int) -> bytes:
    """A request carrying one attachment of ``attachment_size`` seeded random bytes.

    Random bytes cannot be compressed, so no layer can make the mail look smaller than it is.
    """
    msg = _message("Big Sender <big@load.example>", "<gen-big@load.example>", 0)
    msg["Subject"] = "Capture of the failing run"
    msg.set_content("Hello,\n\nthe capture of the failing run is attached.\n")
    data = random.Random(attachment_size).randbytes(attachment_size)
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename="run.pcap")
    return _crlf(msg)


def fill_maildir(maildir: Path, count: int) -> list[str]:
    """Write ``count`` mails into ``maildir/new``; returns their keys in order."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    keys = [f"gen-{i:05d}" for i in range(count)]
    for i, key in enumerate(keys):
        (maildir / "new" / key).write_bytes(make_mail(i))
    return keys


def _message(sender: str, message_id: str, minute: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "support@demo.example"
    msg["Date"] = format_datetime(datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=minute))
    msg["Message-ID"] = message_id
    return msg


def _crlf(msg: EmailMessage) -> bytes:
    if msg.is_multipart():
        # The stdlib would pick a random boundary: fixed, the same mail is the same bytes.
        msg.set_boundary("==mailgen-boundary==")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
