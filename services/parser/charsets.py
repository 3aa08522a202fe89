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
from collections.abc import Sequence
from dataclasses import dataclass
from email.charset import ALIASES

from charset_normalizer import from_bytes

from services.parser import iso2022jp

# Labels mail programs write that Python spells differently or not at all (the WHATWG
# Encoding labels and what Outlook, Lotus Notes and old webmails write).
_LABELS = {
    "iso-8859-8-i": "iso-8859-8", "iso-8859-6-i": "iso-8859-6", "x-sjis": "cp932",
    "windows-31j": "cp932", "sjis": "cp932", "ms_kanji": "cp932", "csshiftjis": "cp932",
    "iso-gb2312": "gb18030", "gb_2312-80": "gb18030", "chinese": "gb18030", "cn-gb": "gb18030",
    "csgb2312": "gb18030", "euc-cn": "gb18030", "x-euc-cn": "gb18030", "x-gbk": "gb18030",
    "cn-big5": "big5", "x-x-big5": "big5", "csbig5": "big5", "ks_c_5601": "cp949",
    "ksc5601": "cp949", "ksc_5601": "cp949", "x-windows-949": "cp949", "windows-949": "cp949",
    "windows-874": "cp874", "x-windows-874": "cp874",
    "x-unicode20utf8": "utf-8", "unicode-1-1-utf-8": "utf-8", "unicode-2-0-utf-8": "utf-8",
    "x-unicode-2-0-utf-7": "utf-7", "unicode-2-0-utf-7": "utf-7", "unicode": "utf-16",
    "iso-10646-ucs-2": "utf-16-be", "x-mac-roman": "mac-roman", "x-mac-ce": "mac-latin2",
    "x-mac-cyrillic": "mac-cyrillic", "x-mac-greek": "mac-greek", "x-mac-turkish": "mac-turkish",
    "x-cp1250": "cp1250", "x-cp1251": "cp1251", "x-cp1252": "cp1252", "x-ansi": "cp1252",
    "ansi": "cp1252", "x-user-defined": "cp1252", "x-euc-jp": "euc_jp", "x-euc": "euc_jp",
}  # fmt: skip
# What a label may carry around a known name: "x-" and "iso-" prefixes, a "windows-NNN" or
# "cp-NNN" spelling of cpNNN.
_LABEL_PREFIX = re.compile(r"^(?:x-)+|^iso[-_](?=[a-z])")
_WINDOWS = re.compile(r"^(?:windows|win|cp|ms|ibm)[-_ ]?(\d{3,4})$")
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
    "iso2022_jp": "iso2022_jp_2",  # the JIS X 0212 and Korean sets some senders use
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
_EIGHT_BIT_RUN = re.compile(rb"[\x80-\xff]+")
# Fewer 8-bit bytes than this in a text are checked as header bytes are (see header_codec).
_FEW_BYTES = 64
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")
# ISO-2022 shifts into a multi-byte set (JIS X 0208/0212, GB 2312, KS C 5601).
_ISO2022_ESCAPE = re.compile(rb"\x1b\$(?:[@AB]|\(D|\)C)")


@dataclass(frozen=True)
class Decoded:
    """Text read from bytes; ``repair`` says what was done when the declared charset failed."""

    text: str
    repair: str | None = None


def lookup(label: str | None) -> str | None:
    """Python's codec name for a MIME charset label; None when the label is unknown.

    ``x-gbk``, ``iso-gb2312`` and ``windows-874`` are known by their usual names.
    """
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    for candidate in _spellings(name):
        try:
            codec = codecs.lookup(_LABELS.get(candidate, ALIASES.get(candidate, candidate)))
        except (LookupError, ValueError):
            continue
        if _is_text(codec):
            return codec.name
    return None


def _spellings(name: str) -> list[str]:
    bare = _LABEL_PREFIX.sub("", name)
    windows = _WINDOWS.match(bare)
    return [name, bare, *([f"cp{windows[1]}"] if windows else [])]


