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
from email import policy as policies
from email.message import Message
from email.policy import EmailPolicy
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from contracts.mail import Address, ParsedMail
from services.parser.addresses import (
    LONG_ENTRY,
    LONG_FIELD,
    addresses_in,
    long_field_entries,
    plain_addresses,
)
from services.parser.charsets import header_codec
from services.parser.words import decode_words, encoded_word_charsets, parameter, raw_8bit, text_of
from services.runtime.message_ids import first_message_id, message_ids

_BOM = b"\xef\xbb\xbf"
# email.feedparser.headerRE (a field, a continuation, an mbox "From " line), plus fields
# with the obsolete space before the colon.
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*[ \t]*:|[ \t]")
_OBS_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]+:")
# At most this many lines that are no field can stand between two fields: a value whose
# continuation lines lost their indentation (a gateway rewrapped it) stays one field.
LOST_LINES = 5
_FOLD = re.compile(r"\r?\n(?=[ \t])")
# A fold inside an encoded word (the word closes on the next line): the fold's white space
# was never part of the text.
_FOLD_IN_WORD = re.compile(r"(=\?[^?\s]+\?[QqBb]\?[^?\s]*)\r?\n[ \t]+(?=[^?\s]*\?=)")
# A domain ending in a dot ("a@yahoo.com."): the address is meant without it.
_TRAILING_DOT = re.compile(r"(@[^\s<>@,;\"]*[^\s<>@,;\".])\.+(?=\s*(?:>|,|$))")
# An address: a local part (a quoted one may hold spaces: "john smith"@example.com) and a
# domain.
_MAILBOX = re.compile(r'(?:"(?:[^"\\\r\n]|\\.)+"|[^@\s<>"]+)@[^@\s<>"]+')
# An unquoted boundary holding "=" (Outlook Express wrote "----=_NextPart_..."): the stdlib
# stops the value at the "=", and then never finds the boundary.
# A boundary parameter (after ';') whose unquoted value holds '=': Outlook Express wrote
# these, and the stdlib cuts the value at the '='. Quoted values are left alone.
_BARE_BOUNDARY = re.compile(rb'(;\s*boundary\s*=\s*)([^"\s;][^\s;]*=[^\s;]*)', re.IGNORECASE)
# The charset of an RFC 2231 parameter value (``name*=utf-16'en'%41``).
_PARAMETER_CHARSET = re.compile(r"(\*\s*=\s*\"?)([^'\"\s;=]+)(?=')")
_AUTO_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk"})
_MAX_DEFECT_TEXT = 120
_MAILROOM_PREFIX = "x-mailroom-"
#: The full address parser takes about a millisecond an entry: of a long field (or many
#: fields of one name) it reads at most this many entries that are not plain, the rest
#: leniently; and of all of them at most MOST_ADDRESSES are kept.
FULLY_PARSED = 100
MOST_ADDRESSES = 1000


