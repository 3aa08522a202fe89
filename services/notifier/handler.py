"""The notifier's logic: keep every notification in the outbox, send email when possible.

Idempotent on ``Notify.key``: a redelivered command finds its entry and sends nothing twice.
An email is sent only by whoever claims its entry (``Outbox.claim``), so the handler and any
number of retry rounds never send one entry at the same time. An email the server did not
take is tried again later (``services/notifier/retries.py``) on the help desk's schedule.

Loop protection: never mail one of our own mailboxes' addresses, which would come back as a
new mail, and at most so many emails per address and window (``rate_limit.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from contracts.base import Envelope
from contracts.notify import Notify
from services.notifier.message import DEFAULT_DOMAIN, OutgoingMail, message_id_for
from services.notifier.rate_limit import RateLimit, over_limit
from services.notifier.schedule import RetryPolicy, next_attempt_at
from services.runtime.addresses import AddressSet
from services.runtime.errors import ConfigError, InfraError, MailError

log = logging.getLogger(__name__)

#: How long a claimed email is left to its claimer. Longer than any SMTP conversation (every
#: step has its own timeout); a claimer that dies frees its emails after this.
SEND_LEASE = timedelta(minutes=10)


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    sent_at: datetime | None


@dataclass(frozen=True)
class PendingMail:
    """A claimed email: its claimer alone may send it until the lease ends."""

    id: int
    helpdesk: str
    #: Attempts so far, this one included.
    attempts: int
    created_at: datetime
    mail: OutgoingMail


class Outbox(Protocol):
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
        """Keep the notification (once per key: a second call returns the first entry).

        ``next_attempt_at``: when the email may be claimed for sending; None never.
        """
        ...

    def claim(self, entry_id: int, now: datetime, lease_until: datetime) -> PendingMail | None:
        """Take the email if it is due and unsent: count an attempt and hold it until
        ``lease_until``. None when it is not due, sent, suppressed, or another claimer has it."""
        ...

    def mark_sent(self, entry_id: int, at: datetime) -> None: ...

    def mark_failed(self, entry_id: int, error: str, retry_at: datetime | None) -> None:
        """Keep ``error``; the email is due again at ``retry_at``, never when None."""
        ...

    def recent_email_counts(
        self, helpdesk: str, addresses: Sequence[str], since: datetime
    ) -> dict[str, int]:
        """Per lower-cased address: emails kept for it since ``since``, suppressed ones not
        counted."""
        ...


class Sender(Protocol):
    def send(self, mail: OutgoingMail) -> None:
        """Send one mail.

        Raises:
            InfraError: the server cannot take it now (down, busy, 4xx): try again later.
            ConfigError: a setting must be fixed (login refused, certificate): try again later.
            MailError: the server refused this mail for good (5xx): do not try again.
        """
        ...


@dataclass(frozen=True)
class Outgoing:
    """How one help desk's notification emails go out."""

    #: None: the help desk has no outgoing server, emails stay in the outbox.
    sender: Sender | None = None
    #: Of the Message-IDs; from the help desk's ``outgoing.from_address``.
    domain: str = DEFAULT_DOMAIN
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rate_limit: RateLimit = field(default_factory=RateLimit)


def notify(
    msg: Notify,
    *,
    outbox: Outbox,
    outgoing: Outgoing,
    own_addresses: AddressSet,
    now: datetime,
) -> list[Envelope]:
    """Store the notification; deliver a bell at once and an email when SMTP is configured.

    Without an outgoing server an email stays in the outbox (``sent_at`` empty). An email
    over the rate limit is kept with ``suppressed_reason`` and never sent. When the server
    does not take an email, the entry keeps the error and is tried again on the help desk's
    schedule.
    """
    recipients = [a for a in msg.to if a not in own_addresses]
    if msg.channel == "bell":
        _ring(msg, recipients, outbox, now)
        return []
    sender = outgoing.sender if recipients else None
    suppressed = None
    if sender is not None:
        suppressed = _rate_limited(msg, recipients, outbox, outgoing.rate_limit, now)
    entry = outbox.add(
        msg,
        recipients,
        now,
        message_id=message_id_for(msg.key, outgoing.domain),
        suppressed_reason=suppressed,
        next_attempt_at=now if sender and not suppressed else None,
    )
    if sender is not None and entry.sent_at is None:
        pending = outbox.claim(entry.id, now, now + SEND_LEASE)
        if pending is not None:
            deliver(pending, outbox=outbox, sender=sender, retry=outgoing.retry, now=now)
    return []


def _ring(msg: Notify, recipients: list[str], outbox: Outbox, now: datetime) -> None:
    """A bell is delivered by being kept: the people it names see it in Mailroom."""
    entry = outbox.add(msg, recipients, now)
    if entry.sent_at is None and recipients:
        outbox.mark_sent(entry.id, now)


def _rate_limited(
    msg: Notify, recipients: list[str], outbox: Outbox, limit: RateLimit, now: datetime
) -> str | None:
    recent = outbox.recent_email_counts(msg.helpdesk, recipients, now - limit.window)
    reason = over_limit(recipients, recent, limit)
    if reason:
        log.info("notification %s is over the rate limit of help desk %s", msg.key, msg.helpdesk)
    return reason


def deliver(
    pending: PendingMail, *, outbox: Outbox, sender: Sender, retry: RetryPolicy, now: datetime
) -> bool:
    """Send a claimed email and record the outcome; True when the server took it.

    A failure that may pass is kept with the time of the next attempt, or, past the
    policy's bounds, as given up. A mail the server refused for good is given up at once.
    """
    try:
        sender.send(pending.mail)
    except (InfraError, ConfigError) as exc:
        retry_at = next_attempt_at(pending.attempts, pending.created_at, now, retry)
        log.warning(
            "notification %s not sent (attempt %s, %s): %s",
            pending.id,
            pending.attempts,
            f"next at {retry_at.isoformat()}" if retry_at else "given up",
            exc,
        )
        _failed(pending, outbox, str(exc), retry_at)
        return False
    except MailError as exc:
        # The server's answer may quote an address: it goes to the store, not the log.
        log.error("notification %s refused by the server for good; given up", pending.id)
        _failed(pending, outbox, str(exc), None)
        return False
    except Exception as exc:  # noqa: BLE001 - one unsendable email must not stop the others
        log.exception("notification %s: unexpected error while sending; given up", pending.id)
        _failed(pending, outbox, f"unexpected error: {exc!r}", None)
        return False
    outbox.mark_sent(pending.id, now)
    return True


def _failed(pending: PendingMail, outbox: Outbox, error: str, retry_at: datetime | None) -> None:
    if retry_at is None:
        error = f"gave up after {pending.attempts} attempt(s): {error}"
    outbox.mark_failed(pending.id, error, retry_at)
