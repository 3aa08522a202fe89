"""What ``mailroom mailbox test`` shows of a sample mail: headers and attachment names only."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from typing import Any


def describe_sample(raw: bytes) -> dict[str, Any]:
    """From, To, Subject, Date, size and attachment names of a raw mail (never its body)."""
    msg = BytesParser(policy=policy.default).parsebytes(raw, headersonly=False)
    return {
        "from": _header(msg, "From"),
        "to": _header(msg, "To"),
        "subject": _header(msg, "Subject"),
        "date": _header(msg, "Date"),
        "size": len(raw),
        "attachments": [
            part.get_filename() or part.get_content_type()
            for part in msg.walk()
            if not part.is_multipart() and (part.get_filename() or part.is_attachment())
        ],
    }


def _header(msg: Any, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001 - a malformed header is shown raw, never fatal
        value = msg.get_all(name, [""])[0] if hasattr(msg, "get_all") else ""
    return str(value or "")
