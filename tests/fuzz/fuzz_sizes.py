"""Mutations of shape and size: the mail wrapped deep in attached mails and multiparts, large
parts, many parts, many fields, long lines, and attachments the validator must judge."""

from __future__ import annotations

import base64
import quopri

from fuzz_headers import CONTENT_TYPES, DISPOSITIONS
from fuzz_shape import Mutation, newline, position, seeded_bytes, split
from hypothesis import strategies as st

#: Large enough to go past the parser's limits (depth 20, 500 parts) and into the
#: validator's (1 MB here), small enough that a second stays a fair bound.
DEPTHS = st.sampled_from([2, 19, 21, 60]) | st.integers(1, 25)
SIZES = st.sampled_from([0, 1, 1024 * 1024 + 1, 2_000_000]) | st.integers(0, 1_500_000)
STARTS = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"%PDF-1.4\n",
    b"MZ\x90\x00",
    b"PK\x03\x04",
    b"\x7fELF",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
    b"\x78\x9f\x3e\x22",
    b"\x1f\x8b\x08",
    b"#!/bin/sh\n",
    b"<html><body><img src=cid:x>",
    b"begin 644 a.txt\n",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"-----BEGIN PKCS7-----\n",
    b"From: inner@example.com\r\n\r\nhi",
]
NAMES = [
    b"report.pdf",
    b"x.exe",
    b"x.pdf.exe",
    b"",
    b" ",
    b".",
    b"..",
    b"../../etc/passwd",
    b"a\x00b.txt",
    b"\xe2\x80\xaetxt.exe",
    b"CON",
    b"file.",
    b"x" * 300 + b".pdf",
    b"=?utf-8?B?0L/RgNC40LLQtdGCLmV4ZQ==?=",
    b"\xff\xfe.bin",
    b"a/b\\c.txt",
    b"a\r\nb.txt",
    b"winmail.dat",
    b"smime.p7m",
    b"\xf0\x9f\x98\x80.png",
    b"x.JS",
    b"noext",
]
TRANSFER = ["base64", "quoted-printable", "8bit", "binary", "7bit"]


def _wrapper(kind: str, inner: bytes, level: int, nl: bytes) -> bytes:
    b = b"lvl%d" % level
    top = b"From: a@example.com" + nl + b"Subject: level %d" % level + nl + b"MIME-Version: 1.0"
    if kind == "rfc822":
        return top + nl + b"Content-Type: message/rfc822" + nl + nl + inner
    if kind == "digest":
        # A part of a digest without a Content-Type is an attached mail.
        body = b"--" + b + nl + nl + inner + nl + b"--" + b + b"--" + nl
        return top + nl + b"Content-Type: multipart/digest; boundary=" + b + nl + nl + body
    sub = kind.encode()
    part = b"Content-Type: message/rfc822" + nl + nl if kind == "mixed" else b""
    body = b"--" + b + nl + part + inner + nl + b"--" + b + b"--" + nl
    return top + nl + b"Content-Type: multipart/" + sub + b"; boundary=" + b + nl + nl + body


def wrap_deep(draw: st.DrawFn, raw: bytes) -> bytes:
    """The mail inside attached mails and multiparts, up to past the depth limit."""
    kinds = st.sampled_from(["rfc822", "digest", "mixed", "alternative", "related", "signed"])
    nl = newline(raw)
    for level in range(draw(DEPTHS)):
        raw = _wrapper(draw(kinds), raw, level, nl)
    return raw


