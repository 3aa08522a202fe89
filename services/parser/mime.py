"""MIME walking: raw mail bytes in, plain values out (no I/O, no blob store).

Every lazy read of the stdlib ``email`` package (headers, content) is guarded, because real
mail trips bugs in it (``AttributeError`` on some group addresses). Only a mail whose MIME
structure is unusable is rejected (``MailError``); other problems become defect strings.
"""

from __future__ import annotations

import codecs
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import errors, policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses

from contracts.mail import Address, ParsedMail
from services.parser.html_text import html_to_text
from services.runtime.errors import MailError

# Writes an attached mail back out with its headers as they came, never refolded: refolding
# runs the header parser again, which is where the stdlib's bugs live.
_VERBATIM = policy.default.clone(refold_source="none", linesep="\r\n")
_BOM = b"\xef\xbb\xbf"
# email.feedparser.headerRE (a field, a continuation, an mbox "From " line), plus fields
# with the obsolete space before the colon.
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*[ \t]*:|[ \t]")
_OBS_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]+:")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_MSG_ID = re.compile(r"<[^<>\s]+>")
_SURROGATES = re.compile("[\ud800-\udfff]+")
_UNSAFE_IN_FILENAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]+')
_AUTO_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk"})
_NAMED_BY_TYPE = frozenset({"image", "audio", "video", "text"})
_MAX_DEFECT_TEXT = 120


@dataclass(frozen=True)
class MimeAttachment:
    """One attachment's name, type and decoded bytes."""

    filename: str
    content_type: str
    data: bytes
    inline: bool = False
    content_id: str | None = None


@dataclass(frozen=True)
class MimeMail:
    """What ``parse_mime`` found: ``mail`` holds the header fields and the defects, but no
    claim checks yet; storing the bodies and attachments is the caller's job."""

    mail: ParsedMail
    body_text: str | None
    body_html: str | None
    attachments: list[MimeAttachment]


def parse_mime(raw: bytes) -> MimeMail:
    """Parse one raw RFC 5322 mail.

    Deterministic: the same bytes always give the same result, including the synthetic
    Message-ID (``<first 32 hex of sha256(raw)@mailroom.invalid>``) of a mail without one.

    Raises:
        MailError: the bytes are empty, hold no header, or the MIME structure is unusable
            (a multipart without boundary, or whose boundary never occurs).
    """
    if not raw.strip():
        raise MailError("mail is empty: no bytes to parse")
    try:
        return _parse(raw)
    except RecursionError as exc:  # the stdlib parser recurses once per nesting level
        raise MailError("MIME structure is broken: parts are nested too deeply") from exc


def _parse(raw: bytes) -> MimeMail:
    repaired, notes = _repair_header_block(raw)
    msg = BytesParser(policy=policy.default).parsebytes(repaired)
    if not msg.keys():
        raise MailError("mail has no header: no 'Name: value' line before the first blank line")
    _require_usable_structure(msg)
    text, html, attachments = _contents(msg, notes)
    return MimeMail(_header_fields(msg, raw, notes), text, html, attachments)


def _header_fields(msg: Message, raw: bytes, notes: list[str]) -> ParsedMail:
    message_id = _message_id(msg)
    return ParsedMail(
        message_id=message_id or f"<{hashlib.sha256(raw).hexdigest()[:32]}@mailroom.invalid>",
        message_id_synthetic=not message_id,
        from_=next(iter(_addresses(msg, "From", notes)), None),
        reply_to=_addresses(msg, "Reply-To", notes),
        to=_addresses(msg, "To", notes),
        cc=_addresses(msg, "Cc", notes),
        subject=_subject(msg),
        date=_date(msg, notes),
        in_reply_to=_message_ids(msg, "In-Reply-To"),
        references=_message_ids(msg, "References"),
        auto_reply=is_auto_reply(msg),
        defects=_dedupe(_recorded_defects(msg) + notes),
    )