def _is_text(codec: codecs.CodecInfo) -> bool:
    # codecs.lookup also knows bytes-to-bytes codecs ("base64", "zlib", "rot13") and text
    # codecs that are no charset (Python escapes, IDNA); a label naming one is unknown.
    return getattr(codec, "_is_text_encoding", True) and codec.name not in _NOT_CHARSETS


_NOT_CHARSETS = frozenset(
    {"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined", "charmap"}
)


def decode_text(
    data: bytes, label: str | None, where: str, elsewhere: Sequence[str] = ()
) -> Decoded:
    """Read body bytes labelled ``label`` (None: no charset declared) from part ``where``.

    ``elsewhere`` are the charsets the mail declares for its other parts and its encoded
    words: a part without a (known) charset is read in the first of them that fits, since
    one mail program wrote them all, before detection is tried.
    """
    codec = lookup(label or "us-ascii")
    text = _declared(data, codec)
    if text is not None:
        return Decoded(text)
    found = _hinted(data, elsewhere) if codec is None or label is None else None
    found = found or _repaired(data)
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
    as UTF-8 mislabelled, and refused here. ISO-2022-JP is 7-bit, so it reads as ASCII or
    UTF-8 with escape sequences in it: those are taken as ISO-2022-JP mislabelled.
    """
    if codec in (None, "ascii", "utf-8") and _ISO2022_ESCAPE.search(data):
        return None
    if codec is None:
        return _strict(data, "ascii")  # ASCII reads alike in every charset mail uses
    if _SINGLE_BYTE.match(codec) and not data.isascii() and _strict(data, "utf-8") is not None:
        return None
    superset = _SUPERSETS.get(codec)
    text = _strict(data, superset) if superset else None
    text = text if text is not None else _strict(data, codec)
    if text is None and codec.startswith("iso2022_jp"):
        text = iso2022jp.decode(data)  # with Windows characters (①, ㈱) in it
    return text


def _hinted(data: bytes, elsewhere: Sequence[str]) -> tuple[str, str, str] | None:
    if _ISO2022_ESCAPE.search(data) or _strict(data, "utf-8") is not None:
        return None  # these are told apart surely; see _repaired
    for label in elsewhere:
        codec = lookup(label)
        if codec is None or codec in ("ascii", "utf-8") or not _ascii_superset(codec):
            continue
        text = _strict(data, _SUPERSETS.get(codec, codec))
        if text is not None:
            return text, _SUPERSETS.get(codec, codec), " (the charset the mail declares elsewhere)"
    return None


def _repaired(data: bytes) -> tuple[str, str, str] | None:
    """Text, the codec used and a detail, or None when nothing fits."""
    if _ISO2022_ESCAPE.search(data):
        for codec in ("iso2022_jp_2", "iso2022_jp_ext", "iso2022_kr"):
            text = _strict(data, codec)
            if text is not None:
                return text, codec, ""
        text = iso2022jp.decode(data)
        if text is not None:
            return text, "cp50220", ""
    text = _strict(data, "utf-8")
    if text is not None:
        return text, "utf-8", ""
    mostly = _mostly_utf8(data)
    if mostly is not None:
        return mostly
    found = _detected(data)
    runs = _EIGHT_BIT_RUN.findall(data)
    if not found or sum(map(len, runs)) >= _FEW_BYTES:
        return found
    # A guess from a few bytes is checked: detection reads the four Latin-1 letters of
    # "äöüß ad asd" as two hanzi, or as Mac Roman symbols. A multi-byte guess must be made
    # of common characters (as in header_codec); a single-byte one must read as many
    # letters as cp1252 does.
    if _SINGLE_BYTE.match(found[1]):
        latin = _strict(data, "cp1252")
        if latin is not None and _letters(latin) > _letters(found[0]):
            return latin, "cp1252", ""
        return found
    codec = _east_asian(runs, found[1]) or "cp1252"
    return data.decode(codec, errors="replace"), codec, ""


def _letters(text: str) -> int:
    return sum(1 for char in text if ord(char) > 0x7F and char.isalpha())


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


def header_codec(runs: list[bytes], declared: list[str]) -> str:
    """The charset to read raw 8-bit header bytes in (``runs``, each not valid UTF-8).

    Mail programs write such headers in the charset of the mail's text: the first charset
    the mail declares that reads every run is taken. Else detection over all the runs
    together, where a few words of Chinese, Japanese or Korean are told apart by the
    common characters they are made of (too little text for charset-normalizer). Else
    cp1252.
    """
    # A single-byte charset reads any bytes: bytes made of common Chinese, Japanese or
    # Korean characters are not taken in one (a Latin-1 text part under a GBK header).
    east_asian = _east_asian(runs, None)
    for label in declared:
        codec = lookup(label)
        if codec is None or codec in ("ascii", "utf-8") or not _ascii_superset(codec):
            continue  # header bytes mixed with ASCII fields are in an ASCII superset
        codec = _SUPERSETS.get(codec, codec)
        if east_asian is not None and _SINGLE_BYTE.match(codec):
            continue
        if all(_strict(run, codec) is not None for run in runs):
            return codec
    found = _detected(b" ".join(runs))
    detected = found[1] if found and all(_strict(r, found[1]) is not None for r in runs) else None
    east_asian = _east_asian(runs, detected)
    if east_asian is not None:
        return east_asian
    # A guess of a multi-byte charset that is not made of its common characters is a guess
    # from too few bytes.
    return detected if detected is not None and _SINGLE_BYTE.match(detected) else "cp1252"


def _ascii_superset(codec: str) -> bool:
    try:
        return "Re: A-z".encode(codec) == b"Re: A-z"
    except (UnicodeError, LookupError):
        return False


# The double-byte characters in common use of each East Asian charset, as (lead, trail) byte
# ranges: GB 2312 level-1 hanzi and punctuation, Big5 frequent characters, KS X 1001 Hangul,
# Shift_JIS kana, symbols and level-1 kanji.
_COMMON: dict[str, list[tuple[range, range]]] = {
    "gb18030": [(range(0xB0, 0xD8), range(0xA1, 0xFF)), (range(0xA1, 0xA4), range(0xA1, 0xFF))],
    "big5": [(range(0xA4, 0xC7), range(0x40, 0xFF)), (range(0xA1, 0xA2), range(0x40, 0xFF))],
    "cp949": [(range(0xB0, 0xC9), range(0xA1, 0xFF)), (range(0xA1, 0xA4), range(0xA1, 0xFF))],
    "cp932": [(range(0x81, 0x84), range(0x40, 0xFD)), (range(0x88, 0x99), range(0x40, 0xFD))],
}
_COMMON_SHARE = 0.9


def _east_asian(runs: list[bytes], detected: str | None) -> str | None:
    """The East Asian charset in which nearly all of ``runs`` are common characters; on a
    tie, the one detected. None when no such charset reads them so."""
    shares = {
        codec: _common_share(runs, ranges)
        for codec, ranges in _COMMON.items()
        if all(_strict(run, codec) is not None for run in runs)
    }
    best = max(shares.values(), default=0.0)
    if best < _COMMON_SHARE:
        return None
    tied = [codec for codec, share in shares.items() if share == best]
    return detected if detected in tied else tied[0]


def _common_share(runs: list[bytes], ranges: list[tuple[range, range]]) -> float:
    common = total = 0
    for run in runs:
        i = 0
        while i < len(run):
            if run[i] < 0x80:
                i += 1
                continue
            pair = run[i : i + 2]
            total += 1
            common += len(pair) == 2 and any(pair[0] in lo and pair[1] in hi for lo, hi in ranges)
            i += 2
    return common / total if total else 0.0