class LenientPolicy(EmailPolicy):
    """The stdlib's modern policy, except that reading a header never raises.

    Its header parser decodes RFC 2231 parameters with whatever codec the mail names, and
    UTF-16, ISO-2022 or IDNA raise on most bytes; every lazy header access (the content
    type, ``get_body``) would then fail. Such a header is parsed again with those charsets
    read as UTF-8, and failing that as empty. Only what the stdlib parses changes: this
    package reads parameters from the raw values.
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        try:
            return super().header_fetch_parse(name, value)
        except Exception:  # the stdlib header parser has bugs; see the module docstring
            pass
        try:
            return super().header_fetch_parse(name, _PARAMETER_CHARSET.sub(r"\1utf-8", value))
        except Exception:
            return super().header_fetch_parse(name, "")


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
    junk = _leading_junk(lines)
    if junk:
        # "---- Original email message ----" pasted above the header by a forwarding tool.
        lines = lines[junk:]
        notes.append(f"header block: {junk} line(s) before the first field dropped")
    for i, line in enumerate(lines):
        lines[i], note = _repair_header_line(line, lines[i + 1 : i + 1 + LOST_LINES], first=i == 0)
        notes += [note] if note else []
    head, quoted = _BARE_BOUNDARY.subn(rb'\1"\2"', b"".join(lines))
    notes += ["header block: boundary with '=' was not quoted"] if quoted else []
    return head, dedupe(notes)


def _leading_junk(lines: list[bytes]) -> int:
    """How many lines at the top are no header line while header lines follow them."""
    junk = 0
    while junk < min(LOST_LINES, len(lines)) and not is_header_line(lines[junk]):
        junk += 1
    return junk if junk < len(lines) and header_goes_on(lines[junk:]) else 0


def is_header_line(line: bytes) -> bool:
    """Whether ``line`` can belong to a header block: a field, a continuation, ``From ``."""
    return _HEADER_LINE.match(line) is not None


def header_goes_on(following: list[bytes]) -> bool:
    """Whether the header block goes on after a line that is no field: one of the lines
    ``following`` it (at most ``LOST_LINES``, up to a blank line) is a header line."""
    for line in following[:LOST_LINES]:
        if not line.strip(b"\r\n"):
            return False
        if is_header_line(line):
            return True
    return False


def _repair_header_line(line: bytes, following: list[bytes], *, first: bool) -> tuple[bytes, str]:
    obsolete = _OBS_FIELD_NAME.match(line)
    if obsolete:  # "Subject  : x" is obsolete syntax that RFC 5322 §4.5 still allows
        return obsolete.group(1) + line[obsolete.end() - 1 :], "header block: space before ':'"
    if not first and not _HEADER_LINE.match(line) and header_goes_on(following):
        # Continuation lines that lost their indentation, or junk between two fields.
        return b" " + line, "header block: line without a field name folded into the field above"
    return line, ""


def header_fields(msg: Message, raw: bytes, notes: list[str]) -> ParsedMail:
    """The header fields of ``msg``, parsed from ``raw``; problems are appended to ``notes``.

    A mail without Message-ID gets ``<first 32 hex of sha256(raw)@mailroom.invalid>``.
    """
    message_id = _message_id(msg, notes)
    codec = mail_header_codec(msg)
    return ParsedMail(
        message_id=message_id or f"<{hashlib.sha256(raw).hexdigest()[:32]}@mailroom.invalid>",
        message_id_synthetic=not message_id,
        from_=_requester(msg, notes, codec),
        sender=next(iter(_addresses(msg, "Sender", notes, codec)), None),
        reply_to=_addresses(msg, "Reply-To", notes, codec),
        to=_addresses(msg, "To", notes, codec),
        cc=_addresses(msg, "Cc", notes, codec),
        subject=subject(msg, notes, codec),
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
    return [_unfolded(str(v)) for k, v in msg.raw_items() if k.lower() == wanted]


def _unfolded(value: str) -> str:
    if "=?" in value:
        value = _FOLD_IN_WORD.sub(r"\1", value)
    return _FOLD.sub("", value)


def mail_header_codec(msg: Message) -> str | None:
    """The charset of the raw 8-bit bytes in ``msg``'s header (None: there are none, or they
    are UTF-8): see ``charsets.header_codec``. Never raises."""
    runs = [run for _, v in msg.raw_items() for run in raw_8bit(str(v))]
    if not runs:
        return None
    return header_codec(runs, declared_charsets(msg))


def declared_charsets(msg: Message) -> list[str]:
    """The charsets ``msg`` declares: of its parts, then of its header's encoded words."""
    declared = [
        label
        for part in msg.walk()
        if (label := parameter(first_raw(part, "Content-Type"), "charset"))
    ]
    return declared + [c for _, v in msg.raw_items() for c in encoded_word_charsets(str(v))]


def first_raw(msg: Message, name: str) -> str:
    return next(iter(raw_values(msg, name)), "")


def _parsed_headers(name: str, values: list[str], notes: list[str]) -> list[object] | None:
    """Each of ``values`` of header ``name`` parsed by the policy, its defects noted; None
    when that fails.

    Address headers are parsed with trailing dots of domains removed and adjacent encoded
    words joined; the defects noted are those of the header as it came.
    """
    headers: list[object] = []
    try:
        for value in values:
            header = policies.default.header_factory(name, value)
            notes.extend(describe(d, f"header {name}") for d in getattr(header, "defects", ()))
            normal = _normal(name, value)
            headers.append(
                header if normal == value else policies.default.header_factory(name, normal)
            )
    except Exception as exc:  # the stdlib header parser has bugs; see the module docstring
        notes.append(f"header {name}: unparseable ({type(exc).__name__}); read leniently")
        return None
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


