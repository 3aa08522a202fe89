"""Which part of a parsed mail is what: body text, body HTML, attachments, signatures.

Works on the parsed tree and its headers only; nothing here decodes a payload.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from email import errors
from email.message import EmailMessage, Message
from urllib.parse import unquote

from services.parser.headers import describe, first_raw, one_line, subject
from services.parser.payloads import subparts
from services.parser.words import parameter, text_of
from services.runtime.errors import MailError

_NAMED_BY_TYPE = frozenset({"image", "audio", "video", "text"})
_UNSAFE_IN_FILENAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]+')
_CALENDARS = frozenset({"text/calendar", "application/ics"})
# The machine-readable parts of delivery and read reports (RFC 3464, RFC 8098, RFC 6522).
_REPORTS = frozenset(
    {
        "message/delivery-status",
        "message/global-delivery-status",
        "message/disposition-notification",
        "message/global-disposition-notification",
        "text/rfc822-headers",
    }
)
# Detached signatures of multipart/signed (RFC 8551 S/MIME, RFC 3156 OpenPGP).
_SIGNATURES = frozenset(
    {"application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature"}
)
_PKCS7_MIME = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
_NO_PARTS = (errors.StartBoundaryNotFoundDefect, errors.MultipartInvariantViolationDefect)
# The start of a MIME part: a "--x" line, then (after a blank line at most) a Content field.
_PART_START = re.compile(r"^--\S.*\r?\n(?:[ \t]*\r?\n)?content-[\w-]+[ \t]*:", re.I | re.M)
_CID_REFERENCE = re.compile(r"""cid:([^"'\s>)]+)""", re.IGNORECASE)


@dataclass(frozen=True)
class Layout:
    """The roles of a mail's leaf parts, in the order they appear."""

    plain: list[Message]  # the text body, then inline text after it (a list footer)
    html: list[Message]  # the HTML body, then inline HTML after it (Apple Mail's pieces)
    attachments: list[Message]
    signatures: list[Message]  # detached signatures of multipart/signed: not attachments
    # Text and HTML parts shown one after the other (a text mail with an HTML signature, an
    # HTML mail with a text footer), each with whether it is HTML: then the body is all of
    # them in order. Empty when only one kind is shown.
    mixed: list[tuple[Message, bool]]


def require_usable_structure(msg: Message) -> None:
    """Raises ``MailError`` when a multipart part has no usable boundary.

    A mail that declares multipart and has nothing at all after its header is no broken
    structure but an empty mail (spam filters that keep only the header write these): it is
    read without a body.
    """
    if _empty_multipart(msg):
        return
    for part in all_parts(msg):
        for defect in part.defects:
            reason = _structure_problem(part, defect)
            if reason:
                raise MailError(f"MIME structure is broken: {reason} ({type(defect).__name__})")


def read_partless_as_text(msg: Message) -> list[str]:
    """A multipart part whose boundary never occurs, and whose body holds no part at all
    (no ``--x`` line followed by a Content field), is one text, as mail programs show it:
    the sender's program declared multipart and then wrote plain text. Its type becomes
    text/plain. Returns the defect notes; a body that holds parts written with another
    boundary is left alone, and rejected as broken."""
    notes: list[str] = []
    if not any(_lacks_boundary(part) for part in msg.walk()):
        return notes  # the common case, found without reading any Content-Type
    for part in all_parts(msg):
        if not _lacks_boundary(part):
            continue
        content = part.get_payload()
        if not isinstance(content, str) or not content.strip():
            continue
        if _PART_START.search(content):
            continue
        ctype = part.get_content_type()
        part.defects = [d for d in part.defects if not isinstance(d, _NO_PARTS)]
        part.replace_header("Content-Type", "text/plain")
        notes.append(f"{ctype} part holds no parts (its boundary never occurs); read as text")
    return notes


def _lacks_boundary(part: Message) -> bool:
    return any(isinstance(d, errors.StartBoundaryNotFoundDefect) for d in part.defects)


def _empty_multipart(part: Message) -> bool:
    return part.get_content_maintype() == "multipart" and _is_empty(part)


def _is_empty(part: Message) -> bool:
    content = part.get_payload()
    return isinstance(content, str) and not content.strip()


def _structure_problem(part: Message, defect: errors.MessageDefect) -> str | None:
    ctype = part.get_content_type()
    if isinstance(defect, errors.NoBoundaryInMultipartDefect):
        return f"{ctype} part declares no boundary"
    if isinstance(defect, errors.StartBoundaryNotFoundDefect):
        boundary = text_of(part.get_boundary() or "")
        return f"{ctype} part declares boundary {boundary!r} that never occurs"
    if isinstance(defect, errors.MultipartInvariantViolationDefect):
        return f"{ctype} part claims to be multipart but holds no parts"
    return None


def recorded_defects(msg: Message) -> list[str]:
    """The defects the stdlib parser recorded, as strings."""
    parts = all_parts(msg)
    return [describe(d, f"{p.get_content_type()} part") for p in parts for d in p.defects]


def all_parts(msg: Message) -> list[Message]:
    """Every part of the mail, depth first, without descending into attached messages."""
    if is_leaf(msg):
        return [msg]
    return [msg, *(part for sub in subparts(msg) for part in all_parts(sub))]


def is_leaf(part: Message) -> bool:
    # message/* parts hold parsed sub-messages, but an attached mail is one attachment.
    return not part.is_multipart() or part.get_content_maintype() == "message"


def layout(msg: Message) -> Layout:
    """Pick the body parts the way mail programs show them; the rest are attachments."""
    leaves = [part for part in all_parts(msg) if is_leaf(part) and not _empty_multipart(part)]
    plain_part, html_part = _body_part(msg, leaves, "plain"), _body_part(msg, leaves, "html")
    rest = [p for p in leaves if p is not plain_part and p is not html_part]
    # More inline text after the body (a list footer, text after a pasted picture) is part
    # of what the sender wrote, as mail programs show it.
    extra = [p for p in rest if _is_inline(p, "plain")]
    # Inline HTML that is no alternative of the body: Apple Mail writes text, a picture
    # and more text as HTML pieces one after the other.
    alternatives = _alternatives(msg)
    inline_html = [p for p in rest if _is_inline(p, "html")]
    more_html = [p for p in inline_html if not _among(p, alternatives)]
    signatures = _signatures(msg)
    attached = [p for p in rest if is_attachment(p) and not _among(p, signatures)]
    plain = [plain_part, *extra] if plain_part is not None else []
    html = [html_part, *more_html] if html_part is not None else []
    mixed: list[tuple[Message, bool]] = []
    if plain and html:
        texts = {id(p) for p in plain}
        shown = _shown(msg, texts | {id(p) for p in [*html, *inline_html]}, texts)
        mixed = [(p, id(p) not in texts) for p in shown]
        if len({is_html for _, is_html in mixed}) < 2:
            mixed = []
    return Layout(plain, html, attached, signatures, mixed)


def _shown(part: Message, inline: set[int], plain: set[int]) -> list[Message]:
    """The inline text and HTML parts a mail program shows one after the other: one branch
    of each multipart/alternative, the plain one where there is one."""
    if is_leaf(part):
        return [part] if id(part) in inline else []
    branches = [_shown(sub, inline, plain) for sub in subparts(part)]
    if part.get_content_subtype() != "alternative":
        return [leaf for branch in branches for leaf in branch]
    texts = [b for b in branches if b and all(id(leaf) in plain for leaf in b)]
    shown = texts or [b for b in branches if b]
    return shown[0] if texts else (shown[-1] if shown else [])


def _alternatives(msg: Message) -> list[Message]:
    """The parts that are direct children of a multipart/alternative."""
    found = [p for p in all_parts(msg) if p.get_content_type() == "multipart/alternative"]
    return [c for part in found for c in part.get_payload() if isinstance(c, Message)]


def _body_part(msg: Message, leaves: list[Message], subtype: str) -> Message | None:
    found: Message | None = (
        msg.get_body(preferencelist=(subtype,)) if isinstance(msg, EmailMessage) else None
    )
    if found is not None and found is not msg and is_attachment(found):
        # get_body skips only "Content-Disposition: attachment"; a named text part without
        # a disposition is a file too (a readme.txt beside an HTML body), as mail programs
        # show it. A mail that is one single part is its own body.
        found = None
    if found is None:
        # get_body takes the first part of a multipart/related as its root, as RFC 2387
        # says; some MHTML mail puts the HTML later. Any inline part of the type will do.
        found = next((p for p in leaves if _is_inline(p, subtype)), None)
    return found


def _is_inline(part: Message, subtype: str) -> bool:
    return part.get_content_type() == f"text/{subtype}" and not is_attachment(part)


def is_attachment(part: Message) -> bool:
    if disposition(part) == "attachment" or filename(part):
        return True
    return part.get_content_type() not in ("text/plain", "text/html")


def _signatures(msg: Message) -> list[Message]:
    signed = [p for p in all_parts(msg) if p.get_content_type() == "multipart/signed"]
    children = [c for p in signed for c in subparts(p)[1:]]
    return [c for c in children if c.get_content_type() in _SIGNATURES]


def _among(part: Message, parts: list[Message]) -> bool:
    return any(part is p for p in parts)


def disposition(part: Message) -> str:
    return first_raw(part, "Content-Disposition").split(";", 1)[0].strip().lower()


def filename(part: Message, notes: list[str] | None = None) -> str:
    """The part's file name: Content-Disposition ``filename``, else Content-Type ``name``
    (RFC 2231 and RFC 2047 decoded); ``""`` when it has none."""
    for header, name in (("Content-Disposition", "filename"), ("Content-Type", "name")):
        value = first_raw(part, header)
        found = one_line(parameter(value, name, notes) or "") if value else ""
        if found:
            return found
    return ""


def content_id(part: Message) -> str | None:
    return one_line(text_of(first_raw(part, "Content-ID"))).strip("<> ") or None


def referenced_ids(html: str | None) -> frozenset[str]:
    """The Content-IDs an HTML body shows as pictures (``cid:`` URLs, RFC 2392)."""
    found = _CID_REFERENCE.findall(html or "")
    return frozenset(unquote(cid).strip("<>").lower() for cid in found)


def is_inline_picture(part: Message, referenced: frozenset[str]) -> bool:
    """A part with a Content-ID is inline when its disposition says so, or when the HTML
    body shows it, whatever the disposition (mail programs show it in the text then)."""
    cid = content_id(part)
    if cid is None:
        return False
    return disposition(part) == "inline" or cid.lower() in referenced


def unnamed_filename(part: Message, number: int) -> str:
    """A name for an attachment that has none: its Content-Description (``Delivery
    report``) as mail programs show it, else one made from its type."""
    ctype = part.get_content_type()
    described = _UNSAFE_IN_FILENAME.sub(
        "_", one_line(text_of(first_raw(part, "Content-Description")))
    )
    stem = described.strip(" ._")[:100]
    if stem:
        return stem + _extension(ctype)
    return invented_filename(ctype, number)


def _extension(ctype: str) -> str:
    if ctype in _REPORTS:
        return ".txt"
    return mimetypes.guess_extension(ctype, strict=False) or ".bin"


def invented_filename(ctype: str, number: int) -> str:
    """A name for an unnamed attachment, from its type and its place in the mail."""
    if ctype in _REPORTS:
        return ctype.split("/", 1)[1] + ".txt"  # one a report: "delivery-status.txt"
    if ctype in _CALENDARS:
        return f"calendar-{number}.ics"
    if ctype in _PKCS7_MIME:
        return "smime.p7m"
    maintype = ctype.split("/", 1)[0]
    stem = maintype if maintype in _NAMED_BY_TYPE else "attachment"
    return f"{stem}-{number}{mimetypes.guess_extension(ctype, strict=False) or '.bin'}"


def attached_mail_name(part: Message, inner: Message) -> str:
    stem = _UNSAFE_IN_FILENAME.sub("_", subject(inner)).strip(" ._")[:100]
    return filename(part) or f"{stem or 'forwarded'}.eml"


def smime_kind(part: Message) -> str | None:
    """``"encrypted"`` or ``"signed-data"`` for an application/pkcs7-mime part, else None.

    Without an ``smime-type`` the part is taken as encrypted, by far the common case.
    """
    if part.get_content_type() not in _PKCS7_MIME:
        return None
    kind = (parameter(first_raw(part, "Content-Type"), "smime-type") or "").strip().lower()
    return "signed-data" if kind in ("signed-data", "certs-only") else "encrypted"


def guess_type(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
