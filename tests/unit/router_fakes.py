"""A stateful fake of the router's RequestBook, and builders of routed mail.

It lives with the tests rather than in ``services.runtime.testing`` because its notification
type belongs to the router, and runtime imports no stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from typing import Any

from contracts.mail import (
    Address,
    DeliveryReport,
    DeliveryStatus,
    MailValidated,
    ParsedMail,
    SourceRef,
)
from services.router.handler import route
from services.router.intake import IntakePolicy
from services.router.ports import SentNotice
from services.runtime.addresses import NO_ADDRESSES, AddressSet
from services.runtime.errors import InfraError

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
OPEN = IntakePolicy()
_numbers = count(1)


@dataclass
class StoredRequest:
    id: int
    helpdesk: str
    subject: str
    requester: Address
    mails: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    outcome: str
    request_id: int | None
    detail: str


@dataclass(frozen=True)
class StoredMail:
    helpdesk: str
    message_id: str
    mail_id: str
    request_id: int


@dataclass(frozen=True)
class Notification:
    id: int
    helpdesk: str
    topic: str
    message_id: str
    mail_id: str


class InMemoryRequestBook:
    """Requests, their mails, one outcome per mail id, and the notifications sent.

    ``asked`` keeps every list of Message-IDs looked up, so tests can see what was queried.
    """

    def __init__(self) -> None:
        self.requests: dict[int, StoredRequest] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.notifications: list[Notification] = []
        self.asked: list[list[str]] = []
        self._mails: list[StoredMail] = []

    def sent(
        self, *, about: MailValidated, message_id: str, topic: str = "attachment_stripped"
    ) -> int:
        """Record a notification the notifier sent about the mail ``about``; returns its id."""
        notice = Notification(
            len(self.notifications) + 1, about.helpdesk, topic, message_id, about.mail_id
        )
        self.notifications.append(notice)
        return notice.id

    def claim(self, msg: MailValidated, at: datetime) -> bool:
        if msg.mail_id in self.outcomes:
            return False
        self.outcomes[msg.mail_id] = Outcome("routing", None, "")
        return True

    def outcome_of(self, mail_id: str) -> str | None:
        found = self.outcomes.get(mail_id)
        return found.outcome if found else None

    def message_id_known(self, helpdesk: str, message_id: str) -> bool:
        return any(m.helpdesk == helpdesk and m.message_id == message_id for m in self._mails)

    def request_of_message_ids(self, helpdesk: str, message_ids: list[str]) -> int | None:
        self.asked.append(list(message_ids))
        found = [m for m in self._mails if m.helpdesk == helpdesk and m.message_id in message_ids]
        return found[-1].request_id if found else None

    def notifications_by_message_ids(self, message_ids: list[str]) -> list[SentNotice]:
        self.asked.append(list(message_ids))
        by_mail = {m.mail_id: m.request_id for m in self._mails}
        return [
            SentNotice(n.id, n.helpdesk, n.topic, n.message_id, by_mail.get(n.mail_id))
            for n in reversed(self.notifications)
            if n.message_id in message_ids
        ]

    def request_exists(self, helpdesk: str, request_id: int) -> bool:
        found = self.requests.get(request_id)
        return found is not None and found.helpdesk == helpdesk

    def open_request(self, helpdesk: str, subject: str, requester: Address, at: datetime) -> int:
        request_id = len(self.requests) + 1
        self.requests[request_id] = StoredRequest(request_id, helpdesk, subject, requester)
        return request_id

    def add_mail(
        self, request_id: int, msg: MailValidated, data: dict[str, Any], at: datetime
    ) -> None:
        if any(m.mail_id == msg.mail_id for m in self._mails):
            raise InfraError(f"mail {msg.mail_id} is already stored (unique mail_id)")
        self.requests[request_id].mails.append({"mail_id": msg.mail_id, **data})
        self._mails.append(StoredMail(msg.helpdesk, msg.mail.message_id, msg.mail_id, request_id))

    def record_outcome(
        self, msg: MailValidated, outcome: str, request_id: int | None, detail: str, at: datetime
    ) -> None:
        if self.outcomes[msg.mail_id].outcome != "routing":
            raise InfraError(f"mail {msg.mail_id} already has an outcome (unique mail_id)")
        self.outcomes[msg.mail_id] = Outcome(outcome, request_id, detail)

    # -- what tests read ---------------------------------------------------------------------

    def request_of(self, msg: MailValidated) -> int | None:
        return self.outcomes[msg.mail_id].request_id

    def detail_of(self, msg: MailValidated) -> str:
        return self.outcomes[msg.mail_id].detail

    def mail_ids_of(self, request_id: int | None) -> list[str]:
        assert request_id is not None
        return [m["mail_id"] for m in self.requests[request_id].mails]


def mail(
    *,
    helpdesk: str = "default",
    mailbox: str | None = None,
    mail_id: str | None = None,
    message_id: str | None = None,
    from_addr: str | None = "ann@example.org",
    subject: str = "Printer on fire",
    in_reply_to: tuple[str, ...] = (),
    references: tuple[str, ...] = (),
    auto_reply: bool = False,
    **fields: Any,
) -> MailValidated:
    """A routed mail; ``fields`` go to ``ParsedMail`` as they are."""
    n = next(_numbers)
    return MailValidated(
        mail_id=mail_id or f"mail-{n}",
        helpdesk=helpdesk,
        source=SourceRef(mailbox=mailbox or f"{helpdesk}-box", ref=str(n)),
        raw_blob="raw-sha",
        mail=ParsedMail(
            message_id=message_id or f"<m{n}@example.org>",
            from_=Address(name="Ann", email=from_addr) if from_addr is not None else None,
            subject=subject,
            in_reply_to=list(in_reply_to),
            references=list(references),
            auto_reply=auto_reply,
            **fields,
        ),
    )


def bounce(original: str | None, *, helpdesk: str = "default", **fields: Any) -> MailValidated:
    """A delivery report about the mail with Message-ID ``original``: ann@example.org failed."""
    report = DeliveryReport(
        original_message_id=original,
        recipients=[
            DeliveryStatus(
                address="ann@example.org",
                action="failed",
                status="5.1.1",
                diagnostic="smtp; 550 5.1.1 <ann@example.org>: User unknown",
            )
        ],
    )
    defaults: dict[str, Any] = {
        "from_addr": "MAILER-DAEMON@mx.example.net",
        "subject": "Undelivered Mail Returned to Sender",
        "auto_reply": True,
    }
    return mail(helpdesk=helpdesk, delivery_report=report, **(defaults | fields))


def deliver(
    book: InMemoryRequestBook,
    msg: MailValidated,
    intake: IntakePolicy = OPEN,
    own: AddressSet = NO_ADDRESSES,
) -> str:
    """Route one mail and return the outcome recorded for it."""
    assert route(msg, book=book, intake=intake, own_addresses=own, now=NOW) == []
    outcome = book.outcome_of(msg.mail_id)
    assert outcome is not None
    return outcome
