"""Header text: RFC 2047 encoded words, RFC 2231 parameters and raw 8-bit header bytes.

Pure functions over header strings as the stdlib hands them over (raw 8-bit bytes appear as
lone surrogates). Every decoder here is lenient: real mail breaks each of these standards,
and a header that cannot be decoded exactly is still read as well as it can be.
"""

from __future__ import annotations

import binascii
import re
from urllib.parse import unquote_to_bytes

from services.parser.charsets import decode_text, lookup

# An encoded word, also a broken one: no closing "?=" (it then ends at white space or at
# the end of the value), and a charset with an RFC 2231 language ("utf-8*en").
# A "?" inside the text that does not close the word is taken as text (unencoded "?" in
# Q words is common).
_ENCODED_WORD = re.compile(
    r"=\?(?P<charset>[^?\s*]+)(?:\*[^?\s]*)?\?(?P<encoding>[QqBb])\?"
    r"(?P<text>[^?\s]*(?:\?(?![=\s]|$)[^?\s]*)*)(?:\?=|\?(?=\s|$)|(?=\s|$))"
)
# A closed word with white space in its text (not allowed, but written): in Q the space is
# text, in B it is nothing.
_SPACED_WORD = re.compile(
    r"(=\?[^?\s*]+(?:\*[^?\s]*)?\?(?P<encoding>[QqBb])\?)(?P<text>[^?]*?\s[^?]*?)\?="
)
_SPACE = re.compile(r"\s+")
# A word's end mark with no word open: what is left of a word broken by a fold or a space.
_STRAY_END = re.compile(r"\?=\s*$")
_ONLY_SPACE = re.compile(r"[ \t\r\n]*")
_SURROGATES = re.compile("[\ud800-\udfff]+")
# Surrogates that stand for no byte (surrogateescape makes U+DC80..U+DCFF only).
_NOT_BYTES = re.compile("[\ud800-\udc7f\udd00-\udfff]+")
# Characters already decoded: neither ASCII nor a raw byte. Kept as a span of their own.
_DECODED = re.compile("([^\x00-\x7f\udc80-\udcff]+)")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
# ``name="value"``, ``name=value``, ``name*=charset'lang'pct`` and ``name*0*=...`` sections.
_PARAM = re.compile(
    r";\s*(?P<name>[^\s=;*]+)(?:\*(?P<section>\d+))?(?P<extended>\*)?\s*=\s*"
    r'(?P<value>"(?:[^"\\]|\\.)*"?|[^;]*)',
    re.DOTALL,
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
# Parameters are looked for in this much of a field: the longest real ones (file names in
# RFC 2231 sections) take a few KB, and a field may be megabytes long and read many times.
_MOST_PARAMETER_TEXT = 64 * 1024


def decode_words(
    value: str, notes: list[str] | None = None, where: str = "header", codec: str | None = None
) -> str:
    """``value`` with its RFC 2047 encoded words decoded, raw 8-bit bytes read as text.

    Adjacent encoded words in one charset are decoded as one byte string, so a character
    split across two words (as some mailers write them) comes out whole. A word in an unknown
    charset is read as UTF-8 or as detected, and noted in ``notes`` under ``where``. Raw 8-bit
    bytes that are not UTF-8 are read in ``codec`` (see ``text_of``). An end mark ``?=``
    left over at the end, from a word a mail program broke, is dropped.
    """
    if "=?" in value:
        value = _without_stray_end(_SPACED_WORD.sub(_unspaced, value))
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
            out.append(text_of(between, codec))
        run.append(word)
        position = word.end()
    if run:
        out.append(_decode_run(run, notes, where))
    out.append(text_of(value[position:], codec))
    return "".join(out)


def _unspaced(word: re.Match[str]) -> str:
    space = "_" if word["encoding"] in "Qq" else ""
    return f"{word[1]}{_SPACE.sub(space, word['text'])}?="


def _without_stray_end(value: str) -> str:
    stray = _STRAY_END.search(value)
    if stray is None or any(w.end() == stray.start() + 2 for w in _ENCODED_WORD.finditer(value)):
        return value  # no "?=" at the end, or it closes a word
    return value[: stray.start()].rstrip()


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
    """``data`` in the declared ``charset``; an unknown or wrong one is read leniently
    (its superset, UTF-8, or the charset detected: see ``charsets.decode_text``)."""
    decoded = decode_text(data, charset, where)
    if (decoded.repair or lookup(charset) is None) and notes is not None:
        notes.append(f"{where}: text in unknown or wrong charset {charset!r}; read leniently")
    return decoded.text


def bytes_as_text(data: bytes) -> str:
    """Bytes of unknown charset as text: UTF-8 when they are valid UTF-8, else cp1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def text_of(value: str, codec: str | None = None) -> str:
    """``value`` without lone surrogates: raw 8-bit header bytes decoded as UTF-8 when they
    are, else in ``codec`` (the mail's header charset), else cp1252.

    The bytes are decoded together with the ASCII around them: the second byte of a
    GBK, Big5 or Shift_JIS character can be an ASCII letter.
    """
    if not _SURROGATES.search(value):
        return value.replace("\x00", "")
    value = _NOT_BYTES.sub("\ufffd", value)
    return "".join(_decoded_span(s, codec) for s in _raw_spans(value)).replace("\x00", "")


def raw_8bit(value: str) -> list[bytes]:
    """The spans of raw header bytes in ``value`` that hold 8-bit bytes and are not UTF-8."""
    if not _SURROGATES.search(value):
        return []
    spans = (_as_bytes(s) for s in _raw_spans(_NOT_BYTES.sub("\ufffd", value)))
    return [span for span in spans if span is not None and _strict_utf8(span) is None]


def encoded_word_charsets(value: str) -> list[str]:
    """The charsets of the encoded words in ``value``."""
    return [word["charset"] for word in _ENCODED_WORD.finditer(value)] if "=?" in value else []


def _raw_spans(value: str) -> list[str]:
    # Split at characters already decoded; the spans between are ASCII and raw bytes.
    return _DECODED.split(value)


def _as_bytes(span: str) -> bytes | None:
    return span.encode("ascii", "surrogateescape") if _SURROGATES.search(span) else None


def _decoded_span(span: str, codec: str | None) -> str:
    data = _as_bytes(span)
    if data is None:
        return span
    text = _strict_utf8(data)
    if text is None and codec is not None:
        text = data.decode(codec, errors="replace")
    return text if text is not None else data.decode("cp1252", errors="replace")


def _strict_utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parameter(value: str, name: str, notes: list[str] | None = None) -> str | None:
    """The MIME parameter ``name`` of a raw header value, RFC 2231 sections joined and decoded.

    ``filename*0*=utf-8'en'R%C3%A9; filename*1=sum.pdf`` gives ``"Résumé.pdf"``; a plain
    ``name="=?utf-8?q?...?="`` has its encoded words decoded (not standard, but common).
    """
    sections = _sections(value[:_MOST_PARAMETER_TEXT], name.lower())
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
