"""Header text: RFC 2047 encoded words, RFC 2231 parameters and raw 8-bit header bytes.

Pure functions over header strings as the stdlib hands them over (raw 8-bit bytes appear as
lone surrogates). Every decoder here is lenient: real mail breaks each of these standards,
and a header that cannot be decoded exactly is still read as well as it can be.
"""

from __future__ import annotations

import binascii
import re
from urllib.parse import unquote_to_bytes

from services.parser.charsets import lookup

# An encoded word, also a broken one: no closing "?=" (it then ends at white space or at
# the end of the value), and a charset with an RFC 2231 language ("utf-8*en").
_ENCODED_WORD = re.compile(
    r"=\?(?P<charset>[^?\s*]+)(?:\*[^?\s]*)?\?(?P<encoding>[QqBb])\?"
    r"(?P<text>[^?\s]*)(?:\?=|\?(?=\s|$)|(?=\s|$))"
)
_ONLY_SPACE = re.compile(r"[ \t\r\n]*")
_SURROGATES = re.compile("[\ud800-\udfff]+")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
# ``name="value"``, ``name=value``, ``name*=charset'lang'pct`` and ``name*0*=...`` sections.
_PARAM = re.compile(
    r";\s*(?P<name>[^\s=;*]+)(?:\*(?P<section>\d+))?(?P<extended>\*)?\s*=\s*"
    r'(?P<value>"(?:[^"\\]|\\.)*"?|[^;]*)',
    re.DOTALL,
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


def decode_words(value: str, notes: list[str] | None = None, where: str = "header") -> str:
    """``value`` with its RFC 2047 encoded words decoded, raw 8-bit bytes read as text.

    Adjacent encoded words in one charset are decoded as one byte string, so a character
    split across two words (as some mailers write them) comes out whole. A word in an unknown
    charset is read as UTF-8 or cp1252, and noted in ``notes`` under ``where``.
    """
    out: list[str] = []
    run: list[re.Match[str]] = []
    position = 0
    for word in _ENCODED_WORD.finditer(value):
        between = value[position : word.start()]
        adjacent = bool(run) and _ONLY_SPACE.fullmatch(between) is not None
        if run and not (adjacent and _kind(run[0]) == _kind(word)):
            out.append(_decode_run(run, notes, where))
            run = []
        if not adjacent:  # RFC 2047 §6.2: white space between two encoded words is dropped
            out.append(text_of(between))
        run.append(word)
        position = word.end()
    if run:
        out.append(_decode_run(run, notes, where))
    out.append(text_of(value[position:]))
    return "".join(out)


def _kind(word: re.Match[str]) -> tuple[str, str]:
    return word["charset"].lower(), word["encoding"].upper()


def _decode_run(run: list[re.Match[str]], notes: list[str] | None, where: str) -> str:
    charset, encoding = _kind(run[0])
    texts = [w["text"].encode("ascii", "surrogateescape") for w in run]
    data = _from_base64(texts) if encoding == "B" else b"".join(map(_from_q, texts))
    return decode_bytes(data, charset, notes, where)


def _from_q(text: bytes) -> bytes:
    return _QP_ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), text.replace(b"_", b" "))


def _from_base64(texts: list[bytes]) -> bytes:
    """Words decoded in turn; a word that ends mid-quantum carries over into the next."""
    decoded, pending = [], b""
    for text in texts:
        pending += _NOT_BASE64.sub(b"", text)
        if b"=" in pending or len(pending) % 4 == 0:  # padding or a whole quantum: complete
            decoded.append(_b64(pending))
            pending = b""
    decoded.append(_b64(pending))
    return b"".join(decoded)


def _b64(data: bytes) -> bytes:
    data = data.replace(b"=", b"")
    data = data[: len(data) - 1] if len(data) % 4 == 1 else data  # one char is no byte
    try:
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except binascii.Error:
        return b""


def decode_bytes(data: bytes, charset: str, notes: list[str] | None, where: str) -> str:
    """``data`` in the declared ``charset``; an unknown or wrong one is read leniently."""
    codec = lookup(charset)
    if codec is not None:
        try:
            return data.decode(codec)
        except (LookupError, ValueError):  # not valid in it, or not a text codec at all
            pass
    if notes is not None:
        notes.append(f"{where}: text in unknown or wrong charset {charset!r}; read leniently")
    return bytes_as_text(data)


def bytes_as_text(data: bytes) -> str:
    """Bytes of unknown charset as text: UTF-8 when they are valid UTF-8, else cp1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def text_of(value: str) -> str:
    """``value`` without lone surrogates: raw 8-bit header bytes decoded as UTF-8 or cp1252."""
    return _SURROGATES.sub(_decode_8bit, value).replace("\x00", "")


def has_raw_8bit(value: str) -> bool:
    """Whether ``value`` holds raw 8-bit header bytes that are not valid UTF-8."""
    return any(_not_utf8(m.group()) for m in _SURROGATES.finditer(value))


def _not_utf8(run: str) -> bool:
    try:
        run.encode("utf-8", "surrogateescape").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return True
    return False


def _decode_8bit(match: re.Match[str]) -> str:
    try:
        data = match.group().encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates that never were bytes
        return "\ufffd"
    return bytes_as_text(data)


def parameter(value: str, name: str, notes: list[str] | None = None) -> str | None:
    """The MIME parameter ``name`` of a raw header value, RFC 2231 sections joined and decoded.

    ``filename*0*=utf-8'en'R%C3%A9; filename*1=sum.pdf`` gives ``"Résumé.pdf"``; a plain
    ``name="=?utf-8?q?...?="`` has its encoded words decoded (not standard, but common).
    """
    sections = _sections(value, name.lower())
    if not sections:
        return None
    if not any(extended for extended, _ in sections):
        return decode_words("".join(v for _, v in sections), notes, f"parameter {name}")
    return _decode_extended(sections, notes, f"parameter {name}")


def _sections(value: str, name: str) -> list[tuple[bool, str]]:
    found: dict[int, tuple[bool, str]] = {}
    for match in _PARAM.finditer(";" + value.split(";", 1)[-1] if ";" in value else ""):
        if match["name"].lower() == name:
            section = int(match["section"]) if match["section"] else -1
            found.setdefault(section, (bool(match["extended"]), _unquote(match["value"])))
    if -1 in found and len(found) > 1:
        del found[-1]  # both forms present: the sections are the full name (RFC 2231 §4.1)
    return [found[k] for k in sorted(found)]


def _unquote(value: str) -> str:
    value = value.strip()
    if value.startswith('"'):
        return _QUOTED_PAIR.sub(r"\1", value[1:].removesuffix('"'))
    return value


def _decode_extended(sections: list[tuple[bool, str]], notes: list[str] | None, where: str) -> str:
    first_extended, first = sections[0]
    charset = "us-ascii"
    if first_extended and first.count("'") >= 2:
        charset, _language, rest = first.split("'", 2)
        sections = [(True, rest), *sections[1:]]
    raw = [(ext, v.encode("utf-8", "surrogateescape")) for ext, v in sections]
    data = b"".join(unquote_to_bytes(v) if ext else v for ext, v in raw)
    return decode_bytes(data, charset or "us-ascii", notes, where)
