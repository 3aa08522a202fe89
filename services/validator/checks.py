"""The attachment checks: file name, extension, empty file, size, and type against content.

Each check is a pure function that returns ``None`` when the attachment is fine, or the
``StrippedAttachment`` that says why it is dropped, with a reason code and a sentence a
help-desk user understands. ``first_failure`` runs them in order and stops at the first
failure. The checks that need the bytes run last, so an empty or oversized file is never read.

Inline parts (pictures shown in the HTML body through ``cid:``) take the same checks as any
other attachment: a picture that is fine stays, an inline "image" that is really a program
is dropped like any other file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from contracts.mail import Attachment, StrippedAttachment
from services.validator.content_types import (
    UNTELLING_SNIFFED,
    VAGUE_TYPES,
    compatible,
    describe,
    extension_of_type,
    last_extension,
    mime,
    type_of_name,
)
from services.validator.policy import AttachmentPolicy

Sniffer = Callable[[bytes], str]

#: How much of a file the content check looks at; file signatures sit at the start.
SNIFF_BYTES = 8 * 1024
MAX_NAME_BYTES = 255
_BYTES_PER_MB = 1024 * 1024
_SHOWN_NAME_CHARS = 80

_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
# As patterns: a name may be megabytes long, and a loop over it in Python slow.
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_BIDI_CHARS = re.compile(f"[{''.join(sorted(_BIDI))}]")
_WINDOWS_FORBIDDEN_CHARS = re.compile(r'[<>:"|?*]')
# Windows also reserves COM¹–COM³ and LPT¹–LPT³ (superscript digits), and the console's
# CONIN$ and CONOUT$.
_DEVICE_DIGITS = "0123456789\u00b9\u00b2\u00b3"
_RESERVED_STEMS = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{d}" for port in ("COM", "LPT") for d in _DEVICE_DIGITS}
)


# --- file name ------------------------------------------------------------------------------


def _is_control(ch: str) -> bool:
    code = ord(ch)
    # C0, DEL and C1, plus lone surrogates, which no file system can store.
    return code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF


def _device_stem(name: str) -> str:
    # Windows ignores everything from the first dot and trailing spaces: "con .txt" is CON.
    return name.split(".", 1)[0].rstrip(" ").upper()


_NAME_RULES: tuple[tuple[Callable[[str], bool], str], ...] = (
    (lambda n: "/" in n or "\\" in n, "contains a folder separator (/ or \\)"),
    (lambda n: n in (".", ".."), "refers to a folder (. or ..), not a file"),
    (lambda n: _CONTROL_CHARS.search(n) is not None, "contains control characters"),
    (
        lambda n: _BIDI_CHARS.search(n) is not None,
        "contains invisible text-direction characters that can disguise its real type",
    ),
    (
        lambda n: _WINDOWS_FORBIDDEN_CHARS.search(n) is not None,
        'contains a character that Windows does not allow (< > : " | ? *)',
    ),
    (lambda n: _device_stem(n) in _RESERVED_STEMS, "is a reserved device name on Windows"),
    (lambda n: n.endswith((".", " ")), "ends with a dot or a space"),
    (
        lambda n: len(n.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES,
        f"is too long (more than {MAX_NAME_BYTES} bytes)",
    ),
)


def shown_name(name: str) -> str:
    """``name`` made safe to quote in a sentence: no control or text-direction characters.

    A bidirectional override in a quoted name would make the notice itself lie about the
    file's type, so such characters become U+FFFD; very long names are shortened.
    """
    if len(name) <= _SHOWN_NAME_CHARS:
        return _safe(name)
    return _safe(name[: _SHOWN_NAME_CHARS - 1]) + "\u2026"


def _safe(text: str) -> str:
    return "".join("\ufffd" if _is_control(c) or c in _BIDI else c for c in text)


def name_problem(name: str) -> str | None:
    """What is wrong with a file name, as the end of a sentence; ``None`` when it is fine."""
    if not name:
        return "is empty"
    return next((problem for broken, problem in _NAME_RULES if broken(name)), None)


def check_name(att: Attachment) -> StrippedAttachment | None:
    """Refuse names that are unsafe on common file systems (``invalid_name``)."""
    problem = name_problem(att.filename)
    if problem is None:
        return None
    if not att.filename:
        return _strip(att, "invalid_name", "An attachment without a file name was removed.")
    message = f"{shown_name(att.filename)} was removed because its file name {problem}."
    return _strip(att, "invalid_name", message)


# --- extension ------------------------------------------------------------------------------


def check_extension(att: Attachment, policy: AttachmentPolicy) -> StrippedAttachment | None:
    """Refuse a restricted or unlisted extension, judged by the LAST extension only.

    ``invoice.pdf.exe`` is an ``.exe`` and ``report.example.com.pdf`` a ``.pdf``. Reasons:
    ``restricted_extension``, or ``extension_not_allowed`` when the help desk has an allowlist
    and the extension is not on it. A name without extension passes here: it is judged by its
    content in ``check_extension_by_content``.
    """
    extension = last_extension(att.filename)
    if extension is None:
        return None
    shown = shown_name(att.filename)
    if extension in policy.restricted_extensions:
        message = f"{shown} was removed because files of type .{extension} are not accepted."
        return _strip(att, "restricted_extension", message)
    if policy.allowed_extensions and extension not in policy.allowed_extensions:
        message = (
            f"{shown} was removed because its type .{extension} is not accepted;"
            f" {_accepted(policy)}."
        )
        return _strip(att, "extension_not_allowed", message)
    return None


def check_extension_by_content(
    att: Attachment, sniffed: str, policy: AttachmentPolicy
) -> StrippedAttachment | None:
    """Judge a name without extension by what its content is (``sniffed``, a MIME type).

    A Windows program called ``setup`` counts as ``.exe`` for the restricted list. With an
    allowlist, content of no known type is refused, as a name without extension always was.
    Returns ``None`` at once for a name that has an extension.
    """
    if last_extension(att.filename) is not None:
        return None
    extension = extension_of_type(sniffed)
    shown = shown_name(att.filename)
    if extension in policy.restricted_extensions:
        message = (
            f"{shown} was removed because it has no file extension and its content is"
            f" {describe(sniffed)} (.{extension}), a type that is not accepted."
        )
        return _strip(att, "restricted_extension", message)
    if not policy.allowed_extensions or extension in policy.allowed_extensions:
        return None
    what = f" and its content is of type .{extension}, which" if extension else ", which"
    message = (
        f"{shown} was removed because it has no file extension{what} is not accepted;"
        f" {_accepted(policy)}."
    )
    return _strip(att, "extension_not_allowed", message)


def _accepted(policy: AttachmentPolicy) -> str:
    return "accepted types: " + ", ".join(f".{e}" for e in sorted(policy.allowed_extensions))


# --- empty and size -------------------------------------------------------------------------


def check_empty(att: Attachment) -> StrippedAttachment | None:
    """Refuse a file of 0 bytes (``empty``)."""
    if att.size:
        return None
    message = f"{shown_name(att.filename)} was removed because it is empty (0 bytes)."
    return _strip(att, "empty", message)


def _mb(size: int, *, round_up: bool = False) -> str:
    hundredths = size * 100 / _BYTES_PER_MB
    # Rounded up, a size just over the limit never reads as equal to the limit.
    value = (math.ceil(hundredths) if round_up else round(hundredths)) / 100
    return f"{value:.2f}".rstrip("0").rstrip(".")


def check_size(att: Attachment, policy: AttachmentPolicy) -> StrippedAttachment | None:
    """Refuse a file over the help desk's maximum size (``too_large``)."""
    if att.size <= policy.max_size_bytes:
        return None
    message = (
        f"{shown_name(att.filename)} was removed because it is {_mb(att.size, round_up=True)} MB,"
        f" more than the limit of {_mb(policy.max_size_bytes)} MB."
    )
    return _strip(att, "too_large", message)


