"""What the router needs from the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from contracts.mail import Address, MailValidated


@dataclass(frozen=True)
class SentNotice:
    """A notification Mailroom sent by email, as far as routing cares.

    ``request_id`` is the request holding the mail the notification was about; None when
    that mail is on no request (it was rejected or dead-lettered, say).
    """

    id: int
    helpdesk: str
    topic: str
    message_id: str
    request_id: int | None


class RequestBook(Protocol):
    """The router's view of the store; all calls of one mail run in one transaction.

    Lookups by Message-ID take a bounded list (the caller caps it); writes are idempotent
    on ``mail_id`` through unique keys, so a race between two workers on the same mail
    fails one transaction instead of storing the mail twice.
    """

    def claim(self, msg: MailValidated, at: datetime) -> bool:
        """Take the mail's one outcome row for this transaction; False when the mail already
        has an outcome (an earlier delivery routed it, or it was dead-lettered). A dead letter
        claiming the same row waits for this transaction, so a mail never has both."""
        ...

    def message_id_known(self, helpdesk: str, message_id: str) -> bool:
        """Whether a mail with this Message-ID is already on a request of ``helpdesk``."""
        ...

    def request_of_message_ids(self, helpdesk: str, message_ids: list[str]) -> int | None:
        """The request of ``helpdesk`` holding a mail with one of these Message-IDs (the
        newest match)."""
        ...

    def notifications_by_message_ids(self, message_ids: list[str]) -> list[SentNotice]:
        """The notifications, of any help desk, sent with one of these Message-IDs."""
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
    ) -> None:
        """Fill in the outcome row taken by ``claim``."""
        ...
