"""One reading of Message-IDs, shared by the poller, the parser and the admin commands."""

from __future__ import annotations

import pytest

from services.parser.mime import parse_mime
from services.runtime.mail_text import message_id_of
from services.runtime.message_ids import MAX_ID_BYTES, first_message_id, message_ids

LONG = "x" * MAX_ID_BYTES + "@example.org"

MESSAGE_ID_TABLE = [
    ("<a@x.example>", "<a@x.example>"),
    ("a@x.example", "<a@x.example>"),
    ("  <a@x.example>  ", "<a@x.example>"),
    ("\t a@x.example ", "<a@x.example>"),
    ("\r\n <a@x.example>", "<a@x.example>"),
    ("<a-very-long-id.1234\r\n @x.example>", "<a-very-long-id.1234@x.example>"),
    ("<a@x.example> (added by the gateway)", "<a@x.example>"),
    ("(note (nested) <no@id.example>) <a@x.example>", "<a@x.example>"),
    ("<a@x.example> <b@x.example>", "<a@x.example>"),
    ("<12345>", "<12345>"),
    ('<"odd local"@x.example>', '<"oddlocal"@x.example>'),
    ("", None),
    ("   ", None),
    ("<>", None),
    ("garbage", None),
    ("[??????]", None),
    ("<a\x00b@x.example>", None),
    (f"<{LONG}>", None),
    (LONG, None),
]


@pytest.mark.parametrize(("value", "expected"), MESSAGE_ID_TABLE)
def test_a_message_id_header_is_read_by_one_rule(value, expected):
    assert first_message_id(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<a@x> <b@x>", ["<a@x>", "<b@x>"]),
        ("<a@x>\r\n\t<b@x>\r\n <c@x>", ["<a@x>", "<b@x>", "<c@x>"]),
        ("<a@x>,<b@x>, <a@x>", ["<a@x>", "<b@x>"]),
        ("a@x b@x", ["<a@x>", "<b@x>"]),
        ("a@x, b@x", ["<a@x>", "<b@x>"]),
        ("<a@x> (from b@x) see also c@x", ["<a@x>"]),
        ("Your message of Tue, 3 Mar <a@x>", ["<a@x>"]),
        ("", []),
        ("nothing here", []),
    ],
)
def test_references_and_in_reply_to_lists_are_read_by_the_same_rule(value, expected):
    assert message_ids(value) == expected


def raw_with(message_id_line: bytes) -> bytes:
    return b"From: ann@example.org\r\nSubject: hi\r\n" + message_id_line + b"\r\n\r\nbody\r\n"


@pytest.mark.parametrize(("value", "expected"), MESSAGE_ID_TABLE)
def test_the_poller_and_the_parser_read_the_same_message_id(value, expected):
    raw = raw_with(b"Message-ID: " + value.encode("utf-8"))

    polled = message_id_of(raw)
    parsed = parse_mime(raw, None).mail

    assert polled == expected
    if expected is None:
        assert parsed.message_id_synthetic and parsed.message_id.endswith("@mailroom.invalid>")
    else:
        assert parsed.message_id == expected and not parsed.message_id_synthetic


def test_the_parser_threads_on_ids_written_without_brackets():
    raw = raw_with(b"In-Reply-To: a@x.example\r\nReferences: <r@x.example>\r\n r2@x.example")

    mail = parse_mime(raw, None).mail

    assert mail.in_reply_to == ["<a@x.example>"]
    assert mail.references == ["<r@x.example>"]


def test_a_garbage_message_id_is_noted_among_the_defects():
    parsed = parse_mime(raw_with(b"Message-ID: [??????]"), None)

    assert any("Message-ID" in d and "no usable id" in d for d in parsed.defects)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("<caf\u00e9@x.example>".encode(), "<caf\u00e9@x.example>"),  # UTF-8 (RFC 6532)
        (b"<caf\xe9@x.example>", None),  # a raw Latin-1 byte: no id anyone can match
    ],
)
def test_raw_8bit_ids_are_read_alike_by_poller_and_parser(header, expected):
    raw = raw_with(b"Message-ID: " + header)

    assert message_id_of(raw) == expected
    parsed = parse_mime(raw, None).mail
    assert parsed.message_id == expected if expected else parsed.message_id_synthetic