def _normal(name: str, value: str) -> str:
    if name.lower() not in _ADDRESS_HEADERS:
        return value
    # The stdlib keeps the space between two encoded words of a name, which RFC 2047 §6.2
    # drops ("=?cp1252?Q?Hans_B=C4KO?= =?iso-8859-15?Q?Sch=F6nland?=").
    value = _BETWEEN_WORDS.sub("?=", _TRAILING_DOT.sub(r"\1", value))
    # "Ann Lee ann@example.com": a name and an address without the angle brackets, which
    # the stdlib reads as one address with a space in its local part.
    value = _NAME_THEN_BARE_ADDRESS.sub(r"\1 <\2>", value)
    # "ann@example.com (Ann Lee)": the name in a comment, as old mail programs write it.
    commented = _ADDRESS_THEN_COMMENT.fullmatch(value)
    if commented and commented.group(2).strip():
        name = " ".join(commented.group(2).split()).replace('"', '\\"')
        return f'"{name}" <{commented.group(1)}>'
    return value


_BETWEEN_WORDS = re.compile(r"\?=\s+(?==\?[^?\s]+\?[QqBb]\?)")
_NAME_THEN_BARE_ADDRESS = re.compile(
    r'^\s*("(?:[^"\\]|\\.)*"|[^\s<>@,;:"()][^<>@,;:"()]*?)\s+([^\s<>@,;:"()]+@[^\s<>@,;:"()]+)\s*$'
)
_ADDRESS_THEN_COMMENT = re.compile(r'\s*([^\s<>@,;:"()]+@[^\s<>@,;:"()]+)\s*\(([^()\\]*)\)\s*')
_ADDRESS_HEADERS = frozenset({"from", "sender", "reply-to", "to", "cc"})


def _requester(msg: Message, notes: list[str], codec: str | None) -> Address | None:
    """Who sent the mail: the first From address that is one (spam and broken gateways put
    ``From: [??????]`` before the real From). When no From holds an address, Reply-To or
    Sender does, as other help desks read it."""
    senders = _addresses(msg, "From", notes, codec)
    valid = _first_valid(senders)
    if valid is not None:
        if valid is not senders[0]:
            notes.append(f"header From: the first address is not one; {valid.email} is used")
        return valid
    for name in ("Reply-To", "Sender"):
        instead = _first_valid(_addresses(msg, name, [], codec))
        if instead is not None:
            notes.append(f"header From: holds no address; the sender is read from {name}")
            return instead
    return next(iter(senders), None)


def _first_valid(found: list[Address]) -> Address | None:
    return next((a for a in found if _MAILBOX.fullmatch(a.email)), None)


def _addresses(
    msg: Message, name: str, notes: list[str], codec: str | None = None
) -> list[Address]:
    values = raw_values(msg, name)
    pairs = _address_pairs(name, values, notes)
    _note_8bit(values, name, notes, codec)
    return [
        Address(
            name=one_line(_display_name(n, name, notes, codec)), email=one_line(text_of(e, codec))
        )
        for n, e in pairs
        if e.strip()
    ]


def _address_pairs(name: str, values: list[str], notes: list[str]) -> list[tuple[str, str]]:
    """(display name, address) pairs of every value of address header ``name``, the first
    ``MOST_ADDRESSES`` of them."""
    quick = [plain_addresses(v) if _normal(name, v) == v else None for v in values]
    if all(q is not None for q in quick):
        pairs = [pair for q in quick for pair in q or ()]
    elif sum(map(len, values)) > LONG_FIELD:
        # Long in all (one field, or many fields of this name): entry by entry, the full
        # parser for at most FULLY_PARSED of them.
        budget = [FULLY_PARSED]
        pairs = [pair for v in values for pair in _long_field_pairs(name, v, notes, budget)]
    else:
        pairs = _parsed_pairs(name, values, notes)
    if len(pairs) > MOST_ADDRESSES:
        notes.append(f"header {name}: over {MOST_ADDRESSES} addresses; the rest are left out")
    return pairs[:MOST_ADDRESSES]


