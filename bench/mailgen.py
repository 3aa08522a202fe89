"""Deterministic generated mail for load and crash tests: requests, replies, broken MIME."""

from __future__ import annotations

import base64
import math
import random
import struct
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

BROKEN = (
    b"From: Scanner <scanner@load.example>\r\nTo: support@demo.example\r\n"
    b"Subject: scan %d\r\nMessage-ID: <gen-%d@load.example>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="missing"\r\n\r\n'
    # Parts written with another boundary than the declared one: no reader can tell them apart.
    b"--other\r\nContent-Type: text/plain\r\n\r\nscan\r\n--other--\r\n"
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


# -- a mixed mailbox: realistic sizes and contents, for the IMAP figures ------------------------

MIXED_TO = "support@bench.example"
_OPENINGS = ("Hello,", "Hi team,", "Good morning,", "Dear support,", "Hi,")
_SUBJECTS = (
    "VPN drops every few minutes",
    "Cannot print to the third-floor printer",
    "Invoice {n} shows the wrong VAT rate",
    "Password reset link has expired",
    "Laptop fan is very loud after the update",
    "Access to the shared drive for a new colleague",
    "Calendar invitations arrive twice",
    "Quote {n}: delivery date",
)
_SENTENCES = (
    "Since {day} the {thing} stops working after about {m} minutes.",
    "I have restarted the {thing} twice, but the problem comes back.",
    "My colleague at desk {n} sees exactly the same behaviour.",
    "The error message says: code {code}, please contact your administrator.",
    "It worked fine until the update that was installed on {day}.",
    "Could you have a look before {day}? We have a customer meeting then.",
    "I attached what I could find; tell me if you need anything else.",
    "The {thing} is the one with the asset tag {code} on its back.",
    "We tried another cable and another power socket, with no change.",
    "This blocks the whole team, so an answer soon would help a lot.",
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "last week", "yesterday")
_THINGS = ("VPN client", "printer", "docking station", "mail client", "phone", "scanner")
# Attachments start the way real files do, so content sniffing sees the type they claim.
_FILES = (
    ("application", "pdf", "report-{n}.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"),
    (
        "application",
        "zip",
        "logs-{n}.zip",
        # A local file header (version 2.0, deflated) for a member named app.log.
        b"PK\x03\x04"
        + struct.pack("<5H3I2H", 20, 0, 8, 0x5A21, 0x5B7B, 0, 0, 0, 7, 0)
        + b"app.log",
    ),
    (
        "image",
        "png",
        "screenshot-{n}.png",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x07\x80\x00\x00\x048\x08\x06\x00\x00\x00",
    ),
)


def make_mixed_mail(i: int, seed: int = 1) -> bytes:
    """Mail ``i`` of a mixed mailbox: 2-20 KB of help-desk prose; one in five replies to an
    earlier mail, one in ten carries a 100 KB-1 MB PDF, zip or PNG. Same ``seed``, same bytes.

    Written as bytes rather than through ``email``: ten times faster, which matters for
    thousands of mails, and the layout is the one common mail clients send.
    """
    rng = random.Random(f"mixed-{seed}-{i}")
    date = format_datetime(datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=i))
    headers = [
        f"From: User {i % 397} <user{i % 397}@customer.example>",
        f"To: {MIXED_TO}",
        f"Date: {date}",
        f"Message-ID: {_mixed_id(seed, i)}",
        f"Subject: {_mixed_subject(seed, i)}",
        *_reply_headers(seed, i),
        "MIME-Version: 1.0",
    ]
    text = _TEXT_PART + _prose(rng, rng.randint(2_000, 20_000)).encode()
    if i % 10 != 9:
        return _lines(headers) + text
    boundary = f"==mixed-{seed}-{i}=="
    headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
    parts = [text, _attachment(rng, i)]
    return _lines(headers) + _multipart(boundary.encode(), parts)


_TEXT_PART = b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'


def _lines(headers: list[str]) -> bytes:
    return "\r\n".join(headers).encode() + b"\r\n"


def _multipart(boundary: bytes, parts: list[bytes]) -> bytes:
    body = b"\r\nThis is a multi-part message in MIME format.\r\n"
    for part in parts:
        body += b"--" + boundary + b"\r\n" + part + b"\r\n"
    return body + b"--" + boundary + b"--\r\n"


def _mixed_id(seed: int, i: int) -> str:
    return f"<mixed-{seed}-{i}@customer.example>"


def _mixed_subject(seed: int, i: int) -> str:
    """A reply repeats the subject of the mail it answers, as mail clients do."""
    if i % 5 == 4:
        return "Re: " + _mixed_subject(seed, i - 4)
    rng = random.Random(f"subject-{seed}-{i}")
    return rng.choice(_SUBJECTS).format(n=rng.randint(1000, 9999))


def _reply_headers(seed: int, i: int) -> list[str]:
    if i % 5 != 4:
        return []
    earlier = _mixed_id(seed, i - 4)
    return [f"In-Reply-To: {earlier}", f"References: {earlier}"]


def _prose(rng: random.Random, size: int) -> str:
    """A greeting, then paragraphs of plausible sentences up to about ``size`` characters."""
    paragraphs = [rng.choice(_OPENINGS)]
    length = 0
    while length < size:
        paragraph = " ".join(_sentence(rng) for _ in range(rng.randint(2, 8)))
        paragraphs.append(_wrap(paragraph))
        length += len(paragraph)
    return "\r\n\r\n".join([*paragraphs, "Best regards"]) + "\r\n"


def _sentence(rng: random.Random) -> str:
    return rng.choice(_SENTENCES).format(
        day=rng.choice(_DAYS),
        thing=rng.choice(_THINGS),
        m=rng.randint(2, 59),
        n=rng.randint(1, 400),
        code=f"{rng.randint(0, 0xFFFF):04X}",
    )


def _wrap(paragraph: str, width: int = 76) -> str:
    """Greedy line filling as mail clients do (textwrap is several times slower)."""
    lines, line = [], ""
    for word in paragraph.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\r\n".join([*lines, line])


def _attachment(rng: random.Random, i: int) -> bytes:
    maintype, subtype, name, header = _FILES[i // 10 % len(_FILES)]
    # Log-uniform sizes: small attachments are more common than big ones, as in real mail.
    size = int(math.exp(rng.uniform(math.log(100_000), math.log(1_000_000))))
    data = header + rng.randbytes(size - len(header))
    filename = name.format(n=i)
    return (
        f'Content-Type: {maintype}/{subtype}; name="{filename}"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="{filename}"\r\n\r\n'
    ).encode() + base64.encodebytes(data).replace(b"\n", b"\r\n")