def _repair_header_block(raw: bytes) -> tuple[bytes, list[str]]:
    """Undo header damage after which the stdlib parser takes all the rest for body text."""
    notes = []
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
        notes.append("header block: leading UTF-8 byte-order mark removed")
    lines = raw.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip(b"\r\n") == b"":
            break
        following = lines[i + 1] if i + 1 < len(lines) else b""
        lines[i], note = _repair_header_line(line, following, first=i == 0)
        notes += [note] if note else []
    return b"".join(lines), _dedupe(notes)


def _repair_header_line(line: bytes, following: bytes, *, first: bool) -> tuple[bytes, str]:
    obsolete = _OBS_FIELD_NAME.match(line)
    if obsolete:  # "Subject  : x" is obsolete syntax that RFC 5322 §4.5 still allows
        return obsolete.group(1) + line[obsolete.end() - 1 :], "header block: space before ':'"
    if not first and not _HEADER_LINE.match(line) and _HEADER_LINE.match(following):
        # A continuation line that lost its indentation, or junk between two fields.
        return b" " + line, "header block: line without a field name folded into the field above"
    return line, ""


def _require_usable_structure(msg: Message) -> None:
    for part in _all_parts(msg):
        for defect in part.defects:
            reason = _structure_problem(part, defect)
            if reason:
                raise MailError(f"MIME structure is broken: {reason} ({type(defect).__name__})")


def _structure_problem(part: Message, defect: errors.MessageDefect) -> str | None:
    ctype = part.get_content_type()
    if isinstance(defect, errors.NoBoundaryInMultipartDefect):
        return f"{ctype} part declares no boundary"
    if isinstance(defect, errors.StartBoundaryNotFoundDefect):
        boundary = _text(part.get_boundary() or "")
        return f"{ctype} part declares boundary {boundary!r} that never occurs"
    if isinstance(defect, errors.MultipartInvariantViolationDefect):
        return f"{ctype} part claims to be multipart but holds no parts"
    return None


def _all_parts(msg: Message) -> list[Message]:
    """Every part of the mail, depth first, without descending into attached messages."""
    if _is_leaf(msg):
        return [msg]
    return [msg, *(part for sub in msg.get_payload() for part in _all_parts(sub))]


def _is_leaf(part: Message) -> bool:
    # message/* parts hold parsed sub-messages, but an attached mail is one attachment.
    return not part.is_multipart() or part.get_content_maintype() == "message"


def _raw_values(msg: Message, name: str) -> list[str]:
    """Every value of header ``name`` as it came, unfolded; never runs the header parser."""
    wanted = name.lower()
    return [_FOLD.sub("", _text(v)) for k, v in msg.raw_items() if k.lower() == wanted]


def _parsed_headers(msg: Message, name: str, notes: list[str]) -> list[object] | None:
    """Every ``name`` header parsed by the policy, its defects noted; None when that fails."""
    try:
        headers: list[object] = msg.get_all(name) or []
    except Exception as exc:  # the stdlib header parser has bugs; see the module docstring
        notes.append(f"header {name}: unparseable ({type(exc).__name__}); read leniently")
        return None
    for header in headers:
        notes.extend(_describe(d, f"header {name}") for d in getattr(header, "defects", ()))
    return headers


def _message_id(msg: Message) -> str:
    value = next(iter(_raw_values(msg, "Message-ID")), "").strip()
    found = _MSG_ID.search(value)  # "<id> (comment)" happens; the id is what threads match
    return found.group() if found else value


def _message_ids(msg: Message, name: str) -> list[str]:
    return _dedupe([m for value in _raw_values(msg, name) for m in _MSG_ID.findall(value)])


