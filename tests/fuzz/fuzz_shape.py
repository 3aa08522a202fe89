"""Where things are in a raw mail, found loosely: the mutations must cope with any bytes,
including what earlier mutations left."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from hypothesis import strategies as st

Mutation = Callable[[st.DrawFn, bytes], bytes]

_BLANK = re.compile(rb"\r?\n\r?\n")
_FIELD_START = re.compile(rb"^[^ \t\r\n]", re.M)
_BOUNDARY = re.compile(rb'boundary\s*=\s*"?([^";\r\n]+)"?', re.I)
_DELIMITER_LINE = re.compile(rb"^--[^\r\n]+\r?\n", re.M)
_PART_HEADER = re.compile(rb"^content-(?:type|transfer-encoding|disposition):", re.I | re.M)


def newline(raw: bytes) -> bytes:
    """The line ending the mail mostly uses."""
    return b"\r\n" if raw.count(b"\r\n") * 2 > raw.count(b"\n") else b"\n"


def split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """Header block, the blank line after it, and the body."""
    blank = _BLANK.search(raw)
    if blank is None:
        return raw, b"", b""
    return raw[: blank.start()], raw[blank.start() : blank.end()], raw[blank.end() :]


def header_block(draw: st.DrawFn, raw: bytes) -> tuple[int, int]:
    """Start and end of the mail's header block, or of a part's (the lines after a
    delimiter line up to the next blank line)."""
    starts = [0] + [m.end() for m in _DELIMITER_LINE.finditer(raw)]
    start = draw(st.sampled_from(starts))
    blank = _BLANK.search(raw, start)
    return start, len(raw) if blank is None else blank.start()


def fields(head: bytes) -> list[bytes]:
    """The header block cut at each line that starts a field (folded lines stay with it)."""
    starts = [m.start() for m in _FIELD_START.finditer(head)] or [0]
    starts[0] = 0
    return [head[a:b] for a, b in zip(starts, [*starts[1:], len(head)], strict=True)]


def boundaries(raw: bytes) -> list[bytes]:
    return sorted(set(_BOUNDARY.findall(raw)))


def part_header_spans(raw: bytes) -> list[tuple[int, int]]:
    """Start and end of every Content-* field line, at the top and in parts."""
    spans = []
    for m in _PART_HEADER.finditer(raw):
        end = raw.find(b"\n", m.start())
        spans.append((m.start(), len(raw) if end < 0 else end + 1))
    return spans


def position(draw: st.DrawFn, raw: bytes) -> int:
    return draw(st.integers(0, len(raw)))


def line_start(draw: st.DrawFn, raw: bytes) -> int:
    """The start of a line somewhere in ``raw``."""
    at = position(draw, raw)
    return raw.rfind(b"\n", 0, at) + 1


def insert_at(raw: bytes, at: int, data: bytes) -> bytes:
    return raw[:at] + data + raw[at:]


def seeded_bytes(seed: int, size: int, kind: str) -> bytes:
    """``size`` bytes of one ``kind``, made from ``seed`` rather than drawn, since hypothesis
    draws only a few kilobytes per example."""
    if kind == "zeros":
        return bytes(size)
    if kind == "text":
        line = b"All work and no play makes Jack a dull boy. %d\n" % seed
        return (line * (size // len(line) + 1))[:size]
    return random.Random(seed).randbytes(size)
