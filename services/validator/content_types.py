"""What a file name, a declared type and sniffed content say a file is, as MIME types.

Pure tables and functions. Labels differ for one kind of content (libmagic says
``application/zip`` for many Office files, mail programs say ``application/x-zip-compressed``),
so types are compared by *family*: Office Open XML and OpenDocument are zip containers,
``.txt``/``.csv``/``.log`` and mails (``message/rfc822``) are text, and so on.
"""

from __future__ import annotations

import mimetypes

from services.validator.policy import normalise_extension

_OOXML = "application/vnd.openxmlformats-officedocument"
_ODF = "application/vnd.oasis.opendocument"
PE_TYPES = frozenset(
    {
        "application/vnd.microsoft.portable-executable",
        "application/x-dosexec",
        "application/x-msdownload",
        "application/x-msdos-program",
        "application/x-ms-dos-executable",
        "application/x-executable-pe",
    }
)

#: The type each common extension stands for. Looked up before the system's mime.types, so
#: the extensions mail carries most are judged the same on every installation.
NAME_TYPES: dict[str, str] = {
    "pdf": "application/pdf",
    "ai": "application/pdf",  # Illustrator: PDF inside (PostScript before CS)
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "txt": "text/plain",
    "log": "text/plain",
    "csv": "text/csv",
    "md": "text/markdown",
    "eml": "message/rfc822",
    "ics": "text/calendar",
    "vcf": "text/vcard",
    "html": "text/html",
    "htm": "text/html",
    "xml": "application/xml",
    "json": "application/json",
    "rtf": "text/rtf",
    "docx": f"{_OOXML}.wordprocessingml.document",
    "xlsx": f"{_OOXML}.spreadsheetml.sheet",
    "pptx": f"{_OOXML}.presentationml.presentation",
    "odt": f"{_ODF}.text",
    "ods": f"{_ODF}.spreadsheet",
    "odp": f"{_ODF}.presentation",
    "doc": "application/msword",
    "xls": "application/vnd.ms-excel",
    "ppt": "application/vnd.ms-powerpoint",
    "msg": "application/vnd.ms-outlook",
    "zip": "application/zip",
    "gz": "application/gzip",
    "tgz": "application/gzip",
    "7z": "application/x-7z-compressed",
    "rar": "application/x-rar",
    "jar": "application/java-archive",
    "epub": "application/epub+zip",
    "exe": "application/vnd.microsoft.portable-executable",
    "dll": "application/vnd.microsoft.portable-executable",
    "scr": "application/vnd.microsoft.portable-executable",
    "msi": "application/x-msi",
    "sh": "text/x-shellscript",
    "bat": "text/x-msdos-batch",
    "cmd": "text/x-msdos-batch",
    "js": "text/javascript",
    "vbs": "text/vbscript",
    "ps1": "text/x-powershell",
}

# Sniffed types worth an extension of their own, beyond reversing NAME_TYPES.
_EXTENSION_OF_SNIFFED = {
    **dict.fromkeys(PE_TYPES, "exe"),
    "application/javascript": "js",
    "application/x-sh": "sh",
    "text/x-sh": "sh",
    "application/x-ms-shortcut": "lnk",
    "application/vnd.ms-cab-compressed": "cab",
}

# Claims that say nothing about the content; a file that claims only these cannot mismatch.
VAGUE_TYPES = frozenset(
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
# Sniffed types that say nothing about what the file is meant to be: libmagic's "no idea",
# and password-protected Office files, which it only knows as encrypted.
UNTELLING_SNIFFED = frozenset({"", "application/octet-stream", "application/encrypted"})

# Media kinds whose labels may differ freely: a JPEG labelled image/png is still an image, and
# one MP4 or Ogg file is audio or video depending on what it holds.
_MEDIA_KINDS = {"image": "image", "text": "text", "audio": "media", "video": "media"}
# Containers that many application formats are built on (Visio, iWork, Publisher, ...).
_CONTAINERS = frozenset({"zip", "ole"})
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
            "application/x-msi",
        ),
        "ole",
    ),
    **dict.fromkeys(PE_TYPES, "exe"),
    **dict.fromkeys(("application/gzip", "application/x-gzip"), "gzip"),
    **dict.fromkeys(("application/pdf", "application/x-pdf", "application/postscript"), "pdf"),
    **dict.fromkeys(
        ("application/x-rar", "application/x-rar-compressed", "application/vnd.rar"), "rar"
    ),
    **dict.fromkeys(("application/ms-tnef", "application/vnd.ms-tnef"), "tnef"),
}
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

