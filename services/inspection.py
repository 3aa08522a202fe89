"""``mailroom inspect``: what the pipeline would make of a raw mail, with nothing stored.

The mail goes through the stages' own functions, not copies of them: the parser's ``parse``,
the validator's ``validate_for`` with the help desk's attachment policy, and the router's
``decide`` against the real store, through a read-only book in a transaction the database
refuses to write in and that is rolled back. Bodies and attachments are kept in memory only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contracts.ids import content_hash, mail_id
from contracts.mail import MailFetched, MailParsed, MailValidated, SourceRef
from contracts.notify import Notify
from contracts.settings import HelpdeskSettings
from services.parser.handler import parse
from services.parser.limits import ParserLimits
from services.router.adapters import SqlRequestBook
from services.router.addresses import sender_of
from services.router.dry_run import ReadOnlyRequestBook
from services.router.handler import Decision, decide
from services.router.records import mail_record
from services.router.worker import intake_of, own_addresses
from services.runtime.addresses import AddressSet
from services.runtime.cached_settings import ConfiguredMailbox
from services.runtime.errors import ConfigError, MailError
from services.runtime.store import Store
from services.validator.worker import validate_for

#: Stands in for a mailbox not known (yet), so the mail still has a source.
NO_MAILBOX = "(not known)"


class ScratchBlobs:
    """The dry run's blob store: bodies and attachments kept in memory, never stored."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        sha = content_hash(data)
        self._blobs[sha] = bytes(data)
        return sha

    def get(self, sha256: str) -> bytes:
        return self._blobs[sha256]


@dataclass(frozen=True)
class Desk:
    """The help desk a mail is inspected for, with every configured mailbox."""

    settings: HelpdeskSettings
    boxes: list[ConfiguredMailbox]
    #: The mailbox named by ``--mailbox``; None: chosen from the mail's recipients.
    mailbox: str | None = None

    @property
    def own_boxes(self) -> list[ConfiguredMailbox]:
        return [b for b in self.boxes if b.helpdesk == self.settings.id]


@dataclass
class Inspection:
    """What became of one mail in the dry run. ``failure`` is set when the parser refused
    it; the pipeline would then put it into the dead-letter queue."""

    name: str
    helpdesk: str
    mailbox: str
    parsed: MailParsed | None = None
    body_text: str | None = None
    validated: MailValidated | None = None
    notices: list[Notify] = field(default_factory=list)
    decision: Decision | None = None
    failure: str = ""
    kept: dict[str, Any] = field(default_factory=dict)


def inspect_mail(
    raw: bytes,
    *,
    name: str,
    desk: Desk,
    store: Store,
    limits: ParserLimits,
    sniff: Callable[[bytes], str],
) -> Inspection:
    """Run ``raw`` through parser, validator and router's decision; store nothing.

    Raises:
        ConfigError: the help desk has several mailboxes with different new-request rules
            and the mail names none of them: ``--mailbox`` must say which.
        InfraError: the store or libmagic failed.
    """
    blobs = ScratchBlobs()
    fetched = _fetched(raw, name, desk, blobs)
    try:
        [parsed] = parse(fetched, blobs=blobs, limits=limits)
    except MailError as exc:
        return Inspection(name, desk.settings.id, fetched.source.mailbox, failure=str(exc))
    assert isinstance(parsed, MailParsed)
    mailbox = choose_mailbox(parsed, desk)
    parsed = parsed.model_copy(update={"source": SourceRef(mailbox=mailbox, ref=name)})
    result = Inspection(name, desk.settings.id, mailbox, parsed=parsed)
    result.body_text = _text(blobs, parsed.mail.body_text_blob)
    [validated, *notices] = validate_for(
        parsed, desk.settings, desk.boxes, blobs=blobs, sniff=sniff
    )
    assert isinstance(validated, MailValidated)
    result.validated, result.notices = validated, [n for n in notices if isinstance(n, Notify)]
    with store.read_only() as conn:
        book = ReadOnlyRequestBook(SqlRequestBook(conn))
        result.decision = decide(validated, book=book, intake=intake_of(desk.boxes, mailbox))
    own = own_addresses(desk.boxes, desk.settings.id)
    result.kept = mail_record(validated, own_addresses=own)
    return result


