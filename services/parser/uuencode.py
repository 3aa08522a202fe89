"""uuencoded files: ``begin 644 name`` blocks in text bodies and ``x-uuencode`` parts.

Old mail programs (and some scripts still) put files into the text as uuencoded blocks. A
block is only taken when it has its ``end`` line and every line in it decodes; anything else
stays text.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

_BEGIN = re.compile(rb"^begin[ \t]+[0-7]{3,4}[ \t]+([^\r\n]*?)[ \t]*\r?$", re.MULTILINE)
_END = re.compile(rb"^end[ \t]*(?:\r?\n|\r|$)", re.MULTILINE)


@dataclass(frozen=True)
class UuFile:
    """One decoded block: the name from its ``begin`` line, its bytes, and where it was."""

    name: str
    data: bytes
    start: int
    end: int


def find_files(text: bytes) -> list[UuFile]:
    """Every complete, decodable uuencoded block in ``text``, in order."""
    files: list[UuFile] = []
    position = 0
    while (begin := _BEGIN.search(text, position)) is not None:
        end = _END.search(text, begin.end())
        if end is None:
            break
        data = _decode_lines(text[begin.end() : end.start()])
        if data is not None:
            name = begin[1].decode("utf-8", "replace").strip()
            files.append(UuFile(name, data, begin.start(), end.end()))
        position = end.end() if data is not None else begin.end()
    return files


def without_files(text: bytes, files: list[UuFile]) -> bytes:
    """``text`` with the blocks of ``files`` cut out."""
    kept, position = [], 0
    for found in files:
        kept.append(text[position : found.start])
        position = found.end
    kept.append(text[position:])
    return b"".join(kept)


def decode_part(payload: bytes) -> UuFile | None:
    """The file of an ``x-uuencode`` part; None when the part holds no complete block.

    The part's header already says it is uuencoded, so some senders write only the encoded
    lines, without the ``begin`` and ``end`` lines: those are decoded when every line does.
    """
    files = find_files(payload)
    if files:
        return files[0]
    if _BEGIN.search(payload) is not None:
        return None  # a block that is cut short or damaged
    data = _decode_lines(_END.sub(b"", payload))
    return UuFile("", data, 0, len(payload)) if data else None


def _decode_lines(block: bytes) -> bytes | None:
    decoded = []
    for line in block.splitlines():
        if not line.strip():
            continue
        chunk = _decode_line(line)
        if chunk is None:
            return None
        decoded.append(chunk)
    return b"".join(decoded)


def _decode_line(line: bytes) -> bytes | None:
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:
        # Some encoders pad lines with garbage after the declared length (as the stdlib's
        # retired ``uu`` module also allowed): decode only what the length byte promises.
        length = (((line[0] - 32) & 63) * 4 + 5) // 3
        try:
            return binascii.a2b_uu(line[:length])
        except binascii.Error:
            return None
