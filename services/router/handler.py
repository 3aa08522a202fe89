"""The router's logic: a new request, a conversation on an existing one, or neither.

Idempotent on ``mail_id`` (a redelivered mail changes nothing) and on Message-ID per help
desk (a second copy of the same mail, from another poll, alias or mailbox of the help desk,
is a duplicate, not a second request). The order of the checks is the order of the README's
"Routing rules".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contracts.base import Envelope
from contracts.mail import Address, MailValidated
from services.router.addresses import sender_of
from services.router.bounces import link_bounce
from services.router.intake import IntakePolicy, refusal_rule
from services.router.loops import own_notification
from services.router.ports import RequestBook
from services.router.records import mail_record
from services.router.threading import find_thread
from services.runtime.addresses import NO_ADDRESSES, AddressSet

#: The requester of a request opened by a mail without any usable sender address.
UNKNOWN_REQUESTER = Address(name="unknown", email="")
_KEPT_AS_NOTE = "delivery report kept as a note on the request"


@dataclass(frozen=True)
class Decision:
    """What becomes of one mail: its outcome, its request, and the detail recorded.

    ``rule`` names the routing rule that decided (README "Routing rules"): ``seen_already``,
    ``own_notification``, ``bounce``, ``bounce_unmatched``, ``thread_headers``,
    ``notification_reply``, ``subject_tag``, ``reply_to_notification``, ``auto_reply``,
    ``allowlist`` or ``new_request``.
    """

    outcome: str  # request_created | conversation_added | duplicate | rejected
    request_id: int | None = None
    detail: str = ""
    note: str | None = None  # a delivery report kept on its request
    rule: str = ""


def route(
    msg: MailValidated,
    *,
    book: RequestBook,
    intake: IntakePolicy,
    own_addresses: AddressSet = NO_ADDRESSES,
    now: datetime,
) -> list[Envelope]:
    """Store the mail as a request or a conversation, or record why not. Emits nothing yet.

    ``own_addresses``: every address of the help desk's mailboxes; they are left out of the
    To and Cc kept on the request.
    """
    if not book.claim(msg, now):
        return []  # redelivered after the effect was committed, or dead-lettered meanwhile
    decision = decide(msg, book=book, intake=intake)
    request_id = decision.request_id
    if decision.outcome == "request_created":
        requester = sender_of(msg.mail) or UNKNOWN_REQUESTER
        subject = msg.mail.subject or "(no subject)"
        request_id = book.open_request(msg.helpdesk, subject, requester, now)
    if request_id is not None:
        record = mail_record(msg, own_addresses=own_addresses, note=decision.note)
        book.add_mail(request_id, msg, record, now)
    book.record_outcome(msg, decision.outcome, request_id, decision.detail, now)
    return []


def decide(msg: MailValidated, *, book: RequestBook, intake: IntakePolicy) -> Decision:
    """The outcome for a mail not routed before, and the rule that decided it; reads the
    store, writes nothing (``mailroom inspect`` calls it on a read-only book)."""
    mail = msg.mail
    if book.message_id_known(msg.helpdesk, mail.message_id):
        detail = f"Message-ID {mail.message_id} already seen"
        return Decision("duplicate", detail=detail, rule="seen_already")
    if reason := own_notification(mail, book):
        return Decision("rejected", detail=reason, rule="own_notification")
    if mail.delivery_report is not None:
        bounce = link_bounce(msg, mail.delivery_report, book)
        if bounce.request_id is None:
            return Decision("rejected", detail=bounce.refusal, rule="bounce_unmatched")
        return Decision(
            "conversation_added", bounce.request_id, _KEPT_AS_NOTE, bounce.note, rule="bounce"
        )
    thread = find_thread(msg, book)
    if thread.request_id is not None:
        return Decision("conversation_added", thread.request_id, rule=thread.rule)
    if thread.refusal:
        return Decision("rejected", detail=thread.refusal, rule=thread.rule)
    rule, reason = refusal_rule(mail, sender_of(mail), intake)
    if reason:
        return Decision("rejected", detail=reason, rule=rule)
    return Decision("request_created", rule="new_request")
