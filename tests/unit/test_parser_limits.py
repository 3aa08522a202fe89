"""Limits against hostile mail, and a big mail that goes through attachment by attachment."""

from __future__ import annotations

import base64
import hashlib
import random
from pathlib import Path

import pytest

from contracts.mail import MailFetched, MailParsed, SourceRef
from contracts.settings import Settings
from services.parser.handler import parse
from services.parser.limits import ParserLimits
from services.parser.mime import parse_mime
from services.parser.worker import parser_limits
from services.runtime.errors import MailError
from services.runtime.testing import InMemoryBlobStore

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"


def parse_raw(raw: bytes, limits: ParserLimits | None = None) -> MailParsed:
    blobs = InMemoryBlobStore()
    msg = MailFetched(
        mail_id="m-1",
        helpdesk="default",
        source=SourceRef(mailbox="support", ref="1"),
        raw_blob=blobs.put(raw),
        size=len(raw),
    )
    [out] = parse(msg, blobs=blobs, limits=limits) if limits else parse(msg, blobs=blobs)
    assert isinstance(out, MailParsed)
    return out


def nested_multiparts(levels: int) -> bytes:
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(levels)
    )
    closing = b"".join(b"--b%d--\r\n" % i for i in reversed(range(levels)))
    return (
        b"From: a@example.com\r\n" + opening + b"Content-Type: text/plain\r\n\r\nhi\r\n" + closing
    )


def nested_forwards(levels: int) -> bytes:
    """A forward of a forward of ...: message/rfc822 parts, which declare no boundary."""
    mail = b"From: z@example.com\r\nSubject: innermost\r\n\r\nhi\r\n"
    for _ in range(levels):
        mail = b"From: a@example.com\r\nContent-Type: message/rfc822\r\n\r\n" + mail
    return mail


def many_parts(count: int) -> bytes:
    parts = b"".join(
        b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(count)
    )
    head = b'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    return head + parts + b"--b--\r\n"


def attachments_of(sizes: list[int]) -> bytes:
    parts = b"".join(
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(bytes(size)) + b"\r\n"
        for size in sizes
    )
    head = b'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    return head + parts + b"--b--\r\n"


def test_the_limits_come_from_the_mailroom_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parser_limits(Settings()) == ParserLimits(20, 500, 256, 100)
    monkeypatch.setenv("MAILROOM_MAX_MIME_DEPTH", "5")
    monkeypatch.setenv("MAILROOM_MAX_MIME_PARTS", "50")
    monkeypatch.setenv("MAILROOM_MAX_HEADER_KB", "64")
    monkeypatch.setenv("MAILROOM_MAX_DECODED_MB", "2.5")

    assert parser_limits(Settings()) == ParserLimits(5, 50, 64, 2.5)


def test_nesting_deeper_than_the_limit_is_rejected_before_parsing() -> None:
    with pytest.raises(MailError) as caught:
        parse_raw(nested_multiparts(21))

    assert str(caught.value) == (
        "MIME parts are nested too deeply: more than 20 levels (MAILROOM_MAX_MIME_DEPTH)"
    )


def test_nesting_up_to_the_limit_is_accepted() -> None:
    out = parse_raw(nested_multiparts(4), ParserLimits(max_depth=4))

    assert out.mail.body_text_blob is not None


def test_forwards_nested_deeper_than_the_limit_are_rejected() -> None:
    with pytest.raises(MailError, match=r"more than 3 levels \(MAILROOM_MAX_MIME_DEPTH\)"):
        parse_raw(nested_forwards(4), ParserLimits(max_depth=3))


def test_more_parts_than_the_limit_are_rejected() -> None:
    with pytest.raises(MailError) as caught:
        parse_raw(many_parts(500))

    assert str(caught.value) == "mail has more than 500 MIME parts (MAILROOM_MAX_MIME_PARTS)"


def test_parts_up_to_the_limit_are_accepted() -> None:
    out = parse_raw(many_parts(4), ParserLimits(max_parts=5))

    assert out.mail.body_text_blob is not None


def test_parts_of_attached_mails_count_too() -> None:
    with pytest.raises(MailError, match="more than 3 MIME parts"):
        parse_raw(nested_forwards(3), ParserLimits(max_parts=3))


