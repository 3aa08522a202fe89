"""Header mutations: fields duplicated, dropped, overlong or badly folded; hostile values,
broken encoded words, odd charsets, NULs and 8-bit bytes. Each works on the mail's header
block or on one of its parts'."""

from __future__ import annotations

import base64

from fuzz_shape import Mutation, fields, header_block, newline, position
from hypothesis import strategies as st

#: Charset labels: real ones, unknown ones, and names of Python codecs that are no text
#: encoding at all (zlib, rot13, undefined...).
CHARSETS = [
    *b"""utf-8 UTF-7 utf-16 utf-32-be iso-2022-jp iso-2022-kr gb18030 big5 shift_jis euc-kr
    koi8-r windows-1252 us-ascii x-unknown zlib base64 rot13 hex uu bz2 idna punycode
    unicode_escape raw_unicode_escape undefined utf_8_sig charmap mbcs cp65001 x-user-defined
    unicode-1-1-utf-7 utf-8*en iso-8859-1'en'""".split(),
    *[b"", b'"utf-8"', b"\xff\xfe", b"utf-8\x00", b"a" * 300, b"utf-8; x=y", b"ascii\tx"],
]
WORD_PAYLOADS = [
    b"",
    b"@@@",
    b"=ZZ",
    b"=",
    b"_",
    b"?",
    b"=?",
    b"\xc3\xa9\xff",
    b"\x00",
    b"SGVsbG8",
    b"SGVsbG8=",
    b"SGVsbG8==",
    b"====",
    b"=E9t=E9",
    b"A" * 2000,
    b"+AGQ-",
    b"+ZeVnLIqe-",
]

ADDRESSES = [
    b"",
    b"<>",
    b"@",
    b"a@b@c",
    b'"unterminated <x@example.com>',
    b"((((x@example.com",
    b"x@example.com (comment",
    b"group: a@example.com, c@example.com;",
    b"group:;",
    b":;",
    b"undisclosed-recipients:;",
    b"=?utf-8?q?Na=C3=AFve?= <x@[192.0.2.1]>",
    b"x@xn--zz--",
    b"x@\xc3\xa9xample.com",
    b"\xff\xfe@example.com",
    b"a" * 500 + b"@example.com",
    b", , ,",
    b"<<x@example.com>>",
    b"x@example.com.",
    b"..@example.com",
    b"(" * 3000 + b"x@y",
    b"MAILER-DAEMON@example.com",
    b"help@example.com",
    b"noreply@example.com",
    b"\\",
    b'"\\',
    b"<@route:x@example.com>",
    b"x@-example-.com",
    b"x@127.0.0.1",
    b"x@[ipv6:::1]",
]
IDS = [b"", b"<>", b"<a@b> <c@d>", b"no-brackets", b"<" * 1000, b"<x@y", b"\x00<a@b>"]
CONTENT_TYPES = [
    b"multipart/mixed",
    b"multipart/mixed; boundary=",
    b'multipart/mixed; boundary="',
    b"message/rfc822",
    b"text/plain; charset",
    b"text/plain; charset=*",
    b"text/html",
    b"application/ms-tnef",
    b"multipart/report; report-type=delivery-status",
    b"message/delivery-status",
    b"message/partial; id=1; number=2; total=3",
    b"message/external-body; access-type=x",
    b"multipart/signed; protocol=x; micalg=y",
    b"application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m",
    b"multipart/digest; boundary=b",
    b"text/plain; name*0*=utf-8''%ff; name*1=x; name*9=y",
    b"/",
    b";",
    b"text/",
    b'multipart/alternative; boundary=""',
    b"text/calendar; method=X",
    b"application/octet-stream; name==?utf-8?B?4oCuZXhlLnR4dA==?=",
    b"TEXT/PLAIN; CHARSET=",
    b"message/global",
    b"multipart/related; type=text/html; start=<x>",
]
DISPOSITIONS = [
    b"attachment",
    b"inline; filename=",
    b'attachment; filename="',
    b"attachment; filename*=utf-8''%ff%fe%00",
    b"attachment; filename*=x'y'z",
    b"attachment; filename*0*=utf-8''a; filename*1=b; filename*5=c",
    b"; ; ;",
    b'attachment; filename="../../etc/passwd"',
    b'attachment; filename="a\x00b.exe"',
    b'attachment; filename="\xe2\x80\xaetxt.exe"',
    b"attachment; filename=CON",
    b'inline; filename="' + b"x" * 400 + b'.pdf"',
    b"attachment; size=-1",
]
ENCODINGS = [
    *b"base64 quoted-printable 7bit 8bit binary x-uuencode uuencode x-uue gzip".split(),
    *[b" BASE64 ", b"base64; x=y", b"", b"quoted-printable base64", b"\xff"],
]
DATES = [
    b"",
    b"Mon, 32 Foo 99999 25:61:61 +9999",
    b"yesterday",
    b"0",
    b"Thu, 01 Jan 1970 00:00:00 -2400",
    b"Sat, 31 Dec 9999 23:59:59 -1200",
    b"-1",
]
LOOP_HINTS = [b"auto-replied", b"auto-generated", b"no", b"bulk", b"junk", b"list", b"\xff"]
VALUES = {
    b"From": ADDRESSES,
    b"To": ADDRESSES,
    b"Cc": ADDRESSES,
    b"Reply-To": ADDRESSES,
    b"Sender": ADDRESSES,
    b"Return-Path": ADDRESSES,
    b"Delivered-To": ADDRESSES,
    b"Message-ID": IDS,
    b"In-Reply-To": IDS,
    b"References": IDS,
    b"Content-Type": CONTENT_TYPES,
    b"Content-Disposition": DISPOSITIONS,
    b"Content-Transfer-Encoding": ENCODINGS,
    b"MIME-Version": [b"1.0", b"", b"2.0 (x)"],
    b"Content-ID": IDS,
    b"Date": DATES,
    b"Subject": [b"", b"Re: Fwd: RE:", b"\xe9\xff"],
    b"Auto-Submitted": LOOP_HINTS,
    b"Precedence": LOOP_HINTS,
    b"X-Autoreply": LOOP_HINTS,
    b"List-Id": IDS,
    b"List-Unsubscribe": IDS,
    b"X-Mailroom-Notice": LOOP_HINTS,
}
ODD_BYTES = [b"\x00", b"\x80", b"\xff", b"\xc3", b"\xe2\x80\xae", b"\r", b"\x0c", b"\x7f"]


