"""Runs of base64 lines left out of the stdlib parser: the same mail comes out, with less memory."""

from __future__ import annotations

import base64
import random
import tracemalloc
from pathlib import Path

import pytest

from services.parser import elision
from services.parser.mime import MimeMail, parse_mime
from services.runtime.errors import MailError

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
NOT_MAIL = {"LICENSE", "README.md", ".gitattributes"}


def everything(raw: bytes) -> object:
    """All a parse gives, attachments included; or the reason the mail was rejected."""
    try:
        mime: MimeMail = parse_mime(raw)
        attachments = [(a.filename, a.content_type, a.data, a.inline) for a in mime.attachments]
    except MailError as exc:
        return str(exc)
    return mime.mail, mime.body_text, mime.body_html, attachments, mime.defects


def corpus_and_damaged_copies() -> list[bytes]:
    mails = []
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name not in NOT_MAIL):
        raw = path.read_bytes()
        rnd = random.Random(path.name)
        damaged = bytearray(raw)
        for _ in range(max(1, len(raw) // 300)):
            damaged[rnd.randrange(len(raw))] = rnd.choice(b"\r\n-:=A \xff")
        mails += [raw, raw[: len(raw) // 2], bytes(damaged)]
    return mails


def test_leaving_every_base64_line_out_of_the_parser_changes_no_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mails = corpus_and_damaged_copies()
    monkeypatch.setattr(elision, "MIN_RUN", 1)  # every run of base64 lines, however short
    left_out = [everything(raw) for raw in mails]
    monkeypatch.setattr(elision, "MIN_RUN", 10**12)  # none
    parsed_whole = [everything(raw) for raw in mails]

    assert len(mails) > 400
    for raw, ours, whole in zip(mails, left_out, parsed_whole, strict=True):
        assert ours == whole, raw[:200]


def test_a_40_mb_attachment_is_decoded_from_the_raw_mail_without_copies_of_it() -> None:
    data = random.Random(14).randbytes(40_000_000)
    raw = (
        b'From: a@example.com\r\nSubject: dump\r\nContent-Type: multipart/mixed; boundary="b"'
        b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe dump.\r\n--b\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(data).replace(b"\n", b"\r\n")
        + b"--b--\r\n"
    )

    tracemalloc.start()
    try:
        mime = parse_mime(raw)
        [dump] = list(mime.attachments)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert dump.data == data
    assert peak < len(data) + 8_000_000  # the decoded bytes, and no copy of the 54 MB text