# --- declared type against content ----------------------------------------------------------


def sniffed_type(head: bytes, sniff: Sniffer) -> str:
    """What ``sniff`` says the first ``SNIFF_BYTES`` of ``head`` are, as a bare MIME type."""
    return mime(sniff(head[:SNIFF_BYTES]))


def claimed_type(att: Attachment) -> tuple[str, str] | None:
    """What the attachment says it is, and who says so: ``(type, "name" | "declared")``.

    The extension decides, because it is what opens the file on the reader's computer; mail
    programs often declare a loose type (Outlook sends ``.csv`` as ``application/vnd.ms-excel``).
    The declared type counts only when the name implies nothing. ``None`` when neither says
    anything (``application/octet-stream``, an unknown extension).
    """
    by_name = type_of_name(att.filename)
    if by_name is not None and by_name not in VAGUE_TYPES:
        return by_name, "name"
    declared = mime(att.content_type)
    return None if declared in VAGUE_TYPES else (declared, "declared")


def content_failure(att: Attachment, sniffed: str) -> StrippedAttachment | None:
    """Refuse a file whose content (``sniffed``) is not what it claims (``content_mismatch``)."""
    claim = claimed_type(att)
    if claim is None or sniffed in UNTELLING_SNIFFED or compatible(sniffed, claim[0]):
        return None
    kind, source = claim
    actual, claimed = describe(sniffed), describe(kind)
    if actual == claimed:
        actual, claimed = f"{actual} ({sniffed})", f"{claimed} ({kind})"
    says = (
        f"as its .{last_extension(att.filename)} extension says"
        if source == "name"
        else "as the mail declares"
    )
    message = (
        f"{shown_name(att.filename)} was removed because its content is {actual},"
        f" not {claimed} {says}."
    )
    return _strip(att, "content_mismatch", message)