@st.composite
def encoded_words(draw: st.DrawFn) -> bytes:
    charset = draw(st.sampled_from(CHARSETS))
    kind = draw(st.sampled_from([b"B", b"Q", b"b", b"q", b"X", b""]))
    payload = draw(
        st.sampled_from(WORD_PAYLOADS)
        | st.binary(max_size=40).map(base64.b64encode)
        | st.binary(max_size=40)
    )
    return b"=?" + charset + b"?" + kind + b"?" + payload + b"?="


def _edit_block(draw: st.DrawFn, raw: bytes, edit: Mutation) -> bytes:
    start, end = header_block(draw, raw)
    return raw[:start] + edit(draw, raw[start:end]) + raw[end:]


def _edit_field(draw: st.DrawFn, block: bytes, edit: Mutation) -> bytes:
    found = fields(block)
    i = draw(st.integers(0, len(found) - 1))
    return b"".join([*found[:i], edit(draw, found[i]), *found[i + 1 :]])


def _field(name: bytes, value: bytes, nl: bytes) -> bytes:
    return name + b": " + value + nl


def duplicate_field(draw: st.DrawFn, raw: bytes) -> bytes:
    def edit(draw: st.DrawFn, block: bytes) -> bytes:
        found = fields(block)
        copy = draw(st.sampled_from(found))
        at = draw(st.integers(0, len(found)))
        copy = copy if copy.endswith(b"\n") else copy + newline(raw)
        return b"".join([*found[:at], copy, *found[at:]])

    return _edit_block(draw, raw, edit)


def drop_field(draw: st.DrawFn, raw: bytes) -> bytes:
    return _edit_block(draw, raw, lambda draw, block: _edit_field(draw, block, lambda d, f: b""))


def hostile_field(draw: st.DrawFn, raw: bytes) -> bytes:
    """A field of a name the parser reads, with a value from its list of bad ones, or an
    encoded word; put in place of one field, or added."""
    name = draw(st.sampled_from(sorted(VALUES)))
    value = draw(st.sampled_from(VALUES[name]) | encoded_words())
    line = _field(name, value, newline(raw))
    if draw(st.booleans()):
        replace: Mutation = lambda draw, block: _edit_field(draw, block, lambda d, f: line)  # noqa: E731
        return _edit_block(draw, raw, replace)
    return _edit_block(draw, raw, lambda draw, block: line + block)


