"""MIME mutations: boundaries missing, repeated, truncated or nested in each other, and
transfer encodings broken or declared wrong."""

from __future__ import annotations

import re

from fuzz_headers import ENCODINGS
from fuzz_shape import Mutation, boundaries, line_start, newline, part_header_spans, position
from hypothesis import strategies as st

_BASE64_LINE = re.compile(rb"^[A-Za-z0-9+/=]{16,}\r?$", re.M)


def _delimiters(raw: bytes, boundary: bytes) -> list[tuple[int, int]]:
    """Start and end (after its line ending) of each line that begins ``--boundary``."""
    found = []
    for m in re.finditer(rb"^--" + re.escape(boundary) + rb"[^\n]*\n?", raw, re.M):
        found.append((m.start(), m.end()))
    return found


def _some_boundary(draw: st.DrawFn, raw: bytes) -> bytes | None:
    found = boundaries(raw)
    return draw(st.sampled_from(found)) if found else None


def drop_delimiters(draw: st.DrawFn, raw: bytes) -> bytes:
    """Some or all delimiter lines of one boundary gone: the closing one, the first, all."""
    boundary = _some_boundary(draw, raw)
    lines = _delimiters(raw, boundary) if boundary else []
    if not lines:
        return raw
    which = draw(st.sampled_from(["closing", "first", "all", "one"]))
    chosen = {"closing": lines[-1:], "first": lines[:1], "all": lines}.get(which)
    if chosen is None:
        chosen = [draw(st.sampled_from(lines))]
    for start, end in reversed(chosen):
        raw = raw[:start] + raw[end:]
    return raw


def repeat_delimiter(draw: st.DrawFn, raw: bytes) -> bytes:
    """A delimiter line many times over: empty parts, or a closing line before the parts."""
    boundary = _some_boundary(draw, raw)
    lines = _delimiters(raw, boundary) if boundary else []
    if not lines:
        return raw
    start, end = draw(st.sampled_from(lines))
    times = draw(st.sampled_from([2, 3, 50, 600]) | st.integers(2, 20))
    line = raw[start : min(end, start + 200)].rstrip(b"\r\n") + newline(raw)
    at = draw(st.sampled_from([start, end, line_start(draw, raw)]))
    return raw[:at] + line * times + raw[at:]


def truncate_in_part(draw: st.DrawFn, raw: bytes) -> bytes:
    """The mail cut short after a delimiter line: inside the part's header or its body, or
    in the middle of the delimiter line itself."""
    boundary = _some_boundary(draw, raw)
    lines = _delimiters(raw, boundary) if boundary else []
    if not lines:
        return raw[: position(draw, raw)]
    start, end = draw(st.sampled_from(lines))
    return raw[: draw(st.integers(start, min(len(raw), end + 400)))]


