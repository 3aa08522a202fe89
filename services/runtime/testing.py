"""Stateful fakes of the ports, for unit tests of handlers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.dead import DeadLetter
from contracts.ids import content_hash
from contracts.mail import Address, MailFetched, MailValidated
from services.runtime.errors import InfraError


class InMemoryBlobStore:
    """A BlobStore in a dict."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        sha = content_hash(data)
        self.blobs[sha] = bytes(data)
        return sha

    def get(self, sha256: str) -> bytes:
        return self.blobs[sha256]


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


class InMemoryFetchedLog:
    """The poller's FetchedLog: one record per mail id, counting how often it was recorded."""

    def __init__(self) -> None:
        self.records: dict[str, MailFetched] = {}
        self.counts: dict[str, int] = {}

    def record(self, fetched: MailFetched, at: datetime) -> None:
        self.records.setdefault(fetched.mail_id, fetched)
        self.counts[fetched.mail_id] = self.counts.get(fetched.mail_id, 0) + 1


class InMemoryDeadLetterLog:
    """The poller's DeadLetterLog: one entry per mail; ``final`` holds mails already done."""

    def __init__(self, final: Iterable[str] = ()) -> None:
        self.final = set(final)
        self.entries: dict[str, DeadLetter] = {}

    def has_final_outcome(self, mail_id: str) -> bool:
        return mail_id in self.final

    def record(self, dead: DeadLetter, at: datetime) -> bool:
        if dead.mail_id in self.entries:
            return False
        self.entries[dead.mail_id] = dead
        return True


@dataclass
class StoredRequest:
    """A request as the in-memory request book keeps it."""

    id: int
    helpdesk: str
    subject: str
    requester: Address
    created_at: datetime
    mails: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    outcome: str
    request_id: int | None
    detail: str


class InMemoryRequestBook:
    """The router's RequestBook: requests, their mails and one outcome per mail id."""

    def __init__(self) -> None:
        self.requests: dict[int, StoredRequest] = {}
        self.outcomes: dict[str, Outcome] = {}
        self._mails: list[tuple[str, str, int]] = []  # (helpdesk, Message-ID, request id)

    def outcome_of(self, mail_id: str) -> str | None:
        found = self.outcomes.get(mail_id)
        return found.outcome if found else None

    def message_id_known(self, helpdesk: str, message_id: str) -> bool:
        return any(h == helpdesk and m == message_id for h, m, _ in self._mails)

    def request_of_message_ids(self, helpdesk: str, message_ids: list[str]) -> int | None:
        matches = [r for h, m, r in self._mails if h == helpdesk and m in message_ids]
        return matches[-1] if matches else None

    def request_exists(self, helpdesk: str, request_id: int) -> bool:
        found = self.requests.get(request_id)
        return found is not None and found.helpdesk == helpdesk

    def open_request(self, helpdesk: str, subject: str, requester: Address, at: datetime) -> int:
        request_id = len(self.requests) + 1
        self.requests[request_id] = StoredRequest(request_id, helpdesk, subject, requester, at)
        return request_id

    def add_mail(
        self, request_id: int, msg: MailValidated, data: dict[str, Any], at: datetime
    ) -> None:
        if any(d["mail_id"] == msg.mail_id for r in self.requests.values() for d in r.mails):
            raise InfraError(f"mail {msg.mail_id} is already stored (unique mail_id)")
        self.requests[request_id].mails.append({"mail_id": msg.mail_id, **data})
        self._mails.append((msg.helpdesk, msg.mail.message_id, request_id))

    def record_outcome(
        self, msg: MailValidated, outcome: str, request_id: int | None, detail: str, at: datetime
    ) -> None:
        if msg.mail_id in self.outcomes:
            raise InfraError(f"mail {msg.mail_id} already has an outcome (unique mail_id)")
        self.outcomes[msg.mail_id] = Outcome(outcome, request_id, detail)


@dataclass(frozen=True)
class SentMail:
    to: list[str]
    subject: str
    body: str
    in_reply_to: str | None


class RecordingSender:
    """A Sender that keeps every mail it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[SentMail] = []

    def send(self, to: list[str], subject: str, body: str, in_reply_to: str | None) -> None:
        self.sent.append(SentMail(list(to), subject, body, in_reply_to))


class FailingSender:
    """A Sender whose server never takes the mail."""

    def __init__(self, error: str = "SMTP server 127.0.0.1:25 did not take the mail") -> None:
        self.error = error
        self.attempts = 0

    def send(self, to: list[str], subject: str, body: str, in_reply_to: str | None) -> None:
        self.attempts += 1
        raise InfraError(self.error)