def overlong_field(draw: st.DrawFn, raw: bytes) -> bytes:
    """A field from a kilobyte to past the 256 KB header limit, in one line or folded."""
    name = draw(st.sampled_from([b"Subject", b"To", b"References", b"X-Long", b"Content-Type"]))
    size = draw(st.sampled_from([1_000, 20_000, 200_000, 270_000]) | st.integers(1, 300_000))
    unit = draw(
        st.sampled_from(
            [
                b"a",
                b"word ",
                b"=?utf-8?B?w6k=?= ",
                b"x@example.com, ",
                b"<id@example.com> ",
                b"; name*99=x",
                b"\xe9",
                b"(",
                b'"',
                b"=?utf-8?Q?=E9?=",
            ]
        )
    )
    fold = draw(st.sampled_from([b"", newline(raw) + b" "]))
    value = ((unit + fold) * (size // len(unit + fold) + 1))[:size]
    return _edit_block(draw, raw, lambda draw, block: block + _field(name, value, newline(raw)))


def bad_folding(draw: st.DrawFn, raw: bytes) -> bytes:
    """A line break where none may be: without the leading space, with only whitespace on
    the next line, a bare CR, inside the field name, or before the first field."""
    brk = draw(
        st.sampled_from(
            [b"\n", b"\r\n", b"\r", b"\n \n", b"\r\n\t\r\n", b"\n\n", b"\r\n \r\n x", b" \n"]
        )
    )

    def fold(draw: st.DrawFn, field: bytes) -> bytes:
        at = draw(st.integers(0, len(field)))
        return field[:at] + brk + field[at:]

    if draw(st.booleans()):
        return brk.lstrip(b"\r\n") + b" leading continuation" + newline(raw) + raw
    return _edit_block(draw, raw, lambda draw, block: _edit_field(draw, block, fold))


def odd_bytes(draw: st.DrawFn, raw: bytes) -> bytes:
    """NULs, 8-bit bytes, broken UTF-8 and control characters in a field."""
    junk = b"".join(draw(st.lists(st.sampled_from(ODD_BYTES), min_size=1, max_size=8)))

    def put(draw: st.DrawFn, field: bytes) -> bytes:
        at = position(draw, field)
        return field[:at] + junk + field[at:]

    return _edit_block(draw, raw, lambda draw, block: _edit_field(draw, block, put))


def encoded_word(draw: st.DrawFn, raw: bytes) -> bytes:
    """A broken or odd RFC 2047 word, or a run of them, inside a field's value."""
    words = draw(st.lists(encoded_words(), min_size=1, max_size=4))
    glue = draw(st.sampled_from([b"", b" ", b"\r\n ", b"\n\t"]))

    def put(draw: st.DrawFn, field: bytes) -> bytes:
        colon = field.find(b":") + 1
        at = draw(st.integers(colon, len(field.rstrip(b"\r\n"))))
        return field[:at] + glue.join(words) + field[at:]

    return _edit_block(draw, raw, lambda draw, block: _edit_field(draw, block, put))


def odd_charset(draw: st.DrawFn, raw: bytes) -> bytes:
    """Every ``charset=`` of the mail, or one of them, set to an odd label."""
    label = draw(st.sampled_from(CHARSETS))
    pieces = raw.split(b"charset=")
    if len(pieces) == 1:
        nl = newline(raw)
        return _field(b"Content-Type", b"text/plain; charset=" + label, nl) + raw
    which = draw(st.sampled_from([None, *range(1, len(pieces))]))
    out = [pieces[0]]
    for i, piece in enumerate(pieces[1:], 1):
        if which in (None, i):
            rest = piece.lstrip(b'"')
            cut = min([n for n in (rest.find(c) for c in b'";\r\n ') if n >= 0] or [len(rest)])
            piece = label + rest[cut:]
        out.append(piece)
    return b"charset=".join(out)


MUTATIONS: list[Mutation] = [
    duplicate_field,
    drop_field,
    hostile_field,
    overlong_field,
    bad_folding,
    odd_bytes,
    encoded_word,
    odd_charset,
]
