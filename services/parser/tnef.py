"""TNEF (``winmail.dat``, application/ms-tnef): the files Outlook wrapped inside it.

``tnefparse`` reads the format. Outlook items attached inside (a task, a meeting, a mail)
become a text file with their body, plus their own files.
"""

from __future__ import annotations

import mimetypes

from tnefparse.tnef import TNEF

from services.parser.words import bytes_as_text

_MAX_NESTING = 3  # items inside items inside items: enough for what Outlook sends
# tnefparse copies the rest of the blob for each object it reads: a blob of a great many
# small objects (1 MB of zeros, 95,000 of them) took it 2 s. Past this many bytes copied the
# blob is left whole, as an unreadable one is.
_MOST_COPIED = 1024 * 1024 * 1024
_FIRST_OBJECT = 6  # after the signature and the key
_OBJECT_FRAME = 11  # an object's level, name, type, length and checksum
_MIN_OBJECT = 12  # tnefparse reads no object from fewer bytes
_TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})


def is_tnef(content_type: str, filename: str) -> bool:
    return content_type in _TNEF_TYPES or filename.lower() == "winmail.dat"


def unpack(data: bytes) -> list[tuple[str, str, bytes]] | None:
    """The files in a TNEF blob as (filename, content type, bytes); None when unreadable.

    An empty list means a readable blob that holds only Outlook's copy of the message text.
    """
    if _copied(data) > _MOST_COPIED:
        return None
    try:
        tnef = TNEF(data, do_checksum=False)
        files = _files(tnef, depth=0)
        if not files and not tnef.has_body():
            return None  # nothing recognisable in it: likely damaged, so keep it whole
    except Exception:  # any failure inside the library means "unreadable"
        return None
    # Outlook repeats a file of an attached item at the top level; one copy is enough.
    return list(dict.fromkeys(files))


def _copied(data: bytes) -> int:
    """The bytes tnefparse would copy to read ``data`` (up to a little past the most
    allowed), walking its objects as tnefparse does."""
    offset, copied = _FIRST_OBJECT, 0
    while offset + _MIN_OBJECT < len(data) and copied <= _MOST_COPIED:
        left = len(data) - offset
        copied += left
        offset += min(left, int.from_bytes(data[offset + 5 : offset + 9], "little") + _OBJECT_FRAME)
    return copied


def _files(tnef: TNEF, depth: int) -> list[tuple[str, str, bytes]]:
    files = []
    for number, attachment in enumerate(tnef.attachments, start=1):
        embedded = getattr(attachment, "embed", None)
        if embedded is not None and depth < _MAX_NESTING:
            files += _item(embedded, _name(attachment, number), depth)
        else:
            files.append(_file(_name(attachment, number), bytes(attachment.data)))
    return files


def _item(item: TNEF, fallback: str, depth: int) -> list[tuple[str, str, bytes]]:
    """An Outlook item: its text as ``<subject>.txt``, then its own files."""
    title = _subject(item) or fallback
    body = item.body
    text = body if isinstance(body, str) else bytes_as_text(body or b"")
    own = [_file(f"{title}.txt", text.encode("utf-8"))] if text.strip() else []
    return own + _files(item, depth + 1)


def _subject(item: TNEF) -> str:
    found = [p.data for p in item.msgprops if p.name == TNEF.ATTSUBJECT]
    return _text(found[0]).strip() if found else ""


def _name(attachment: object, number: int) -> str:
    for read in ("long_filename", "name"):
        try:
            value = getattr(attachment, read)
            name = _text(value() if callable(value) else value).strip("\x00 ")
        except Exception:  # a name the library cannot read: try the next one
            continue
        if name:
            return name
    return f"attachment-{number}.bin"


def _text(value: object) -> str:
    return bytes_as_text(value) if isinstance(value, bytes) else str(value)


def _file(name: str, data: bytes) -> tuple[str, str, bytes]:
    guessed = mimetypes.guess_type(name, strict=False)[0]
    return name, guessed or "application/octet-stream", data
