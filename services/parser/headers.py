"""Header fields of a parsed mail: addresses, subject, date, threading ids, auto-reply.

Every lazy read of the stdlib ``email`` package is guarded, because real mail trips bugs in
it (``AttributeError`` on some group addresses); a header that cannot be parsed is read
leniently from its raw value, and the problem becomes a defect string.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email import errors
from email.message import Message
from email.utils import getaddresses

from contracts.mail import Address, ParsedMail
from services.parser.words import decode_words, has_raw_8bit, text_of
from services.runtime.message_ids import first_message_id, message_ids

_BOM = b"\xef\xbb\xbf"
# email.feedparser.headerRE (a field, a continuation, an mbox "From " line), plus fields
# with the obsolete space before the colon.
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*[ \t]*:|[ \t]")
_OBS_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]+:")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
# An unquoted boundary holding "=" (Outlook Express wrote "----=_NextPart_..."): the stdlib
# stops the value at the "=", and then never finds the boundary.
# A boundary parameter (after ';') whose unquoted value holds '=': Outlook Express wrote
# these, and the stdlib cuts the value at the '='. Quoted values are left alone.
_BARE_BOUNDARY = re.compile(rb'(;\s*boundary\s*=\s*)([^"\s;][^\s;]*=[^\s;]*)', re.IGNORECASE)
_AUTO_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk"})
_MAX_DEFECT_TEXT = 120
_MAILROOM_PREFIX = "x-mailroom-"


def repair_header_block(head: bytes) -> tuple[bytes, list[str]]:
    """Undo header damage after which the stdlib parser takes all the rest for body text.

    ``head`` is the header block only (up to the blank line), so a big mail is not split
    into lines here.
    """
    notes = []
    if head.startswith(_BOM):
        head = head[len(_BOM) :]
        notes.append("header block: leading UTF-8 byte-order mark removed")
    lines = head.splitlines(keepends=True)
    for i, line in enumerate(lines):
        following = lines[i + 1] if i + 1 < len(lines) else b""
        lines[i], note = _repair_header_line(line, following, first=i == 0)
        notes += [note] if note else []
    head, quoted = _BARE_BOUNDARY.subn(rb'\1"\2"', b"".join(lines))
    notes += ["header block: boundary with '=' was not quoted"] if quoted else []
    return head, dedupe(notes)


def is_header_line(line: bytes) -> bool:
    """Whether ``line`` can belong to a header block: a field, a continuation, ``From ``."""
    return _HEADER_LINE.match(line) is not None


def _repair_header_line(line: bytes, following: bytes, *, first: bool) -> tuple[bytes, str]:
    obsolete = _OBS_FIELD_NAME.match(line)
    if obsolete:  # "Subject  : x" is obsolete syntax that RFC 5322 §4.5 still allows
        return obsolete.group(1) + line[obsolete.end() - 1 :], "header block: space before ':'"
    if not first and not _HEADER_LINE.match(line) and _HEADER_LINE.match(following):
        # A continuation line that lost its indentation, or junk between two fields.
        return b" " + line, "header block: line without a field name folded into the field above"
    return line, ""


def header_fields(msg: Message, raw: bytes, notes: list[str]) -> ParsedMail:
    """The header fields of ``msg``, parsed from ``raw``; problems are appended to ``notes``.

    A mail without Message-ID gets ``<first 32 hex of sha256(raw)@mailroom.invalid>``.
    """
    message_id = _message_id(msg, notes)
    return ParsedMail(
        message_id=message_id or f"<{hashlib.sha256(raw).hexdigest()[:32]}@mailroom.invalid>",
        message_id_synthetic=not message_id,
        from_=next(iter(_addresses(msg, "From", notes)), None),
        sender=next(iter(_addresses(msg, "Sender", notes)), None),
        reply_to=_addresses(msg, "Reply-To", notes),
        to=_addresses(msg, "To", notes),
        cc=_addresses(msg, "Cc", notes),
        subject=subject(msg, notes),
        date=_date(msg, notes),
        in_reply_to=_message_ids(msg, "In-Reply-To"),
        references=_message_ids(msg, "References"),
        auto_reply=is_auto_reply(msg),
        mailing_list=is_list_mail(msg),
        sent_by_mailroom=is_mailroom_notification(msg),
    )


def raw_values(msg: Message, name: str) -> list[str]:
    """Every value of header ``name`` as it came, unfolded; never runs the header parser."""
    wanted = name.lower()
    return [_FOLD.sub("", str(v)) for k, v in msg.raw_items() if k.lower() == wanted]


def first_raw(msg: Message, name: str) -> str:
    return next(iter(raw_values(msg, name)), "")


def _parsed_headers(msg: Message, name: str, notes: list[str]) -> list[object] | None:
    """Every ``name`` header parsed by the policy, its defects noted; None when that fails."""
    try:
        headers: list[object] = msg.get_all(name) or []
    except Exception as exc:  # the stdlib header parser has bugs; see the module docstring
        notes.append(f"header {name}: unparseable ({type(exc).__name__}); read leniently")
        return None
    for header in headers:
        notes.extend(describe(d, f"header {name}") for d in getattr(header, "defects", ()))
    return headers


def _message_id(msg: Message, notes: list[str]) -> str:
    values = [v.strip() for v in raw_values(msg, "Message-ID")]
    if len(values) > 1:
        notes.append(f"header Message-ID: appears {len(values)} times; the first one is used")
    value = next(iter(values), "")
    found = first_message_id(value)
    if value.strip() and found is None:
        shown = one_line(text_of(value))[:60]
        notes.append(f"header Message-ID: names no usable id ({shown!r})")
    return found or ""


def _message_ids(msg: Message, name: str) -> list[str]:
    return dedupe([m for value in raw_values(msg, name) for m in message_ids(value)])


def _addresses(msg: Message, name: str, notes: list[str]) -> list[Address]:
    headers = _parsed_headers(msg, name, notes)
    try:
        pairs = [(a.display_name, a.addr_spec) for h in headers or () for a in h.addresses]  # type: ignore[attr-defined]
    except Exception as exc:  # e.g. AttributeError on a Group: a stdlib bug
        notes.append(f"header {name}: unparseable ({type(exc).__name__}); read leniently")
        headers = None
    if headers is None:
        pairs = getaddresses(raw_values(msg, name))
    _note_8bit(msg, name, notes)
    return [
        Address(name=one_line(_display_name(n, name, notes)), email=one_line(text_of(e)))
        for n, e in pairs
        if e.strip()
    ]


def _display_name(name: str, header: str, notes: list[str]) -> str:
    # The policy decodes well-formed encoded words; broken ones (no "?=", an unknown
    # charset) are still there, and are decoded leniently.
    return decode_words(name, notes, f"header {header}") if "=?" in name else text_of(name)


def subject(msg: Message, notes: list[str] | None = None) -> str:
    """The decoded Subject; problems go to ``notes`` when given."""
    # From the raw value: the policy turns raw 8-bit bytes that are not UTF-8 into U+FFFD.
    if notes is not None:
        _note_8bit(msg, "Subject", notes)
    return one_line(decode_words(first_raw(msg, "Subject"), notes, "header Subject"))


def _note_8bit(msg: Message, name: str, notes: list[str]) -> None:
    # Raw UTF-8 is allowed (RFC 6532); other raw 8-bit bytes are a guess.
    if any(has_raw_8bit(v) for v in raw_values(msg, name)):
        notes.append(f"header {name}: raw 8-bit bytes that are not UTF-8; read as cp1252")


def _date(msg: Message, notes: list[str]) -> datetime | None:
    when = getattr(next(iter(_parsed_headers(msg, "Date", notes) or []), None), "datetime", None)
    if not isinstance(when, datetime):
        return None
    # "-0000" means "UTC, local zone unknown" (RFC 5322 §3.3); the stdlib leaves it naive.
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def is_list_mail(msg: Message) -> bool:
    """Whether ``msg`` came through a mailing list. Never raises."""
    precedence = " ".join(raw_values(msg, "Precedence")).strip().lower()
    return precedence == "list" or bool(raw_values(msg, "List-Id"))


def is_mailroom_notification(msg: Message) -> bool:
    """Whether ``msg`` carries the marks of Mailroom's own notifications. Never raises.

    The notifier sends every mail with ``Auto-Submitted: auto-generated`` and an
    ``X-Mailroom-*`` header; both together mark one of ours.
    """
    generated = any(_token(v) == "auto-generated" for v in raw_values(msg, "Auto-Submitted"))
    return generated and any(k.lower().startswith(_MAILROOM_PREFIX) for k in msg.keys())


def is_auto_reply(msg: Message) -> bool:
    """Whether ``msg`` was sent by a machine (auto-reply, bulk mail, bounce). Never raises.

    Signals: ``Auto-Submitted`` other than ``no``, ``X-Autoreply``/``X-Autorespond``,
    ``Precedence: auto_reply|bulk|junk``, a null ``Return-Path: <>`` (how bounces are sent),
    or a ``multipart/report`` delivery-status report.
    """
    if any(_token(v) != "no" for v in raw_values(msg, "Auto-Submitted")):
        return True
    if raw_values(msg, "X-Autoreply") or raw_values(msg, "X-Autorespond"):
        return True
    if any(_token(v) in _AUTO_PRECEDENCE for v in raw_values(msg, "Precedence")):
        return True
    if any("".join(v.split()) == "<>" for v in raw_values(msg, "Return-Path")):
        return True
    report_type = msg.get_param("report-type", "", header="content-type")
    is_report = msg.get_content_type() == "multipart/report" and isinstance(report_type, str)
    return is_report and report_type.strip().lower() == "delivery-status"


def _token(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def describe(defect: errors.MessageDefect, where: str) -> str:
    """A defect the stdlib recorded, as one short line."""
    detail = str(defect) or (type(defect).__doc__ or "").strip().split("\n")[0]
    detail = one_line(text_of(detail))[:_MAX_DEFECT_TEXT]
    return f"{type(defect).__name__} in {where}: {detail}"


def one_line(value: str) -> str:
    return " ".join(value.split())


def dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
