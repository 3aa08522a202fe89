"""ISO-2022-JP as Outlook and other Windows programs write it (Microsoft's CP50220).

Windows mail programs put characters of the Windows Japanese charset (cp932) into
ISO-2022-JP text: circled numbers (①), Roman numerals (Ⅲ), "㈱", IBM kanji. Python's
ISO-2022-JP codecs refuse them. Each JIS X 0208 byte pair is the same character as a
Shift_JIS pair by a fixed arithmetic (JIS X 0208 Appendix 1), and cp932 holds those extra
characters at the pairs that follow from their JIS rows, so the text is rewritten as cp932
bytes and decoded as such.
"""

from __future__ import annotations

import re

_ESCAPE = re.compile(rb"\x1b(\$[@B]|\$\(B|\([BJI])")
_DOUBLE_BYTE = (b"$@", b"$B", b"$(B")
_KATAKANA = b"(I"


def decode(data: bytes) -> str | None:
    """The text of ISO-2022-JP ``data`` read as cp932; None when it is no such text."""
    out = bytearray()
    mode = b"(B"
    position = 0
    for match in [*_ESCAPE.finditer(data), None]:
        end = match.start() if match else len(data)
        segment = data[position:end]
        if mode in _DOUBLE_BYTE:
            converted = _shift_jis(segment)
            if converted is None:
                return None
            out += converted
        elif mode == _KATAKANA:
            out += bytes(b | 0x80 for b in segment)
        else:
            out += segment
        if match:
            mode, position = match.group(1), match.end()
    try:
        return out.decode("cp932")
    except UnicodeDecodeError:
        return None


def _shift_jis(segment: bytes) -> bytes | None:
    # Line breaks may stand between pairs (a line ends in double-byte mode); they pass.
    out = bytearray()
    pending: int | None = None
    for byte in segment:
        if pending is None and byte in b"\r\n":
            out.append(byte)
        elif not 0x21 <= byte <= 0x7E:
            return None
        elif pending is None:
            pending = byte
        else:
            out += _pair(pending, byte)
            pending = None
    return None if pending is not None else bytes(out)


def _pair(first: int, second: int) -> bytes:
    lead = ((first + 1) >> 1) + (0x70 if first <= 0x5E else 0xB0)
    if first % 2:
        trail = second + (0x1F if second <= 0x5F else 0x20)
    else:
        trail = second + 0x7E
    return bytes((lead, trail))
