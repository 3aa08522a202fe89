"""Byte-level mutations, blind to the mail's structure."""

from __future__ import annotations

from fuzz_shape import Mutation, position
from hypothesis import strategies as st

TOKENS = [
    *b"""=? ?= -- ; " *0*= : boundary= charset= ( ) < > @ \\ == begin""".split(),
    *[b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"\xff", b"\x00", b"\t", b"=\r\n", b"begin 644 "],
    b"Content-Type: multipart/mixed; boundary=x\r\n",
]


def flip_bytes(draw: st.DrawFn, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 20)) if data else 0):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def insert_tokens(draw: st.DrawFn, raw: bytes) -> bytes:
    for _ in range(draw(st.integers(1, 10))):
        at = position(draw, raw)
        raw = raw[:at] + draw(st.sampled_from(TOKENS) | st.binary(max_size=8)) + raw[at:]
    return raw


def delete_span(draw: st.DrawFn, raw: bytes) -> bytes:
    start = position(draw, raw)
    return raw[:start] + raw[draw(st.integers(start, len(raw))) :]


def duplicate_span(draw: st.DrawFn, raw: bytes) -> bytes:
    start = position(draw, raw)
    end = draw(st.integers(start, min(len(raw), start + 5000)))
    times = draw(st.integers(1, 50))
    return raw[:end] + raw[start:end] * times + raw[end:]


def truncate(draw: st.DrawFn, raw: bytes) -> bytes:
    return raw[: position(draw, raw)]


def line_endings(draw: st.DrawFn, raw: bytes) -> bytes:
    """All CRLF, all LF, all bare CR, or a mix."""
    lf = raw.replace(b"\r\n", b"\n")
    mixed = lf.replace(b"\n\n", b"\r\n\n")
    return draw(st.sampled_from([lf, lf.replace(b"\n", b"\r\n"), lf.replace(b"\n", b"\r"), mixed]))


MUTATIONS: list[Mutation] = [
    flip_bytes,
    insert_tokens,
    delete_span,
    duplicate_span,
    truncate,
    line_endings,
]