def bad_boundary_parameter(draw: st.DrawFn, raw: bytes) -> bytes:
    """A ``boundary=`` changed: empty, absent from the body, a prefix or extension of the
    real one, overlong, with spaces, or the same as another level's."""
    boundary = _some_boundary(draw, raw)
    if boundary is None:
        return raw
    others = [b for b in boundaries(raw) if b != boundary]
    new = draw(
        st.sampled_from(
            [
                b"",
                b'"',
                b"nowhere",
                boundary[:-1],
                boundary + b"x",
                boundary + b"--",
                b"x" * 2000,
                b"a b",
                b"--",
                b" ",
                boundary[: len(boundary) // 2],
                *others,
            ]
        )
    )
    return raw.replace(b"boundary=" + boundary, b"boundary=" + new, 1).replace(
        b'boundary="' + boundary + b'"', b'boundary="' + new + b'"', 1
    )


def nest_in_itself(draw: st.DrawFn, raw: bytes) -> bytes:
    """A part that is a multipart with the same boundary as its parent, or another
    level's delimiter inside a part."""
    boundary = _some_boundary(draw, raw)
    lines = _delimiters(raw, boundary) if boundary else []
    if not lines or boundary is None:
        return raw
    nl = newline(raw)
    inner_boundary = draw(st.sampled_from([boundary, *boundaries(raw)]))
    part = (
        b'Content-Type: multipart/mixed; boundary="'
        + inner_boundary
        + b'"'
        + nl
        + nl
        + b"--"
        + inner_boundary
        + nl
        + b"Content-Type: text/plain"
        + nl
        + nl
        + b"inner"
        + nl
        + draw(st.sampled_from([b"", b"--" + inner_boundary + b"--" + nl]))
    )
    _, end = draw(st.sampled_from(lines))
    return raw[:end] + part + raw[end:]


def delimiter_in_body(draw: st.DrawFn, raw: bytes) -> bytes:
    """Lines that look like delimiters, of this mail's boundaries or not, amid the body."""
    boundary = _some_boundary(draw, raw) or b"b"
    line = b"--" + boundary + draw(st.sampled_from([b"", b"--", b"x", b"  ", b"\t--"]))
    at = line_start(draw, raw)
    return raw[:at] + line + newline(raw) + raw[at:]


def swap_transfer_encoding(draw: st.DrawFn, raw: bytes) -> bytes:
    """A part, or the mail, declares a transfer encoding its body is not in (or a second
    one)."""
    encoding = draw(st.sampled_from(ENCODINGS))
    line = b"Content-Transfer-Encoding: " + encoding + newline(raw)
    spans = [
        s for s in part_header_spans(raw) if raw[s[0] : s[0] + 26].lower().endswith(b"encoding:")
    ]
    if spans and draw(st.booleans()):
        start, end = draw(st.sampled_from(spans))
        return raw[:start] + line + raw[end:]
    spans = part_header_spans(raw) or [(0, 0)]
    start, _ = draw(st.sampled_from(spans))
    return raw[:start] + line + raw[start:]


def corrupt_base64(draw: st.DrawFn, raw: bytes) -> bytes:
    """Base64 lines with bad characters, padding in the middle or gone, odd lengths."""
    lines = list(_BASE64_LINE.finditer(raw))
    if not lines:
        return raw
    m = draw(st.sampled_from(lines))
    line = m.group().rstrip(b"\r")
    edit = draw(st.sampled_from(["junk", "pad", "unpad", "cut", "space"]))
    at = draw(st.integers(0, len(line)))
    junk = draw(st.sampled_from([b"!", b"\x00", b"\xff", b"-", b"=", b"==", b"*", b"\t"]))
    new = {
        "junk": line[:at] + junk + line[at:],
        "pad": line[:at] + b"=" + line[at:],
        "unpad": line.rstrip(b"="),
        "cut": line[:at],
        "space": line[:at] + b" " + line[at:],
    }[edit]
    return raw[: m.start()] + new + raw[m.start() + len(line) :]


def corrupt_quoted_printable(draw: st.DrawFn, raw: bytes) -> bytes:
    """Broken escapes: a lone ``=``, ``=ZZ``, ``=`` at the very end, soft breaks in a row."""
    junk = draw(st.sampled_from([*b"= =Z =ZZ =00 =e9 ==".split(), b"=\r\n=\r\n", b"=\n"]))
    at = draw(st.sampled_from([len(raw), position(draw, raw)]))
    return raw[:at] + junk + raw[at:]


def uuencoded_block(draw: st.DrawFn, raw: bytes) -> bytes:
    """A uuencoded file, whole or broken, in a text body."""
    nl = newline(raw)
    name = draw(st.sampled_from([b"a.txt", b"", b"x.exe", b"../x", b"\xff.bin", b"a b c"]))
    lines = draw(
        st.sampled_from(
            [[b"#86)C", b"`"], [b"M" + b"!" * 60] * 3, [b"\xff\xfe"], [b"`"] * 3, [b"zzzz"], []]
        )
    )
    end = draw(st.sampled_from([b"end", b"", b"end junk"]))
    mode = draw(st.sampled_from([b"644", b"0", b"999999999999", b"x"]))
    block = nl.join([b"begin " + mode + b" " + name, *lines, end]) + nl
    at = line_start(draw, raw)
    return raw[:at] + block + raw[at:]


MUTATIONS: list[Mutation] = [
    drop_delimiters,
    repeat_delimiter,
    truncate_in_part,
    bad_boundary_parameter,
    nest_in_itself,
    delimiter_in_body,
    swap_transfer_encoding,
    corrupt_base64,
    corrupt_quoted_printable,
    uuencoded_block,
]