def _addresses(msg: Message, name: str, notes: list[str]) -> list[Address]:
    headers = _parsed_headers(msg, name, notes)
    try:
        pairs = [(a.display_name, a.addr_spec) for h in headers or () for a in h.addresses]  # type: ignore[attr-defined]
    except Exception as exc:  # e.g. AttributeError on a Group: a stdlib bug
        notes.append(f"header {name}: unparseable ({type(exc).__name__}); read leniently")
        headers = None
    if headers is None:
        pairs = getaddresses(_raw_values(msg, name))
    return [
        Address(name=_one_line(_decode_words(n)), email=_one_line(_text(e)))
        for n, e in pairs
        if e.strip()
    ]


def _decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded leniently, as the policy does for unstructured fields."""
    try:
        return str(policy.default.header_factory("X-Name", _text(value)))
    except Exception:  # a name is cosmetic: keep it undecoded rather than lose the address
        return _text(value)


def _subject(msg: Message) -> str:
    # From the raw value: the policy turns raw 8-bit bytes that are not UTF-8 into U+FFFD.
    return _one_line(_decode_words(next(iter(_raw_values(msg, "Subject")), "")))


def _date(msg: Message, notes: list[str]) -> datetime | None:
    when = getattr(next(iter(_parsed_headers(msg, "Date", notes) or []), None), "datetime", None)
    if not isinstance(when, datetime):
        return None
    # "-0000" means "UTC, local zone unknown" (RFC 5322 §3.3); the stdlib leaves it naive.
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def is_auto_reply(msg: Message) -> bool:
    """Whether ``msg`` was sent by a machine (auto-reply, bulk mail, bounce). Never raises.

    Signals: ``Auto-Submitted`` other than ``no``, ``X-Autoreply``/``X-Autorespond``,
    ``Precedence: auto_reply|bulk|junk``, or a ``multipart/report`` delivery-status report.
    """
    if any(_token(v) != "no" for v in _raw_values(msg, "Auto-Submitted")):
        return True
    if _raw_values(msg, "X-Autoreply") or _raw_values(msg, "X-Autorespond"):
        return True
    if any(_token(v) in _AUTO_PRECEDENCE for v in _raw_values(msg, "Precedence")):
        return True
    report_type = msg.get_param("report-type", "", header="content-type")
    is_report = msg.get_content_type() == "multipart/report" and isinstance(report_type, str)
    return is_report and report_type.strip().lower() == "delivery-status"


def _token(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _contents(
    msg: Message, notes: list[str]
) -> tuple[str | None, str | None, list[MimeAttachment]]:
    leaves = [part for part in _all_parts(msg) if _is_leaf(part)]
    plain_part, html_part = _body_part(msg, leaves, "plain"), _body_part(msg, leaves, "html")
    rest = [p for p in leaves if p is not plain_part and p is not html_part]
    # More inline text after the body (a list footer, text after a pasted picture) is part
    # of what the sender wrote, as mail programs show it.
    extra = [p for p in rest if _is_inline(p, "plain")]
    plain_parts = [plain_part, *extra] if plain_part is not None else []
    plain = "\n".join(_part_text(p, notes) for p in plain_parts) if plain_parts else None
    html = _part_text(html_part, notes) if html_part is not None else None
    attached = [p for p in rest if _is_attachment(p)]
    attachments = [_attachment(p, n) for n, p in enumerate(attached, start=1)]
    return _readable_text(plain, html), html, attachments


def _body_part(msg: Message, leaves: list[Message], subtype: str) -> Message | None:
    found = msg.get_body(preferencelist=(subtype,)) if isinstance(msg, EmailMessage) else None
    if found is None:
        # get_body takes the first part of a multipart/related as its root, as RFC 2387
        # says; some MHTML mail puts the HTML later. Any inline part of the type will do.
        found = next((p for p in leaves if _is_inline(p, subtype)), None)
    return found


def _is_inline(part: Message, subtype: str) -> bool:
    return part.get_content_type() == f"text/{subtype}" and not _is_attachment(part)


def _readable_text(plain: str | None, html: str | None) -> str | None:
    if plain and plain.strip():
        return plain
    if html and html.strip():
        return html_to_text(html) or None
    return plain or None


def _part_text(part: Message, notes: list[str]) -> str:
    """The decoded text of a body part, line endings normalised to ``\\n``."""
    data = _payload(part)
    charset = part.get_content_charset() or "us-ascii"
    where = f"{part.get_content_type()} part"
    try:
        text = data.decode(charset)
    except LookupError:
        notes.append(f"charset: unknown charset {charset!r} in {where}; decoded with replacement")
        text = data.decode("utf-8", errors="replace")
    except UnicodeDecodeError:
        notes.append(f"charset: bytes are not valid {charset} in {where}; decoded with replacement")
        # 8-bit text labelled us-ascii is nearly always UTF-8.
        ascii_label = codecs.lookup(charset).name == "ascii"
        text = data.decode("utf-8" if ascii_label else charset, errors="replace")
    return text.replace("\r\n", "\n")


def _is_attachment(part: Message) -> bool:
    if part.get_content_disposition() == "attachment" or _filename(part):
        return True
    return part.get_content_type() not in ("text/plain", "text/html")


def _attachment(part: Message, number: int) -> MimeAttachment:
    ctype = part.get_content_type()
    if ctype in ("message/rfc822", "message/global"):
        return _attached_mail(part)
    content_id = _one_line(next(iter(_raw_values(part, "Content-ID")), "")).strip("<> ")
    return MimeAttachment(
        filename=_filename(part) or _invented_filename(ctype, number),
        content_type=ctype,
        data=_payload(part),
        inline=part.get_content_disposition() == "inline" and bool(content_id),
        content_id=content_id or None,
    )


def _attached_mail(part: Message) -> MimeAttachment:
    inner = part.get_payload(0)  # the parser always reads a message/* body as a mail
    stem = _UNSAFE_IN_FILENAME.sub("_", _subject(inner)).strip(" ._")[:100]
    name = _filename(part) or f"{stem or 'forwarded'}.eml"
    return MimeAttachment(name, part.get_content_type(), _message_bytes(inner))


def _message_bytes(inner: Message) -> bytes:
    try:
        return inner.as_bytes(policy=_VERBATIM)
    except UnicodeEncodeError:  # stdlib bug: 8-bit text in an inner multipart without parts
        return inner.as_string(policy=_VERBATIM).encode("utf-8", "surrogateescape")


def _payload(part: Message) -> bytes:
    """Decoded bytes of a leaf part; message/* parts other than rfc822 as written."""
    if part.is_multipart():
        # e.g. message/delivery-status: a list of header blocks, kept as text.
        return b"".join(_message_bytes(sub) for sub in part.get_payload())
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:  # a mangled RFC 2231 parameter: the part still counts, unnamed
        return ""
    return _one_line(_text(name)) if isinstance(name, str) else ""


def _invented_filename(ctype: str, number: int) -> str:
    maintype = ctype.split("/", 1)[0]
    stem = maintype if maintype in _NAMED_BY_TYPE else "attachment"
    return f"{stem}-{number}{mimetypes.guess_extension(ctype, strict=False) or '.bin'}"


def _recorded_defects(msg: Message) -> list[str]:
    parts = _all_parts(msg)
    return [_describe(d, f"{p.get_content_type()} part") for p in parts for d in p.defects]


def _describe(defect: errors.MessageDefect, where: str) -> str:
    detail = str(defect) or (type(defect).__doc__ or "").strip().split("\n")[0]
    detail = _one_line(_text(detail))[:_MAX_DEFECT_TEXT]
    return f"{type(defect).__name__} in {where}: {detail}"


def _text(value: str) -> str:
    """``value`` without lone surrogates: raw 8-bit header bytes decoded as UTF-8 or cp1252."""
    return _SURROGATES.sub(_decode_8bit, value).replace("\x00", "")


def _decode_8bit(match: re.Match[str]) -> str:
    try:
        data = match.group().encode("utf-8", "surrogateescape")
        return data.decode("utf-8")
    except UnicodeEncodeError:  # surrogates that never were bytes
        return "\ufffd"
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
