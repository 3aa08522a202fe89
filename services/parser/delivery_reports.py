"""Delivery status notifications (RFC 3464): which recipients failed, and the returned mail.

A report is ``multipart/report; report-type=delivery-status``. Its ``message/delivery-status``
part holds one header block for the message, then one per recipient; the stdlib parser gives
each block as a header-only ``Message``. The returned mail, or only its header, follows as
``message/rfc822`` or ``text/rfc822-headers``; its Message-ID tells which mail bounced.

Real reports stray from the RFC: the status part may hold prose, or carry base64 text after a
``Content-Transfer-Encoding`` line inside a block (a gateway re-encoded it); both are read.
Nothing here raises: a report that cannot be read is a defect note and no report.
"""

from __future__ import annotations

import binascii
import re
from email import policy
from email.message import Message
from email.parser import HeaderParser

from contracts.mail import DeliveryReport, DeliveryStatus
from services.parser.headers import one_line, raw_values
from services.parser.parts import all_parts
from services.parser.words import text_of
from services.runtime.message_ids import first_message_id

_BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")
_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_RETURNED_MAIL = frozenset({"message/rfc822", "message/global"})
_RETURNED_HEADERS = frozenset(
    {"text/rfc822-headers", "message/rfc822-headers", "message/global-headers"}
)
_MAX_RECIPIENTS = 100  # a report listing more is cut: the note on the request stays readable
_MAX_DIAGNOSTIC = 500


def delivery_report(msg: Message, notes: list[str]) -> DeliveryReport | None:
    """The delivery report in ``msg``, or None when ``msg`` is not one; never raises."""
    report = _report_part(msg)
    if report is None:
        return None
    try:
        return _read(report)
    except Exception as exc:  # the stdlib has bugs on odd mail; see headers.py
        notes.append(f"delivery report: unreadable ({type(exc).__name__}); read as a plain mail")
        return None


def _report_part(msg: Message) -> Message | None:
    for part in all_parts(msg):
        if part.get_content_type() != "multipart/report":
            continue
        kind = part.get_param("report-type", "", header="content-type")
        if isinstance(kind, str) and kind.strip().lower() == "delivery-status":
            return part
    return None


def _read(report: Message) -> DeliveryReport:
    blocks = [b for p in _children(report) if _is_status(p) for b in _blocks(p)]
    per_message = next((b for b in blocks if _field(b, "Reporting-MTA")), None)
    recipients = [r for r in map(_recipient, blocks) if r is not None]
    envelope = _field(per_message, "Original-Envelope-Id") if per_message is not None else ""
    return DeliveryReport(
        original_message_id=_original_message_id(report),
        envelope_id=envelope or None,
        recipients=recipients[:_MAX_RECIPIENTS],
    )


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _is_status(part: Message) -> bool:
    return part.get_content_type() in _STATUS_TYPES


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a status part, base64 text inside it decoded and read too."""
    payload = part.get_payload()
    if isinstance(payload, str):  # the stdlib left it unparsed (e.g. a transfer encoding)
        return _blocks_of_text(_decoded(payload, _encoding(part)))
    blocks: list[Message] = []
    encoding = _encoding(part)
    for block in _children(part):
        if block.keys():
            blocks.append(block)
            encoding = _encoding(block) or encoding
        elif isinstance(text := block.get_payload(), str) and encoding == "base64":
            blocks += _blocks_of_text(_decoded(text, encoding))
    return blocks


def _encoding(part: Message) -> str:
    return one_line(" ".join(raw_values(part, "Content-Transfer-Encoding"))).lower()


def _decoded(text: str, encoding: str) -> str:
    if encoding != "base64":
        return text
    try:
        return binascii.a2b_base64(text.encode("ascii", "replace")).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


def _blocks_of_text(text: str) -> list[Message]:
    parser = HeaderParser(policy=policy.compat32)
    return [parser.parsestr(chunk.strip() + "\n") for chunk in _BLANK_LINE.split(text)]


def _recipient(block: Message) -> DeliveryStatus | None:
    address = _address(_field(block, "Final-Recipient") or _field(block, "Original-Recipient"))
    if not address:
        return None
    return DeliveryStatus(
        address=address,
        action=_field(block, "Action").lower(),
        status=_field(block, "Status"),
        diagnostic=_field(block, "Diagnostic-Code")[:_MAX_DIAGNOSTIC],
    )


def _address(value: str) -> str:
    """``rfc822; <ann@example.org>`` -> ``ann@example.org``; other address types as given."""
    kind, sep, address = value.partition(";")
    address = (address if sep else kind).strip().strip("<>").strip()
    return address


def _field(block: Message, name: str) -> str:
    # Raw 8-bit bytes come as lone surrogates, which no JSON message can carry.
    return one_line(text_of(next(iter(raw_values(block, name)), "")))


def _original_message_id(report: Message) -> str | None:
    for part in _children(report):
        ctype = part.get_content_type()
        if ctype in _RETURNED_MAIL and _children(part):
            found = _message_id(_children(part)[0])
        elif ctype in _RETURNED_HEADERS:
            found = _message_id(_headers_of(part))
        else:
            continue
        if found:
            return found
    return None


def _headers_of(part: Message) -> Message:
    payload = part.get_payload(decode=True)
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return HeaderParser(policy=policy.compat32).parsestr(text, headersonly=True)


def _message_id(headers: Message) -> str | None:
    return first_message_id(next(iter(raw_values(headers, "Message-ID")), ""))