def _parsed_pairs(name: str, values: list[str], notes: list[str]) -> list[tuple[str, str]]:
    headers = _parsed_headers(name, values, notes)
    try:
        pairs = [(a.display_name, a.addr_spec) for h in headers or () for a in h.addresses]  # type: ignore[attr-defined]
    except Exception as exc:  # e.g. AttributeError on a Group: a stdlib bug
        notes.append(f"header {name}: unparseable ({type(exc).__name__}); read leniently")
        headers = None
    if headers is None:
        pairs = getaddresses([_normal(name, v) for v in values])
    return pairs


def _long_field_pairs(
    name: str, value: str, notes: list[str], budget: list[int]
) -> list[tuple[str, str]]:
    """A field too long for the full parser (see ``addresses``), read entry by entry;
    ``budget`` holds how many more entries the full parser may read."""
    entries = long_field_entries(value)
    if entries is None:
        notes.append(f"header {name}: {_kb(value)} KB long with a group; addresses read leniently")
        return [("", found) for found in addresses_in(value)]
    pairs: list[tuple[str, str]] = []
    for entry in entries:
        quick = plain_addresses(entry) if _normal(name, entry) == entry else None
        if quick is not None:
            pairs += quick
        elif len(entry) <= LONG_ENTRY and budget[0] > 0:
            budget[0] -= 1
            pairs += _parsed_pairs(name, [entry], notes)
        else:
            if len(entry) > LONG_ENTRY:
                why = f"an entry of {_kb(entry)} KB is too long to be an address"
            else:  # the same words each time: the mail's notes keep one
                why = f"over {FULLY_PARSED} entries are not plain"
            notes.append(f"header {name}: {why}; addresses read leniently")
            pairs += [("", found) for found in addresses_in(entry)]
        if len(pairs) > MOST_ADDRESSES:
            break
    return pairs


def _kb(text: str) -> int:
    return round(len(text) / 1024)


def _display_name(name: str, header: str, notes: list[str], codec: str | None) -> str:
    # The policy decodes well-formed encoded words; broken ones (no "?=", an unknown
    # charset) are still there, and are decoded leniently.
    if "=?" in name:
        return decode_words(name, notes, f"header {header}", codec)
    return text_of(name, codec)


def subject(msg: Message, notes: list[str] | None = None, codec: str | None = None) -> str:
    """The decoded Subject; problems go to ``notes`` when given. Raw 8-bit bytes are read
    in ``codec``, by default the one ``mail_header_codec`` finds."""
    # From the raw value: the policy turns raw 8-bit bytes that are not UTF-8 into U+FFFD.
    codec = codec or mail_header_codec(msg)
    if notes is not None:
        _note_8bit(raw_values(msg, "Subject"), "Subject", notes, codec)
    return one_line(decode_words(first_raw(msg, "Subject"), notes, "header Subject", codec))


def _note_8bit(values: list[str], name: str, notes: list[str], codec: str | None) -> None:
    # Raw UTF-8 is allowed (RFC 6532); other raw 8-bit bytes are a guess.
    if any(raw_8bit(v) for v in values):
        notes.append(
            f"header {name}: raw 8-bit bytes that are not UTF-8; read as {codec or 'cp1252'}"
        )


def _date(msg: Message, notes: list[str]) -> datetime | None:
    found: list[datetime | None] = []
    try:
        for value in raw_values(msg, "Date"):
            when, defects = date_of(value)
            notes.extend(describe(d, "header Date") for d in defects)
            found.append(when)
    except Exception as exc:  # the stdlib date parser has bugs too
        notes.append(f"header Date: unparseable ({type(exc).__name__}); read leniently")
        return None
    when = next(iter(found), None)
    if when is None:
        return None
    # "-0000" means "UTC, local zone unknown" (RFC 5322 §3.3); the stdlib leaves it naive.
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def date_of(value: str) -> tuple[datetime | None, list[errors.MessageDefect]]:
    """A Date value and its defects, as the stdlib's Date header object reads them (without
    building one: it formats the date again and parses that too)."""
    if not value:
        return None, [errors.HeaderMissingRequiredValue()]
    try:
        return parsedate_to_datetime(value), []
    except ValueError:
        return None, [errors.InvalidDateDefect("Invalid date value or format")]


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
    if msg.get_content_type() != "multipart/report" or not isinstance(report_type, str):
        return False
    return report_type.strip().lower() == "delivery-status"


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
