"""The notifier's logic: keep every notification in the outbox, send email when possible.

Idempotent on ``Notify.key``: a redelivered command finds its row and sends nothing twice
once the row is marked sent. Loop protection: never mail one of our own mailboxes' addresses,
which would come back as a new mail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from contracts.base import Envelope
from contracts.notify import Notify
from services.runtime.errors import InfraError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    sent_at: datetime | None


class Outbox(Protocol):
    def add(self, msg: Notify, recipients: list[str], at: datetime) -> OutboxEntry:
        """Keep the notification (once per key) and return its entry."""
        ...

    def mark_sent(self, entry_id: int, at: datetime) -> None: ...

    def mark_failed(self, entry_id: int, error: str) -> None: ...


class Sender(Protocol):
    def send(self, to: list[str], subject: str, body: str, in_reply_to: str | None) -> None:
        """Send one mail; raises ``InfraError`` when the server cannot take it."""
        ...


def notify(
    msg: Notify,
    *,
    outbox: Outbox,
    sender: Sender | None,
    own_addresses: frozenset[str],
    now: datetime,
) -> list[Envelope]:
    """Store the notification; deliver a bell at once and an email when SMTP is configured.

    Without outgoing settings an email stays in the outbox (``sent_at`` empty). When SMTP
    refuses, the error is kept on the entry and the mail is not retried here.
    """
    recipients = [a for a in msg.to if a.lower() not in own_addresses]
    entry = outbox.add(msg, recipients, now)
    if entry.sent_at is not None or not recipients:
        return []
    if msg.channel == "bell":
        outbox.mark_sent(entry.id, now)
    elif sender is not None:
        _send(msg, recipients, entry, outbox, sender, now)
    return []


def _send(
    msg: Notify, to: list[str], entry: OutboxEntry, outbox: Outbox, sender: Sender, now: datetime
) -> None:
    try:
        sender.send(to, msg.subject, msg.body, msg.in_reply_to)
    except InfraError as exc:
        log.warning("notification %s not sent: %s", entry.id, exc)
        outbox.mark_failed(entry.id, str(exc))
        return
    outbox.mark_sent(entry.id, now)
