"""A mail's header block and MIME tree as text, never a body: for debug traces, error logs and
listings."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser
from email.policy import compat32, default
from typing import Any

from services.runtime.message_ids import first_message_id

_MAX_HEADER_CHARS = 64 * 1024
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def describe_mail(raw: bytes) -> str:
    """The header block of a raw mail and its MIME tree, for the debug log; never a body.

    Each part of the tree shows its content type, disposition, file name, transfer encoding
    and decoded size. Never raises: an unreadable structure is described as such.
    """
    return f"{header_block(raw)}\n{mime_tree(raw)}"


def header_block(raw: bytes) -> str:
    """The mail's header lines as text, up to the blank line that ends them."""
    end = _HEADER_END.search(raw)
    head = _text(raw[: end.start() if end else len(raw)]).replace("\r\n", "\n")
    if len(head) > _MAX_HEADER_CHARS:
        return head[:_MAX_HEADER_CHARS] + f"\n(header block cut at {_MAX_HEADER_CHARS} chars)"
    return head


def mime_tree(raw: bytes) -> str:
    """One indented line per MIME part: ``text/plain inline charset=utf-8 quoted-printable 12
    bytes``."""
    try:
        lines: list[str] = []
        _walk(message_from_bytes(raw, policy=compat32), 0, lines)
        return "\n".join(lines)
    except Exception as exc:  # a debug aid must never break fetching
        return f"(MIME structure unreadable: {type(exc).__name__})"


def _walk(part: Message, depth: int, lines: list[str]) -> None:
    lines.append("  " * depth + _describe_part(part))
    if part.is_multipart():
        for child in part.get_payload():
            if isinstance(child, Message):
                _walk(child, depth + 1, lines)


def _describe_part(part: Message) -> str:
    bits = [part.get_content_type(), part.get_content_disposition() or ""]
    if name := part.get_filename():
        bits.append(repr(name))
    if charset := part.get_param("charset"):
        bits.append(f"charset={charset}")
    if not part.is_multipart():
        bits.append(str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower())
        bits.append(f"{len(part.get_payload(decode=True) or b'')} bytes")
    if part.defects:
        bits.append("defects: " + ", ".join(type(d).__name__ for d in part.defects))
    return " ".join(b for b in bits if b)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def header_summary(head: bytes) -> dict[str, Any]:
    """``{"from": {"name", "email"} | None, "subject"}`` read from the start of a raw mail.

    For listings of mail that is on no request. Never raises: a header the stdlib cannot
    parse is shown as it came.
    """
    # Raw 8-bit header text is UTF-8 when it is anything standard (RFC 6532).
    msg = HeaderParser(policy=default).parsestr(head.decode("utf-8", "replace"), headersonly=True)
    return {"from": _first_address(msg, "From"), "subject": _header_text(msg, "Subject")}


def _first_address(msg: Message, name: str) -> dict[str, str] | None:
    try:
        header: Any = msg[name]
        found = next(iter(header.addresses), None) if header is not None else None
    except Exception:  # the stdlib's header parser has bugs on odd mail
        raw = _header_text(msg, name)
        return {"name": "", "email": raw} if raw else None
    if found is None:
        return None
    return {"name": str(found.display_name), "email": str(found.addr_spec)}


def _header_text(msg: Message, name: str) -> str:
    try:
        value = msg[name]
    except Exception:  # as above
        value = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), "")
    return " ".join(str(value or "").split())


def message_id_of(raw: bytes) -> str | None:
    """The ``<...>`` Message-ID of a raw mail (or of a header block), read from its header
    block only (cheap, never raises), as ``message_ids.first_message_id`` reads it."""
    end = _HEADER_END.search(raw, 0, 1 << 20)
    head = raw[: end.start() if end else 65536]
    headers = BytesHeaderParser(policy=compat32).parsebytes(head)
    # raw_items: the value as it came; get() would turn raw 8-bit bytes into U+FFFD.
    values = (str(v) for k, v in headers.raw_items() if k.lower() == "message-id")
    return first_message_id(next(values, ""))
