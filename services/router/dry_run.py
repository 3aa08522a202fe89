"""A ``RequestBook`` that reads and never writes: for ``mailroom inspect``'s dry runs.

The router's ``decide`` only reads; this book makes sure of it, so a dry run cannot open a
request or record an outcome even if ``decide`` changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

from contracts.mail import Address, MailValidated
from services.router.ports import RequestBook, SentNotice


class WriteRefused(RuntimeError):
    """A dry run tried to change the store."""


class ReadOnlyRequestBook:
    """``book``'s lookups; every write raises ``WriteRefused``."""

    def __init__(self, book: RequestBook) -> None:
        self._book = book

    def message_id_known(self, helpdesk: str, message_id: str) -> bool:
        return self._book.message_id_known(helpdesk, message_id)

    def request_of_message_ids(self, helpdesk: str, message_ids: list[str]) -> int | None:
        return self._book.request_of_message_ids(helpdesk, message_ids)

    def notifications_by_message_ids(self, message_ids: list[str]) -> list[SentNotice]:
        return self._book.notifications_by_message_ids(message_ids)

    def request_exists(self, helpdesk: str, request_id: int) -> bool:
        return self._book.request_exists(helpdesk, request_id)

    def claim(self, msg: MailValidated, at: datetime) -> bool:
        _refuse("claim a mail's outcome")

    def open_request(self, helpdesk: str, subject: str, requester: Address, at: datetime) -> int:
        _refuse("open a request")

    def add_mail(
        self, request_id: int, msg: MailValidated, data: dict[str, Any], at: datetime
    ) -> None:
        _refuse("add a mail to a request")

    def record_outcome(
        self, msg: MailValidated, outcome: str, request_id: int | None, detail: str, at: datetime
    ) -> None:
        _refuse("record an outcome")


def _refuse(what: str) -> NoReturn:
    raise WriteRefused(f"a dry run may not {what}")
