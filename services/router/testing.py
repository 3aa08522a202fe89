"""A stateful fake of the router's RequestBook, for unit and contract tests.

``tests/contract/test_request_book.py`` runs it through the same behaviour tests as
``SqlRequestBook`` on SQLite and PostgreSQL.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contracts.mail import Address, MailValidated
from services.router.ports import SentNotice
from services.runtime.errors import InfraError

#: The outcome row while the router's transaction decides (as ``adapters.CLAIMED``).
CLAIMED = "routing"


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
    at: datetime


@dataclass(frozen=True)
class Notification:
    id: int
    helpdesk: str
    topic: str
    message_id: str
    mail_id: str


class InMemoryRequestBook:
    """Requests, their mails, one outcome per mail id, and the notifications sent.

    Keeps the store's unique keys: one mail per ``mail_id``, and one per Message-ID within a
    help desk. ``transaction()`` undoes every change of a block that raises, as the store's
    transaction does. ``asked`` keeps every list of Message-IDs looked up, so tests can see
    what was queried.
    """

    def __init__(self) -> None:
        self.requests: dict[int, StoredRequest] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.notifications: list[Notification] = []
        self.asked: list[list[str]] = []
        self._mails: list[StoredMail] = []

    @contextmanager
    def transaction(self) -> Iterator[InMemoryRequestBook]:
        kept = copy.deepcopy((self.requests, self.outcomes, self.notifications, self._mails))
        try:
            yield self
        except BaseException:
            self.requests, self.outcomes, self.notifications, self._mails = kept
            raise

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
        self.outcomes[msg.mail_id] = Outcome(CLAIMED, None, "")
        return True

    def outcome_of(self, mail_id: str) -> str | None:
        found = self.outcomes.get(mail_id)
        return found.outcome if found else None

    def message_id_known(self, helpdesk: str, message_id: str) -> bool:
        return any(m.helpdesk == helpdesk and m.message_id == message_id for m in self._mails)

    def request_of_message_ids(self, helpdesk: str, message_ids: list[str]) -> int | None:
        self.asked.append(list(message_ids))
        found = [m for m in self._mails if m.helpdesk == helpdesk and m.message_id in message_ids]
        newest = max(found, key=lambda m: (m.at, m.request_id), default=None)
        return newest.request_id if newest else None

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
        if self.message_id_known(msg.helpdesk, msg.mail.message_id):
            raise InfraError(f"{msg.mail.message_id} is already stored (unique Message-ID)")
        if request_id not in self.requests:
            raise InfraError(f"request {request_id} does not exist (foreign key)")
        self.requests[request_id].mails.append({"mail_id": msg.mail_id, **data})
        self._mails.append(
            StoredMail(msg.helpdesk, msg.mail.message_id, msg.mail_id, request_id, at)
        )

    def record_outcome(
        self, msg: MailValidated, outcome: str, request_id: int | None, detail: str, at: datetime
    ) -> None:
        if self.outcome_of(msg.mail_id) != CLAIMED:
            raise InfraError(f"mail {msg.mail_id} has no claimed outcome row to fill in")
        self.outcomes[msg.mail_id] = Outcome(outcome, request_id, detail)

    # -- what tests read ---------------------------------------------------------------------

    def request_of(self, msg: MailValidated) -> int | None:
        return self.outcomes[msg.mail_id].request_id

    def detail_of(self, msg: MailValidated) -> str:
        return self.outcomes[msg.mail_id].detail

    def mail_ids_of(self, request_id: int | None) -> list[str]:
        assert request_id is not None
        return [m["mail_id"] for m in self.requests[request_id].mails]
