"""The attachment checks: file name, extension, empty file, size, and type against content.

Each ``check_*`` is a pure function that returns ``None`` when the attachment is fine, or
the ``StrippedAttachment`` that says why it is dropped. ``first_failure`` runs them in the
reference product's order and stops at the first failure. Only the content check needs the
bytes, and it runs last, so an empty or oversized file is never read.
"""

from __future__ import annotations

import math
import mimetypes
from collections.abc import Callable

from contracts.mail import Attachment, StrippedAttachment
from services.validator.policy import AttachmentPolicy, normalise_extension

Sniffer = Callable[[bytes], str]

#: How much of a file the content check looks at; file signatures sit at the start.
SNIFF_BYTES = 8 * 1024
MAX_NAME_BYTES = 255
_BYTES_PER_MB = 1024 * 1024
_SHOWN_NAME_CHARS = 80

_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
# Windows also reserves COM¹–COM³ and LPT¹–LPT³ (superscript digits).
_DEVICE_DIGITS = "123456789\u00b9\u00b2\u00b3"
_RESERVED_STEMS = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{port}{d}" for port in ("COM", "LPT") for d in _DEVICE_DIGITS}
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
    (lambda n: any(map(_is_control, n)), "contains control characters"),
    (
        lambda n: any(c in _BIDI for c in n),
        "contains invisible text-direction characters that can disguise its real type",
    ),
    (
        lambda n: any(c in _WINDOWS_FORBIDDEN for c in n),
        'contains a character that Windows does not allow (< > : " | ? *)',
    ),
    (lambda n: _device_stem(n) in _RESERVED_STEMS, "is a reserved device name on Windows"),
    (lambda n: n.endswith((".", " ")), "ends with a dot or a space"),
    (
        lambda n: len(n.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES,
        f"is longer than {MAX_NAME_BYTES} bytes",
    ),
)


def shown_name(name: str) -> str:
    """``name`` made safe to quote in a sentence: no control or text-direction characters.

    A bidirectional override in a quoted name would make the notice itself lie about the
    file's type, so such characters become U+FFFD; very long names are shortened.
    """
    safe = "".join("\ufffd" if _is_control(c) or c in _BIDI else c for c in name)
    if len(safe) <= _SHOWN_NAME_CHARS:
        return safe
    return safe[: _SHOWN_NAME_CHARS - 1] + "\u2026"


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


def extensions(name: str) -> list[str]:
    """Every suffix of ``name``, lower-case: ``"Invoice.PDF.exe"`` -> ``["pdf", "exe"]``."""
    suffixes = (normalise_extension(part) for part in name.split(".")[1:])
    return [s for s in suffixes if s]


def check_extension(att: Attachment, policy: AttachmentPolicy) -> StrippedAttachment | None:
    """Refuse restricted extensions, anywhere in a double extension, and unlisted ones.

    Reasons: ``restricted_extension``, or ``extension_not_allowed`` when the help desk has an
    allowlist and the last extension is not on it (a name without extension never is).
    """
    suffixes = extensions(att.filename)
    blocked = _restricted(att, suffixes, policy.restricted_extensions)
    return blocked if blocked is not None else _unlisted(att, suffixes, policy.allowed_extensions)


def _restricted(
    att: Attachment, suffixes: list[str], restricted: frozenset[str]
) -> StrippedAttachment | None:
    # Every suffix counts: "invoice.pdf.exe" hides its type, and some servers run "a.php.jpg".
    blocked = next((s for s in reversed(suffixes) if s in restricted), None)
    if blocked is None:
        return None
    shown = shown_name(att.filename)
    message = f"{shown} was removed because files of type .{blocked} are not accepted."
    return _strip(att, "restricted_extension", message)


def _unlisted(
    att: Attachment, suffixes: list[str], allowed: frozenset[str]
) -> StrippedAttachment | None:
    if not allowed or (suffixes and suffixes[-1] in allowed):
        return None
    listed = ", ".join(f".{e}" for e in sorted(allowed))
    what = f"its type .{suffixes[-1]} is" if suffixes else "it has no file extension, which is"
    message = (
        f"{shown_name(att.filename)} was removed because {what} not accepted;"
        f" accepted types: {listed}."
    )
    return _strip(att, "extension_not_allowed", message)


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

