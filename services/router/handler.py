"""The router's logic: a new request, a conversation on an existing one, or neither.

Idempotent on ``mail_id`` (a redelivered mail changes nothing) and on Message-ID per help
desk (a second copy of the same mail is a duplicate, not a second request).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from contracts.base import Envelope
from contracts.mail import Address, MailValidated

#: The tag every request carries in the subject of its outgoing mail, e.g. "[Request #12]".
TAG = re.compile(r"\[Request #(\d+)\]", re.IGNORECASE)


def subject_tag(request_id: int) -> str:
    return f"[Request #{request_id}]"


class RequestBook(Protocol):
    """The router's view of the store; all calls run in one transaction."""

    def outcome_of(self, mail_id: str) -> str | None: ...

    def message_id_known(self, helpdesk: str, message_id: str) -> bool: ...

    def request_of_message_ids(self, helpdesk: str, message_ids: list[str]) -> int | None:
        """The request holding a mail with one of these Message-IDs (the newest match)."""
        ...

    def request_exists(self, helpdesk: str, request_id: int) -> bool: ...

    def open_request(self, helpdesk: str, subject: str, requester: Address, at: datetime) -> int:
        """Create a request and return its id."""
        ...

    def add_mail(
        self, request_id: int, msg: MailValidated, data: dict[str, Any], at: datetime
    ) -> None: ...

    def record_outcome(
        self, msg: MailValidated, outcome: str, request_id: int | None, detail: str, at: datetime
    ) -> None: ...


@dataclass(frozen=True)
class IntakePolicy:
    """Who may open a new request by mail (replies to existing requests are always accepted)."""

    enabled: bool = True
    allow: tuple[str, ...] = ()

    def admits(self, email: str) -> bool:
        if self.enabled:
            return True
        email = email.lower()
        for entry in (a.lower() for a in self.allow):
            if email == entry or (entry.startswith("*@") and email.endswith(entry[1:])):
                return True
        return False


def route(
    msg: MailValidated, *, book: RequestBook, intake: IntakePolicy, now: datetime
) -> list[Envelope]:
    """Store the mail as a request or a conversation, or record why not. Emits nothing yet."""
    if book.outcome_of(msg.mail_id) is not None:
        return []  # redelivered after the effect was committed: nothing more to do
    mail = msg.mail
    if book.message_id_known(msg.helpdesk, mail.message_id):
        book.record_outcome(
            msg, "duplicate", None, f"Message-ID {mail.message_id} already seen", now
        )
        return []
    target = _thread_of(msg, book)
    if target is not None:
        book.add_mail(target, msg, mail_record(msg), now)
        book.record_outcome(msg, "conversation_added", target, "", now)
        return []
    refusal = _refusal(msg, intake)
    if refusal:
        book.record_outcome(msg, "rejected", None, refusal, now)
        return []
    requester = mail.from_ or Address(email="unknown@invalid")
    request_id = book.open_request(msg.helpdesk, mail.subject or "(no subject)", requester, now)
    book.add_mail(request_id, msg, mail_record(msg), now)
    book.record_outcome(msg, "request_created", request_id, "", now)
    return []


def _thread_of(msg: MailValidated, book: RequestBook) -> int | None:
    ids = list(dict.fromkeys(msg.mail.in_reply_to + msg.mail.references))
    if ids and (found := book.request_of_message_ids(msg.helpdesk, ids)) is not None:
        return found
    for match in TAG.finditer(msg.mail.subject):
        if book.request_exists(msg.helpdesk, int(match.group(1))):
            return int(match.group(1))
    return None


def _refusal(msg: MailValidated, intake: IntakePolicy) -> str:
    sender = msg.mail.from_.email if msg.mail.from_ else ""
    if msg.mail.auto_reply:
        return "an automatic reply does not open a new request"
    if not intake.admits(sender):
        who = sender or "the sender"
        return f"new requests by mail are disabled and {who} is not on the allowlist"
    return ""


def mail_record(msg: MailValidated) -> dict[str, Any]:
    """The mail as kept on its request (bodies stay blobs, named by hash)."""
    mail = msg.mail.model_dump(mode="json", by_alias=True)
    mail["source"] = msg.source.model_dump(mode="json")
    mail["stripped"] = [s.model_dump(mode="json") for s in msg.stripped]
    return mail
