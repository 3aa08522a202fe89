"""Stateful fakes of the notifier's ports (outbox, SMTP sender), for unit and contract tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from contracts.notify import Notify
from services.notifier.handler import OutboxEntry, PendingMail
from services.notifier.message import DEFAULT_DOMAIN, OutgoingMail, message_id_for
from services.runtime.errors import InfraError


@dataclass
class Kept:
    """One outbox entry."""

    id: int
    msg: Notify
    recipients: list[str]
    created_at: datetime
    message_id: str | None = None
    suppressed_reason: str | None = None
    next_attempt_at: datetime | None = None
    attempts: int = 0
    sent_at: datetime | None = None
    error: str | None = None

    def due(self, now: datetime) -> bool:
        return (
            self.msg.channel == "email"
            and self.sent_at is None
            and self.suppressed_reason is None
            and self.next_attempt_at is not None
            and self.next_attempt_at <= now
        )


class InMemoryOutbox:
    """The notifier's Outbox (``handler.Outbox``, ``retries.RetryOutbox``), one entry per key."""

    def __init__(self) -> None:
        self.rows: dict[str, Kept] = {}

    def add(
        self,
        msg: Notify,
        recipients: list[str],
        at: datetime,
        *,
        message_id: str | None = None,
        suppressed_reason: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> OutboxEntry:
        if msg.key not in self.rows:
            self.rows[msg.key] = Kept(
                len(self.rows) + 1,
                msg,
                list(recipients),
                at,
                message_id,
                suppressed_reason,
                next_attempt_at,
            )
        row = self.rows[msg.key]
        return OutboxEntry(id=row.id, sent_at=row.sent_at)

    def claim(self, entry_id: int, now: datetime, lease_until: datetime) -> PendingMail | None:
        row = self._row(entry_id)
        return None if row is None else self._claim(row, now, lease_until)

    def claim_next(
        self, now: datetime, lease_until: datetime, *, skip_helpdesks: frozenset[str]
    ) -> PendingMail | None:
        due = [r for r in self.rows.values() if r.due(now) and r.msg.helpdesk not in skip_helpdesks]
        if not due:
            return None
        oldest = min(due, key=lambda r: (r.next_attempt_at, r.id))
        return self._claim(oldest, now, lease_until)

    def mark_sent(self, entry_id: int, at: datetime) -> None:
        if row := self._row(entry_id):
            row.sent_at, row.error, row.next_attempt_at = at, None, None

    def mark_failed(self, entry_id: int, error: str, retry_at: datetime | None) -> None:
        if row := self._row(entry_id):
            row.error, row.next_attempt_at = error, retry_at

    def recent_email_counts(
        self, helpdesk: str, addresses: Sequence[str], since: datetime
    ) -> dict[str, int]:
        kept = [
            {a.lower() for a in r.recipients}
            for r in self.rows.values()
            if r.msg.helpdesk == helpdesk
            and r.msg.channel == "email"
            and r.suppressed_reason is None
            and r.created_at >= since
        ]
        wanted = {a.lower() for a in addresses}
        return {a: sum(a in to for to in kept) for a in wanted}

    def _claim(self, row: Kept, now: datetime, lease_until: datetime) -> PendingMail | None:
        if not row.due(now):
            return None
        row.attempts += 1
        row.next_attempt_at = lease_until
        return PendingMail(
            id=row.id,
            helpdesk=row.msg.helpdesk,
            attempts=row.attempts,
            created_at=row.created_at,
            mail=OutgoingMail(
                key=row.msg.key,
                to=tuple(row.recipients),
                subject=row.msg.subject,
                body=row.msg.body,
                in_reply_to=row.msg.in_reply_to,
                # As the store: entries kept before Message-IDs were stored get their key's.
                message_id=row.message_id or message_id_for(row.msg.key, DEFAULT_DOMAIN),
                date=row.created_at,
            ),
        )

    def _row(self, entry_id: int) -> Kept | None:
        """The entry with this id; None when there is none (an update of no row)."""
        return next((r for r in self.rows.values() if r.id == entry_id), None)


class RecordingSender:
    """A Sender that keeps every mail it was asked to send (safe to share between threads)."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMail] = []

    def send(self, mail: OutgoingMail) -> None:
        self.sent.append(mail)  # list.append is atomic: concurrent senders lose nothing


class FailingSender:
    """A Sender whose server does not take the mail: ``failures`` times, or always (None)."""

    def __init__(
        self,
        error: str = "SMTP server 127.0.0.1:25 did not take the mail",
        *,
        failures: int | None = None,
        raises: type[Exception] = InfraError,
    ) -> None:
        self.error = error
        self.failures = failures
        self.raises = raises
        self.attempts = 0
        self.sent: list[OutgoingMail] = []

    def send(self, mail: OutgoingMail) -> None:
        self.attempts += 1
        if self.failures is None or self.attempts <= self.failures:
            raise self.raises(self.error)
        self.sent.append(mail)