# Claims that say nothing about the content; a file that claims only these cannot mismatch.
_VAGUE_CLAIMS = frozenset(
    {
        "",
        "application/octet-stream",
        "binary/octet-stream",
        "application/unknown",
        "application/download",
        "application/x-download",
        "application/force-download",
    }
)
_GENERIC_SNIFFED = frozenset({"", "application/octet-stream"})
_MEDIA_MAJORS = frozenset({"image", "audio", "video", "text"})
# Types the local mime.types table may lack; file signatures for these are common in mail.
_EXTRA_TYPES = {
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
    "jar": "application/java-archive",
    "epub": "application/epub+zip",
    "apk": "application/vnd.android.package-archive",
    "msg": "application/vnd.ms-outlook",
}
_ENCODING_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}
# Types that name one kind of content under different labels (sniffed vs. claimed).
_FAMILIES = {
    **dict.fromkeys(
        (
            "application/zip",
            "application/x-zip",
            "application/x-zip-compressed",
            "application/java-archive",
            "application/vnd.android.package-archive",
        ),
        "zip",
    ),
    **dict.fromkeys(
        (
            "application/x-ole-storage",
            "application/cdfv2",
            "application/msword",
            "application/vnd.ms-excel",
            "application/vnd.ms-powerpoint",
            "application/vnd.ms-outlook",
            "application/vnd.ms-office",
        ),
        "ole",
    ),
    **dict.fromkeys(
        (
            "application/vnd.microsoft.portable-executable",
            "application/x-dosexec",
            "application/x-msdownload",
            "application/x-msdos-program",
        ),
        "exe",
    ),
    **dict.fromkeys(("application/gzip", "application/x-gzip"), "gzip"),
    **dict.fromkeys(("application/pdf", "application/x-pdf"), "pdf"),
}
_ZIP_PREFIXES = ("application/vnd.openxmlformats-officedocument.", "application/vnd.oasis.")
_TEXT_LIKE = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/csv",
        "application/x-csv",
        "application/rtf",
        "application/x-sh",
        "application/x-yaml",
        "application/yaml",
        "application/sql",
    }
)


def _mime(value: str) -> str:
    """``"Text/Plain; charset=utf-8"`` -> ``"text/plain"``."""
    return value.split(";", 1)[0].strip().lower()


def _family(mime: str) -> str | None:
    if mime.startswith(_ZIP_PREFIXES) or mime.endswith("+zip") or ".macroenabled." in mime:
        return "zip"  # Office Open XML, OpenDocument, EPUB: all zip containers
    if mime.startswith(("text/", "message/")) or mime.endswith(("+xml", "+json")):
        return "text"
    return "text" if mime in _TEXT_LIKE else _FAMILIES.get(mime)


def type_of_name(name: str) -> str | None:
    """The MIME type a file name implies, from its last one or two extensions."""
    suffixes = extensions(name)
    if not suffixes:
        return None
    # A synthetic name: guess_type parses URLs, and only the extensions matter here.
    guessed, encoding = mimetypes.guess_type("f." + ".".join(suffixes[-2:]), strict=False)
    if encoding:
        return _ENCODING_TYPES.get(encoding)
    return _mime(guessed) if guessed else _EXTRA_TYPES.get(suffixes[-1])


def claimed_types(att: Attachment) -> tuple[str, ...]:
    """What the attachment says it is: its declared type, then the type its name implies."""
    claims = (_mime(att.content_type), type_of_name(att.filename) or "")
    return tuple(dict.fromkeys(c for c in claims if c not in _VAGUE_CLAIMS))


def _compatible(actual: str, claim: str) -> bool:
    if actual == claim:
        return True
    major = actual.partition("/")[0]
    if major in _MEDIA_MAJORS and major == claim.partition("/")[0]:
        return True
    family = _family(actual)
    return family is not None and family == _family(claim)


def content_matches(actual: str, claims: tuple[str, ...]) -> bool:
    """Whether sniffed type ``actual`` fits any of ``claims`` (all normalised MIME types).

    Generous on purpose: libmagic names many formats generically (a .docx is often just a
    zip, a .csv just text/plain), and dropping a good file costs the customer more than a
    label that is loose but names the same kind of content.
    """
    if actual in _GENERIC_SNIFFED or not claims:
        return True
    return any(_compatible(actual, claim) for claim in claims)


def check_content(att: Attachment, head: bytes, sniff: Sniffer) -> StrippedAttachment | None:
    """Refuse a file whose bytes are not what its type and name claim (``content_mismatch``).

    ``head`` is the start of the file; only the first ``SNIFF_BYTES`` are passed to ``sniff``.
    """
    actual = _mime(sniff(head[:SNIFF_BYTES]))
    claims = claimed_types(att)
    if content_matches(actual, claims):
        return None
    message = (
        f"{shown_name(att.filename)} claims {' or '.join(claims)} but its content is {actual},"
        " so it was removed."
    )
    return _strip(att, "content_mismatch", message)


# --- all together ---------------------------------------------------------------------------


def first_failure(
    att: Attachment,
    *,
    policy: AttachmentPolicy,
    read_head: Callable[[], bytes],
    sniff: Sniffer,
) -> StrippedAttachment | None:
    """Run the five checks in order and return the first failure, or ``None``.

    ``read_head`` is called only when the cheap checks pass, so an empty, oversized or
    badly named file is never read from the store.
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
    return check_content(att, read_head(), sniff)


def _strip(att: Attachment, reason: str, message: str) -> StrippedAttachment:
    return StrippedAttachment(
        filename=att.filename,
        reason=reason,
        message=message,
        content_type=att.content_type,
        size=att.size,
    )