def _attachment_part(draw: st.DrawFn, nl: bytes) -> bytes:
    name = draw(st.sampled_from(NAMES))
    ctype = draw(st.sampled_from([b"application/octet-stream", b"text/plain", *CONTENT_TYPES[:6]]))
    disposition = draw(st.sampled_from([b"attachment", b"inline", *DISPOSITIONS]))
    data = draw(st.sampled_from(STARTS)) + seeded_bytes(
        draw(st.integers(0, 9)), draw(SIZES), draw(st.sampled_from(["zeros", "text", "random"]))
    )
    cte = draw(st.sampled_from(TRANSFER))
    body = {
        "base64": lambda d: base64.encodebytes(d).replace(b"\n", nl),
        "quoted-printable": lambda d: quopri.encodestring(d).replace(b"\n", nl),
    }.get(cte, lambda d: d)(data)
    return nl.join(
        [
            b"Content-Type: " + ctype + b'; name="' + name + b'"',
            b"Content-Disposition: " + disposition + b'; filename="' + name + b'"',
            b"Content-Transfer-Encoding: " + cte.encode(),
            b"Content-ID: <x>",
            b"",
            body,
        ]
    )


def _with_parts(raw: bytes, parts: list[bytes], nl: bytes) -> bytes:
    """The mail as the first part of a multipart/mixed, ``parts`` after it."""
    b = b"fuzz-parts-boundary"
    inner = [b"Content-Type: message/rfc822" + nl + nl + raw, *parts]
    body = b"".join(b"--" + b + nl + p + nl for p in inner) + b"--" + b + b"--" + nl
    head = b"From: a@example.com" + nl + b"To: help@example.com" + nl + b"Subject: parts" + nl
    head += b"MIME-Version: 1.0" + nl + b"Content-Type: multipart/mixed; boundary=" + b + nl
    return head + nl + body


def add_attachment(draw: st.DrawFn, raw: bytes) -> bytes:
    """One to a few attachments of odd names, types, starts, encodings and sizes."""
    nl = newline(raw)
    parts = [_attachment_part(draw, nl) for _ in range(draw(st.integers(1, 3)))]
    return _with_parts(raw, parts, nl)


def many_parts(draw: st.DrawFn, raw: bytes) -> bytes:
    """Hundreds of small parts, up to past the part limit."""
    nl = newline(raw)
    count = draw(st.sampled_from([499, 501, 1000]) | st.integers(2, 600))
    named = draw(st.booleans())
    parts = [
        b"Content-Type: text/plain" + (b'; name="p%d.txt"' % i if named else b"") + nl + nl + b"p"
        for i in range(count)
    ]
    return _with_parts(raw, parts, nl)


def many_fields(draw: st.DrawFn, raw: bytes) -> bytes:
    """Thousands of header fields, up to past the header size limit."""
    nl = newline(raw)
    name = draw(st.sampled_from([b"Received", b"To", b"X-Spam", b"Content-Type", b"Subject"]))
    count = draw(st.sampled_from([10_000, 30_000]) | st.integers(1, 5_000))
    line = name + b": from x by y; Mon, 1 Jan 2024 00:00:00 +0000" + nl
    return line * count + raw


def long_line(draw: st.DrawFn, raw: bytes) -> bytes:
    """One body line of up to a few megabytes, without a line break."""
    head, blank, body = split(raw)
    size = draw(SIZES)
    fill = seeded_bytes(draw(st.integers(0, 9)), size, draw(st.sampled_from(["text", "random"])))
    fill = fill.replace(b"\n", b" ").replace(b"\r", b" ")
    at = position(draw, body)
    return head + blank + body[:at] + fill + body[at:]


def many_addresses(draw: st.DrawFn, raw: bytes) -> bytes:
    """A To or Cc with thousands of addresses."""
    count = draw(st.sampled_from([5_000, 20_000]) | st.integers(1, 2_000))
    name = draw(st.sampled_from([b"To", b"Cc", b"From", b"Reply-To"]))
    value = b", ".join(b"User %d <u%d@example.com>" % (i, i) for i in range(count))
    return name + b": " + value + newline(raw) + raw


MUTATIONS: list[Mutation] = [
    wrap_deep,
    add_attachment,
    many_parts,
    many_fields,
    long_line,
    many_addresses,
]
