"""Charsets of body text: the declared one when it fits, else a repaired reading.

Mail often declares the wrong charset (us-ascii or utf-8 over latin-1 or cp1251 bytes), none
at all, or one Python does not know (``x-unknown``). ``decode_text`` reads the bytes in the
declared charset when they are valid in it, and otherwise repairs the reading: UTF-8 when the
bytes are (nearly all) UTF-8, else what charset-normalizer detects among the charsets that
mail uses. Every repair returns a note saying what was declared and what was used.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from email.charset import ALIASES

from charset_normalizer import from_bytes

# Labels mail programs write that Python spells differently or not at all.
_LABELS = {"iso-8859-8-i": "iso-8859-8", "iso-8859-6-i": "iso-8859-6", "x-sjis": "cp932"}
# Labels read as their superset, as web browsers do (WHATWG Encoding): senders that declare
# the base charset use the superset's extra characters.
_SUPERSETS = {
    "iso8859-1": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "iso8859-9": "cp1254",
    "tis-620": "cp874",
}
# Single-byte charsets read any bytes; valid multi-byte UTF-8 in them is UTF-8 mislabelled.
_SINGLE_BYTE = re.compile(r"^(iso8859-|cp12|cp8|cp4|koi8-|mac-|latin|ascii)")
# Candidates for detection: what mail is written in. Fewer candidates, fewer wrong guesses.
_MAIL_CHARSETS = [
    "utf_8", "cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257",
    "cp1258", "koi8_r", "koi8_u", "iso8859_2", "iso8859_5", "iso8859_7", "iso8859_15",
    "mac_roman", "cp874", "gb18030", "big5", "cp932", "euc_jp", "iso2022_jp", "cp949",
    "cp437", "cp850", "cp866",
]  # fmt: skip
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")


@dataclass(frozen=True)
class Decoded:
    """Text read from bytes; ``repair`` says what was done when the declared charset failed."""

    text: str
    repair: str | None = None


def lookup(label: str | None) -> str | None:
    """Python's codec name for a MIME charset label; None when the label is unknown."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = _LABELS.get(name, ALIASES.get(name, name))
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):
        return None


def decode_text(data: bytes, label: str | None, where: str) -> Decoded:
    """Read body bytes labelled ``label`` (None: no charset declared) from part ``where``."""
    codec = lookup(label or "us-ascii")
    text = _declared(data, codec)
    if text is not None:
        return Decoded(text)
    found = _repaired(data)
    if found is not None:
        return Decoded(found[0], _said(label, where, found[1]) + found[2])
    fallback = codec or "utf-8"
    return Decoded(
        data.decode(fallback, errors="replace"),
        f"charset: {where} bytes are not valid {label or 'us-ascii'}, and no charset fits them;"
        f" decoded as {fallback!r} with replacement characters",
    )


def _declared(data: bytes, codec: str | None) -> str | None:
    """The text in the declared charset (or its superset); None when it does not fit.

    A single-byte charset fits any bytes, so valid UTF-8 with multi-byte sequences is taken
    as UTF-8 mislabelled, and refused here.
    """
    if codec is None:
        return _strict(data, "ascii")  # ASCII reads alike in every charset mail uses
    if _SINGLE_BYTE.match(codec) and not data.isascii() and _strict(data, "utf-8") is not None:
        return None
    superset = _SUPERSETS.get(codec)
    text = _strict(data, superset) if superset else None
    return text if text is not None else _strict(data, codec)


def _repaired(data: bytes) -> tuple[str, str, str] | None:
    """Text, the codec used and a detail, or None when nothing fits."""
    text = _strict(data, "utf-8")
    if text is not None:
        return text, "utf-8", ""
    mostly = _mostly_utf8(data)
    if mostly is not None:
        return mostly
    return _detected(data)


def _mostly_utf8(data: bytes) -> tuple[str, str, str] | None:
    """UTF-8 with a few stray bytes (a pasted signature, a cut line) stays UTF-8."""
    text = data.decode("utf-8", errors="replace")
    invalid = text.count("\ufffd") - data.count("\ufffd".encode())
    valid = sum(1 for _ in _UTF8_SEQUENCE.finditer(data))
    if valid == 0 or invalid > valid:
        return None
    return text, "utf-8", f" ({invalid} invalid byte{'s' if invalid > 1 else ''} replaced)"


def _detected(data: bytes) -> tuple[str, str, str] | None:
    try:
        best = from_bytes(data, cp_isolation=_MAIL_CHARSETS).best()
    except Exception:  # detection is a best effort; the caller falls back
        return None
    if best is None:
        return None
    text = str(best)
    # Detection cannot tell cp1252 from a sibling that reads these bytes alike; the widest
    # used (cp1252) is the least surprising name.
    if best.encoding != "cp1252" and _strict(data, "cp1252") == text:
        return text, "cp1252", ""
    return text, codecs.lookup(best.encoding).name, ""


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (LookupError, ValueError):  # not valid in it, or not a text codec at all
        return None


def _said(label: str | None, where: str, used: str) -> str:
    if label is None:
        return f"charset: {where} declared no charset but decoded as {used!r}"
    if lookup(label) is None:
        return f"charset: {where} declared unknown charset {label!r}; decoded as {used!r}"
    return f"charset: {where} declared {label!r} but decoded as {used!r}"