def check_content(att: Attachment, head: bytes, sniff: Sniffer) -> StrippedAttachment | None:
    """Refuse a file whose bytes are not what its name or declared type claim.

    ``head`` is the start of the file; only the first ``SNIFF_BYTES`` are passed to ``sniff``.
    """
    return content_failure(att, sniffed_type(head, sniff))


# --- all together ---------------------------------------------------------------------------


def first_failure(
    att: Attachment,
    *,
    policy: AttachmentPolicy,
    read_head: Callable[[], bytes],
    sniff: Sniffer,
) -> StrippedAttachment | None:
    """Run the five checks and return the first failure, or ``None``.

    Order: name, extension, empty, size, then the checks that need the content: the
    extension of a name without one (judged by content), and content against the claims.
    ``read_head`` is called only when the cheap checks pass and the content can matter (the
    name has no extension, or the file claims a type), so an empty, oversized or badly named
    file, or one that claims nothing, is never read from the store; ``sniff`` runs at most
    once per file.
    """
    cheap: tuple[Callable[[Attachment], StrippedAttachment | None], ...] = (
        check_name,
        lambda a: check_extension(a, policy),
        check_empty,
        lambda a: check_size(a, policy),
    )
    for check in cheap:
        if (failure := check(att)) is not None:
            return failure
    if last_extension(att.filename) is not None and claimed_type(att) is None:
        return None  # its content could contradict nothing: neither read nor sniffed
    sniffed = sniffed_type(read_head(), sniff)
    return check_extension_by_content(att, sniffed, policy) or content_failure(att, sniffed)


def _strip(att: Attachment, reason: str, message: str) -> StrippedAttachment:
    return StrippedAttachment(
        filename=att.filename,
        reason=reason,
        message=message,
        content_type=att.content_type,
        size=att.size,
    )