_DESCRIPTIONS = {
    "application/pdf": "a PDF document",
    "image/png": "a PNG image",
    "image/jpeg": "a JPEG image",
    "image/gif": "a GIF image",
    "text/plain": "plain text",
    "text/csv": "a CSV table",
    "text/html": "a web page (HTML)",
    "message/rfc822": "an email message",
    "application/zip": "a zip archive",
    "text/x-shellscript": "a shell script",
    "text/x-msdos-batch": "a Windows batch script",
    f"{_OOXML}.wordprocessingml.document": "a Word document",
    f"{_OOXML}.spreadsheetml.sheet": "an Excel workbook",
    f"{_OOXML}.presentationml.presentation": "a PowerPoint presentation",
    f"{_ODF}.text": "an OpenDocument text document",
    f"{_ODF}.spreadsheet": "an OpenDocument spreadsheet",
    "application/msword": "a Word 97-2003 document",
    "application/vnd.ms-excel": "an Excel 97-2003 workbook",
    **dict.fromkeys(PE_TYPES, "a Windows program"),
}
_MAJOR_DESCRIPTIONS = {"image": "an image", "text": "text", "audio": "audio", "video": "a video"}


def mime(value: str) -> str:
    """``"Text/Plain; charset=utf-8"`` -> ``"text/plain"``."""
    return value.split(";", 1)[0].strip().lower()


def last_extension(name: str) -> str | None:
    """The extension that decides what a file is: ``"invoice.pdf.EXE"`` -> ``"exe"``.

    Only the last one counts, as for the programs that open the file: ``report.example.com.pdf``
    is a PDF. Trailing dots and spaces are ignored, as Windows ignores them. ``None`` when the
    name has no extension.
    """
    _stem, dot, suffix = name.rstrip(". ").rpartition(".")
    extension = normalise_extension(suffix) if dot else ""
    return extension or None


def type_of_name(name: str) -> str | None:
    """The MIME type a file name implies by its last extension, or ``None`` if unknown."""
    extension = last_extension(name)
    if extension is None:
        return None
    if extension in NAME_TYPES:
        return NAME_TYPES[extension]
    # A synthetic name: guess_type parses URLs, and only the extension matters here.
    guessed, encoding = mimetypes.guess_type(f"f.{extension}", strict=False)
    return None if guessed is None or encoding else mime(guessed)


def extension_of_type(sniffed: str) -> str | None:
    """The extension a file of sniffed type ``sniffed`` would have (``"exe"`` for a PE).

    ``None`` when the type says nothing (``application/octet-stream``) or has no known
    extension. Used to judge a file that has no extension of its own.
    """
    if sniffed in UNTELLING_SNIFFED:
        return None
    if sniffed in _EXTENSION_OF_SNIFFED:
        return _EXTENSION_OF_SNIFFED[sniffed]
    known = next((ext for ext, kind in NAME_TYPES.items() if kind == sniffed), None)
    guessed = known or mimetypes.guess_extension(sniffed, strict=False)
    return normalise_extension(guessed) if guessed else None


def family(kind: str) -> str | None:
    """The kind of content a MIME type names, where several labels name one kind."""
    if kind.startswith((f"{_OOXML}.", f"{_ODF}.")) or kind.endswith("+zip"):
        return "zip"  # Office Open XML, OpenDocument, EPUB: all zip containers
    if ".macroenabled." in kind:
        return "zip"
    if kind.startswith(("text/", "message/")) or kind.endswith(("+xml", "+json")):
        return "text"  # a mail (message/rfc822) is text too
    return "text" if kind in _TEXT_LIKE else _FAMILIES.get(kind)


def compatible(sniffed: str, claim: str) -> bool:
    """Whether content sniffed as ``sniffed`` can honestly be labelled ``claim``.

    Generous on purpose: the same type, the same media kind (a JPEG labelled ``image/png``
    is still an image), the same family, or a zip or OLE container labelled with an
    application type that has no family here (``application/vnd.apple.pages``): those
    containers hold too many formats to list them all.
    """
    if sniffed == claim:
        return True
    media = _MEDIA_KINDS.get(sniffed.partition("/")[0])
    if media is not None and media == _MEDIA_KINDS.get(claim.partition("/")[0]):
        return True
    kind, claimed_kind = family(sniffed), family(claim)
    if kind is not None and kind == claimed_kind:
        return True
    return kind in _CONTAINERS and claimed_kind is None and claim.startswith("application/")


def describe(kind: str) -> str:
    """A MIME type in words, for messages: ``"image/png"`` -> ``"a PNG image"``."""
    if kind in _DESCRIPTIONS:
        return _DESCRIPTIONS[kind]
    major = kind.partition("/")[0]
    if major in _MAJOR_DESCRIPTIONS:
        return f"{_MAJOR_DESCRIPTIONS[major]} ({kind})"
    return f"a file of type {kind}"