def choose_mailbox(parsed: MailParsed, desk: Desk) -> str:
    """The mailbox the mail is taken to have arrived in: ``--mailbox``, else the help desk's
    only one, else the first whose addresses the mail is sent to, else any when all of them
    take new requests alike."""
    boxes = desk.own_boxes
    if desk.mailbox is not None:
        return desk.mailbox
    if not boxes:
        return NO_MAILBOX
    mail = parsed.mail
    recipients = [a.email for a in (*mail.to, *mail.cc)]
    for box in boxes:
        if any(r in AddressSet.of(box.settings.addresses) for r in recipients):
            return box.settings.name
    if all(b.settings.new_requests == boxes[0].settings.new_requests for b in boxes):
        return boxes[0].settings.name
    names = ", ".join(b.settings.name for b in boxes)
    raise ConfigError(
        f"the mail is sent to no address of help desk {desk.settings.id!r}'s mailboxes, and "
        f"they take new requests differently: name one with --mailbox ({names})"
    )


def _fetched(raw: bytes, name: str, desk: Desk, blobs: ScratchBlobs) -> MailFetched:
    only = [b.settings.name for b in desk.own_boxes][:2]
    mailbox = desk.mailbox or (only[0] if len(only) == 1 else NO_MAILBOX)
    return MailFetched(
        mail_id=mail_id(mailbox, f"inspect:{name}"),
        helpdesk=desk.settings.id,
        source=SourceRef(mailbox=mailbox, ref=name),
        raw_blob=blobs.put(raw),
        size=len(raw),
    )


def _text(blobs: ScratchBlobs, sha: str | None) -> str | None:
    return None if sha is None else blobs.get(sha).decode("utf-8", "replace")


def as_json(i: Inspection) -> dict[str, Any]:
    """The inspection as ``mailroom inspect --json`` shows it (see the README)."""
    data: dict[str, Any] = {"file": i.name, "helpdesk": i.helpdesk, "mailbox": i.mailbox}
    if i.failure or i.parsed is None or i.validated is None or i.decision is None:
        why = f"the parser refused it: {i.failure}"
        return data | _outcome("dead_lettered", "parser", None, why)
    d = i.decision
    mail = i.parsed.mail
    requester = sender_of(mail)
    return data | {
        **_outcome(d.outcome, d.rule, d.request_id, d.detail),
        "explanation": explain(d),
        "note": d.note,
        "headers": mail.model_dump(
            mode="json",
            by_alias=True,
            exclude={"attachments", "defects", "body_text_blob", "body_html_blob"},
        ),
        "requester": requester.model_dump(mode="json") if requester else None,
        "recipients_kept": {"to": i.kept["to"], "cc": i.kept["cc"]},
        "body_text": i.body_text,
        "has_html_body": mail.body_html_blob is not None,
        "attachments": attachment_verdicts(i.parsed, i.validated),
        "defects": list(mail.defects),
        "notifications": [
            {"channel": n.channel, "to": list(n.to), "subject": n.subject} for n in i.notices
        ],
    }


def _outcome(outcome: str, rule: str, request_id: int | None, detail: str) -> dict[str, Any]:
    return {"outcome": outcome, "rule": rule, "request_id": request_id, "detail": detail}


def attachment_verdicts(parsed: MailParsed, validated: MailValidated) -> list[dict[str, Any]]:
    """Every attachment the parser found, ``kept`` or ``stripped`` with the validator's
    reason, in the mail's order (the validator keeps that order in both lists)."""
    kept = list(validated.mail.attachments)
    stripped = iter(validated.stripped)
    out = []
    for att in parsed.mail.attachments:
        row = att.model_dump(mode="json")
        if kept and kept[0] == att:
            kept.pop(0)
            out.append(row | {"verdict": "kept", "reason": "", "message": ""})
            continue
        s = next(stripped)
        out.append(row | {"verdict": "stripped", "reason": s.reason, "message": s.message})
    return out


_EXPLAIN = {
    "seen_already": "a duplicate: {detail}",
    "own_notification": "rejected: {detail}",
    "bounce": "kept as a delivery-report note on request #{request}",
    "bounce_unmatched": "rejected: {detail}",
    "thread_headers": "a conversation on request #{request}: its In-Reply-To or References "
    "name a mail of that request",
    "notification_reply": "a conversation on request #{request}: it answers a notification "
    "Mailroom sent about a mail of that request",
    "subject_tag": "a conversation on request #{request}: its subject carries the request's tag",
    "reply_to_notification": "rejected: {detail}",
    "auto_reply": "rejected: {detail}",
    "allowlist": "rejected: {detail}",
    "new_request": "a new request: it answers no request of the help desk, and its sender "
    "may open requests",
}


def explain(d: Decision) -> str:
    """One sentence on what becomes of the mail, and why."""
    text = _EXPLAIN.get(d.rule, "{outcome}: {detail}")
    return text.format(request=d.request_id, detail=d.detail, outcome=d.outcome)
