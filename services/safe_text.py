"""Text from mail and mail servers, made safe to show on a terminal and to save as JSON.

A subject, name or file name is chosen by whoever sent the mail. Control characters in it
(ESC sequences, backspace, carriage return) can recolour, rewrite or hide what a terminal
shows, and bidi overrides and zero-width characters make ``invoice\\u202efdp.exe`` read as
``invoiceexe.pdf``. Every human-readable output shows them as escapes instead, and JSON
output writes them as ``\\uXXXX``, which reads back as the same text.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from typing import Any

#: Controls (C0, DEL, C1), format characters (bidi marks, overrides and isolates, zero-width
#: characters, tags), surrogates (undecodable bytes) and line and paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def _unsafe_class() -> str:
    """Every unsafe code point, as one regular-expression class of ranges."""
    ranges: list[tuple[int, int]] = []
    for code in range(0x110000):
        if _unsafe(chr(code)):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return "[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges) + "]"


@functools.cache
def _unsafe_pattern() -> re.Pattern[str]:
    # Built on first use, not at import: going over every code point takes a good part of
    # a second, which a worker that never shows text should not pay at each start.
    return re.compile(_unsafe_class())


def _escape(char: str) -> str:
    code = ord(char)
    if char in _SHORT:
        return _SHORT[char]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shown(text: str, *, keep_lines: bool = False) -> str:
    """``text`` with every control, bidi, zero-width and separator character escaped
    (``\\x1b``, ``\\u202e``); ``keep_lines`` keeps line breaks and tabs, for multi-line text."""
    if keep_lines:
        return _unsafe_pattern().sub(lambda m: m[0] if m[0] in "\n\t" else _escape(m[0]), text)
    return _unsafe_pattern().sub(lambda m: _escape(m[0]), text)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON spells characters beyond the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_text(data: Any) -> str:
    """``data`` as indented JSON; readable text stays readable, unsafe characters are
    ``\\uXXXX`` escapes (they only occur inside strings, so escaping them keeps the JSON valid)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    # json.dumps escapes line breaks inside strings; the ones left are the indentation's.
    return _unsafe_pattern().sub(lambda m: m[0] if m[0] == "\n" else _json_escape(m[0]), text)