def test_a_header_block_over_the_limit_is_rejected() -> None:
    header = b"".join(b"X-Trace-%d: %s\r\n" % (i, b"x" * 200) for i in range(1400))
    raw = b"From: a@example.com\r\n" + header + b"\r\nhi\r\n"

    with pytest.raises(MailError) as caught:
        parse_raw(raw)

    assert str(caught.value) == "header block is larger than 256 KB (MAILROOM_MAX_HEADER_KB)"


def test_a_big_body_after_a_missing_blank_line_is_not_taken_for_header() -> None:
    body = b"".join(b"line %d of a long log without any colon\r\n" % i for i in range(10_000))
    raw = b"From: a@example.com\r\nSubject: log\r\n" + body

    out = parse_raw(raw)

    assert out.mail.subject == "log"
    assert out.mail.body_text_blob is not None


def test_the_corpus_mail_with_a_135_kb_header_is_within_the_default_limit() -> None:
    """Corpus: a To header folded over 2,700 lines, written to crash recursive parsers."""
    raw = (CORPUS / "mimekit/messages/stack-overflow.txt").read_bytes()

    out = parse_raw(raw)

    assert raw.index(b"\n\n") > 128 * 1024
    assert out.mail.message_id == "<aasfasdfasdfa@bb>"


def test_a_to_field_too_long_for_the_full_address_parser_keeps_its_real_address() -> None:
    """Corpus: the 135 KB To field is an address, then 2,700 encoded words of no address."""
    raw = (CORPUS / "mimekit/messages/stack-overflow.txt").read_bytes()

    out = parse_raw(raw)

    assert [(a.name, a.email) for a in out.mail.to] == [("test", "test@test.com")]
    assert "header To: an entry of 130 KB is too long to be an address" in out.mail.defects[0]


def test_a_long_list_of_recipients_is_read_whole_names_decoded() -> None:
    recipients = [f"User {i} <user{i}@example.com>" for i in range(400)]
    recipients[200] = "=?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.com>"
    raw = (
        b"From: ann@example.com\r\nTo: " + ",\r\n ".join(recipients).encode() + b"\r\n"
        b"Subject: all hands\r\n\r\nHello.\r\n"
    )

    out = parse_raw(raw)

    assert len(raw) > 10 * 1024
    assert len(out.mail.to) == 400
    assert (out.mail.to[200].name, out.mail.to[200].email) == ("Jörg Müller", "joerg@example.com")
    assert (out.mail.to[399].name, out.mail.to[399].email) == ("User 399", "user399@example.com")
    assert out.mail.defects == []


def test_decoded_parts_over_the_limit_are_rejected() -> None:
    with pytest.raises(MailError) as caught:
        parse_raw(attachments_of([600_000, 600_000]), ParserLimits(max_decoded_mb=1))

    assert str(caught.value) == ("decoded parts add up to more than 1 MB (MAILROOM_MAX_DECODED_MB)")


def test_decoding_stops_at_the_part_that_passes_the_limit() -> None:
    mime = parse_mime(attachments_of([600_000, 600_000, 600_000]), ParserLimits(max_decoded_mb=1))

    first = next(mime.attachments)
    assert len(first.data) == 600_000
    with pytest.raises(MailError, match="MAILROOM_MAX_DECODED_MB"):
        next(mime.attachments)


def big_mail(attachment: bytes) -> bytes:
    head = (
        b"From: Big Sender <big@example.com>\r\nTo: support@example.com\r\n"
        b"Subject: the logs you asked for\r\nMessage-ID: <big@example.com>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + b"Logs attached.\r\n" * 1000
    )
    head += (
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
        b'filename="dump.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    )
    return head + base64.encodebytes(attachment).replace(b"\n", b"\r\n") + b"--b--\r\n"


def test_a_mail_of_over_50_mb_with_a_40_mb_attachment_goes_through() -> None:
    attachment = random.Random(14).randbytes(40_000_000)
    raw = big_mail(attachment)

    out = parse_raw(raw)

    assert len(raw) > 50_000_000
    [dump] = out.mail.attachments
    assert (dump.filename, dump.size) == ("dump.bin", 40_000_000)
    assert dump.sha256 == hashlib.sha256(attachment).hexdigest()
