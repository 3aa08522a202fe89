"""Builders of routed mail, and the router's RequestBook fake (``services.router.testing``)."""

from __future__ import annotations

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
from services.router.testing import InMemoryRequestBook
from services.runtime.addresses import NO_ADDRESSES, AddressSet

__all__ = ["NOW", "OPEN", "InMemoryRequestBook", "bounce", "deliver", "mail"]

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
OPEN = IntakePolicy()
_numbers = count(1)


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
