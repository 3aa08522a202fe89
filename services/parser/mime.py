"""MIME walking: raw mail bytes in, plain values out (no I/O, no blob store).

``parse_mime`` reads the structure, the header fields and the body text at once, and hands
the attachments over one at a time, decoded as they are asked for: a big mail never has all
its attachments in memory together. Only a mail whose MIME structure is unusable, or that
is over a limit, is rejected (``MailError``); other problems become defect strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesFeedParser

from contracts.mail import ParsedMail
from services.parser import parts as roles
from services.parser import tnef
from services.parser.charsets import decode_text
from services.parser.delivery_reports import delivery_report
from services.parser.headers import (
    declared_charsets,
    first_raw,
    header_fields,
    repair_header_block,
)
from services.parser.html_text import html_to_text
from services.parser.lenient_policy import lenient_policy
from services.parser.limits import DecodeBudget, ParserLimits, check_tree, header_end, prescan
from services.parser.payloads import UUENCODED, message_bytes, payload, release, subparts
from services.parser.payloads import transfer_encoding as cte
from services.parser.uuencode import decode_part, find_files, without_files
from services.parser.words import parameter
from services.runtime.errors import MailError

_CHUNK = 1024 * 1024  # bytes fed to the parser at a time
_ENCRYPTED_TEXT = (
    "This mail is encrypted (S/MIME), so its content cannot be read here. "
    "The encrypted content is kept as the attachment {name}."
)


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
    """What ``parse_mime`` found.

    ``mail`` holds the header fields, but no defects and no claim checks yet: storing the
    bodies and attachments is the caller's job. ``attachments`` decodes one part at a time
    as it is iterated (iterate it once). ``defects`` is complete once it is exhausted, since
    unpacking an attachment (TNEF, uuencode) can find more.
    """

    mail: ParsedMail
    body_text: str | None
    body_html: str | None
    attachments: Iterator[MimeAttachment]
    defects: list[str]


def parse_mime(raw: bytes, limits: ParserLimits | None = None) -> MimeMail:
    """Parse one raw RFC 5322 mail.

    Deterministic: the same bytes always give the same result, including the synthetic
    Message-ID (``<first 32 hex of sha256(raw)@mailroom.invalid>``) of a mail without one.

    Raises:
        MailError: the bytes are empty, hold no header, the MIME structure is unusable (a
            multipart without boundary, or whose boundary never occurs), or the mail is over
            one of ``limits`` (the message names the limit and its setting).
    """
    limits = limits or ParserLimits()
    if not raw or raw.isspace():
        raise MailError("mail is empty: no bytes to parse")
    try:
        return _parse(raw, limits)
    except RecursionError as exc:  # the stdlib parser recurses once per nesting level
        raise limits.depth_exceeded() from exc


def _parse(raw: bytes, limits: ParserLimits) -> MimeMail:
    msg, notes = _read(raw, limits)
    fields = header_fields(msg, raw, notes)
    if (report := delivery_report(msg, notes)) is not None:
        fields = fields.model_copy(update={"delivery_report": report})
    layout = roles.layout(msg)
    budget = DecodeBudget(limits)
    reader = _TextReader(budget, notes, declared_charsets(msg))
    found: list[MimeAttachment] = []
    plain = [reader.text(part, found) for part in layout.plain]
    pieces = [reader.text(part) for part in layout.html]
    html = "\n".join(pieces) or None
    text = _readable_text("\n".join(plain) if plain else None, pieces)
    if layout.mixed:
        decoded = _by_part(layout.plain, plain) | _by_part(layout.html, pieces)
        text = _shown_text(layout.mixed, decoded, reader) or text
    notes += _signature_notes(layout.signatures) + _smime_notes(layout.attachments)
    text = text or _encrypted_text(layout.attachments)
    attachments = _attachments(layout, found, roles.referenced_ids(html), budget, notes)
    return MimeMail(fields, text, html, attachments, notes)


def _read(raw: bytes, limits: ParserLimits) -> tuple[Message, list[str]]:
    """The parsed tree, checked against ``limits``, and the defects found so far."""
    end = header_end(raw, limits)
    prescan(raw, limits)
    head, notes = repair_header_block(raw[:end])
    msg = _tree(head, raw, end)
    if not msg.keys():
        raise MailError("mail has no header: no 'Name: value' line before the first blank line")
    check_tree(msg, limits)
    notes += roles.read_partless_as_text(msg)
    roles.require_usable_structure(msg)
    return msg, roles.recorded_defects(msg) + notes


def _tree(head: bytes, raw: bytes, start: int) -> Message:
    # Fed in chunks, so the parser never holds a text copy of the whole mail at once.
    parser = BytesFeedParser(policy=lenient_policy())
    parser.feed(head)
    for offset in range(start, len(raw), _CHUNK):
        parser.feed(raw[offset : offset + _CHUNK])
    return parser.close()


@dataclass(frozen=True)
class _TextReader:
    """Decodes body parts within the budget, noting repairs; ``charsets`` are those the
    mail declares, tried for a part that declares none (see ``charsets.decode_text``)."""

    budget: DecodeBudget
    notes: list[str]
    charsets: list[str]

    def text(self, part: Message, found: list[MimeAttachment] | None = None) -> str:
        """The decoded text of a body part, line endings normalised to ``\\n``; uuencoded
        files in it go to ``found`` (when given) and out of the text."""
        data = payload(part)
        self.budget.spend(len(data))
        if found is not None:
            files = find_files(data)
            data = without_files(data, files)
            found += [_named(f.name, f.data, len(found) + 1) for f in files]
        label = parameter(first_raw(part, "Content-Type"), "charset")
        label = label.strip().lower() if label else None
        decoded = decode_text(data, label, part.get_content_type(), self.charsets)
        self.notes.extend([decoded.repair] if decoded.repair else [])
        return decoded.text.replace("\r\n", "\n")


def _by_part(parts: list[Message], texts: list[str]) -> dict[int, str]:
    return {id(part): text for part, text in zip(parts, texts, strict=True)}


def _shown_text(
    shown: list[tuple[Message, bool]], decoded: dict[int, str], reader: _TextReader
) -> str:
    """The text and HTML parts in the order they are shown, the HTML ones as text."""
    texts = []
    for part, is_html in shown:
        text = decoded.get(id(part))
        if text is None:
            text = reader.text(part)
        texts.append((html_to_text(text) if is_html else text).strip("\n"))
    return "\n".join(t for t in texts if t.strip())


def _named(name: str, data: bytes, number: int) -> MimeAttachment:
    guessed = roles.guess_type(name)
    return MimeAttachment(name or roles.invented_filename(guessed, number), guessed, data)


def _readable_text(plain: str | None, html: list[str]) -> str | None:
    """The plain text body, else the HTML pieces rendered as text (each a document of its
    own: Apple Mail sends a piece before and after each picture)."""
    if plain and plain.strip():
        return plain
    rendered = [text for text in map(html_to_text, html) if text]
    return "\n".join(rendered) or plain or None


def _attachments(
    layout: roles.Layout,
    found: list[MimeAttachment],
    referenced: frozenset[str],
    budget: DecodeBudget,
    notes: list[str],
) -> Iterator[MimeAttachment]:
    # Each is handed over before the next is decoded, and no reference to it is kept here.
    while found:
        yield found.pop(0)
    for number, part in enumerate(layout.attachments, start=1):
        yield from _decoded(part, number, referenced, budget, notes)


def _decoded(
    part: Message, number: int, referenced: frozenset[str], budget: DecodeBudget, notes: list[str]
) -> list[MimeAttachment]:
    ctype = part.get_content_type()
    if ctype in ("message/rfc822", "message/global") and part.is_multipart():
        return [_attached_mail(part, budget)]
    name = roles.filename(part, notes) or roles.unnamed_filename(part, number)
    data = _part_bytes(part, name, notes)
    release(part)
    budget.spend(len(data))
    if tnef.is_tnef(ctype, name):
        return _unpacked(name, ctype, data, notes)
    inline = roles.is_inline_picture(part, referenced)
    return [MimeAttachment(name, ctype, data, inline, roles.content_id(part))]


def _attached_mail(part: Message, budget: DecodeBudget) -> MimeAttachment:
    # The parser reads a message/rfc822 body as a mail, an empty one included.
    inner = next(iter(subparts(part)), None) or Message()
    data = message_bytes(inner)
    budget.spend(len(data))
    return MimeAttachment(roles.attached_mail_name(part, inner), part.get_content_type(), data)


def _part_bytes(part: Message, name: str, notes: list[str]) -> bytes:
    data = payload(part)
    if cte(part) not in UUENCODED:
        return data
    found = decode_part(data)
    if found is None:
        notes.append(f"uuencode: {name} holds no complete uuencoded file; kept as it came")
        return data
    return found.data


def _unpacked(name: str, ctype: str, data: bytes, notes: list[str]) -> list[MimeAttachment]:
    files = tnef.unpack(data)
    if files is None:
        notes.append(f"tnef: {name} could not be unpacked; kept as it came")
        return [MimeAttachment(name, ctype, data)]
    if not files:
        notes.append(f"tnef: {name} holds no files, only Outlook's copy of the text; dropped")
        return []
    notes.append(f"tnef: {name} unpacked into {len(files)} file(s)")
    return [MimeAttachment(n, t, d) for n, t, d in files]


def _signature_notes(signatures: list[Message]) -> list[str]:
    return [
        f"signature: {roles.filename(p) or 'signature'} ({p.get_content_type()}) of a signed"
        " mail dropped; the signed content is read as usual and the raw mail keeps it"
        for p in signatures
    ]


def _smime_notes(attachments: list[Message]) -> list[str]:
    notes = []
    for part in attachments:
        kind, name = roles.smime_kind(part), roles.filename(part) or "smime.p7m"
        if kind == "encrypted":
            notes.append(f"smime: the mail is encrypted; its content cannot be read ({name})")
        elif kind == "signed-data":
            notes.append(f"smime: {name} holds opaque-signed content, not unpacked")
    return notes


def _encrypted_text(attachments: list[Message]) -> str | None:
    encrypted = [p for p in attachments if roles.smime_kind(p) == "encrypted"]
    if not encrypted:
        return None
    return _ENCRYPTED_TEXT.format(name=roles.filename(encrypted[0]) or "smime.p7m")
