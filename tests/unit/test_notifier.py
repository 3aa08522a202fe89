"""The notifier: every notification is kept in the outbox; bells at once, email over SMTP."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from contracts.notify import Notify
from services.notifier.handler import OutboxEntry, notify
from services.runtime.testing import FailingSender, RecordingSender, SentMail

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
OWN = frozenset({"support@example.com", "help@example.com"})


@dataclass
class Kept:
    """One outbox row."""

    id: int
    msg: Notify
    recipients: list[str]
    sent_at: datetime | None = None
    error: str | None = None


class InMemoryOutbox:
    """The notifier's Outbox, one row per key.

    It lives here rather than in runtime.testing because its entry type belongs to the
    notifier, and runtime imports no stage.
    """

    def __init__(self) -> None:
        self.rows: dict[str, Kept] = {}

    def add(self, msg: Notify, recipients: list[str], at: datetime) -> OutboxEntry:
        row = self.rows.setdefault(msg.key, Kept(len(self.rows) + 1, msg, list(recipients)))
        return OutboxEntry(id=row.id, sent_at=row.sent_at)

    def mark_sent(self, entry_id: int, at: datetime) -> None:
        row = self._row(entry_id)
        row.sent_at, row.error = at, None

    def mark_failed(self, entry_id: int, error: str) -> None:
        self._row(entry_id).error = error

    def _row(self, entry_id: int) -> Kept:
        return next(r for r in self.rows.values() if r.id == entry_id)


def command(channel: str = "email", *, key: str = "mail-1:mail_error:email", **fields) -> Notify:
    values = {
        "mail_id": "mail-1",
        "helpdesk": "default",
        "key": key,
        "topic": "mail_error",
        "channel": channel,
        "to": ["reps@example.com"],
        "subject": "Mail could not be processed",
        "body": "See the error folder.",
        **fields,
    }
    return Notify(**values)


@pytest.fixture
def outbox() -> InMemoryOutbox:
    return InMemoryOutbox()


def run(msg: Notify, outbox: InMemoryOutbox, sender=None) -> None:
    assert notify(msg, outbox=outbox, sender=sender, own_addresses=OWN, now=NOW) == []


def test_a_bell_notification_is_delivered_at_once(outbox):
    # Given a bell notification and no SMTP server at all
    msg = command("bell", key="k-bell", to=["admin@example.com"])

    # When it is handled
    run(msg, outbox, sender=None)

    # Then it is kept and counts as delivered
    [row] = outbox.rows.values()
    assert row.msg.channel == "bell"
    assert row.recipients == ["admin@example.com"]
    assert row.sent_at == NOW


def test_a_bell_notification_is_never_mailed(outbox):
    sender = RecordingSender()

    run(command("bell", key="k-bell"), outbox, sender)

    assert sender.sent == []
    assert outbox.rows["k-bell"].sent_at == NOW


def test_an_email_without_an_outgoing_server_stays_in_the_outbox(outbox):
    run(command("email"), outbox, sender=None)

    [row] = outbox.rows.values()
    assert row.recipients == ["reps@example.com"]
    assert row.sent_at is None
    assert row.error is None


def test_an_email_with_an_outgoing_server_is_sent_and_marked_sent(outbox):
    # Given an SMTP server
    sender = RecordingSender()
    msg = command(
        "email",
        to=["reps@example.com", "lead@example.com"],
        subject="Attachment removed",
        body="invoice.exe was removed",
        in_reply_to="<m1@example.org>",
    )

    # When the command is handled
    run(msg, outbox, sender)

    # Then the mail went out once, as asked, and the entry is marked sent
    assert sender.sent == [
        SentMail(
            to=["reps@example.com", "lead@example.com"],
            subject="Attachment removed",
            body="invoice.exe was removed",
            in_reply_to="<m1@example.org>",
        )
    ]
    assert outbox.rows[msg.key].sent_at == NOW


def test_a_redelivered_email_command_is_not_sent_again(outbox):
    sender = RecordingSender()
    msg = command("email")
    run(msg, outbox, sender)

    # The same command delivered again (another delivery, same key)
    run(msg.model_copy(update={"message_id": "second-delivery"}), outbox, sender)

    assert len(sender.sent) == 1
    assert len(outbox.rows) == 1


def test_notifications_with_different_keys_are_kept_apart(outbox):
    sender = RecordingSender()

    run(command("email", key="a"), outbox, sender)
    run(command("email", key="b"), outbox, sender)

    assert len(sender.sent) == 2
    assert set(outbox.rows) == {"a", "b"}


def test_an_smtp_failure_keeps_the_entry_unsent_with_its_error(outbox):
    # Given an SMTP server that refuses the mail
    sender = FailingSender("SMTP server smtp.example.com:587 did not take the mail: refused")
    msg = command("email")

    # When the command is handled, it does not raise
    run(msg, outbox, sender)

    # Then the entry stays, unsent, with the server's error
    row = outbox.rows[msg.key]
    assert sender.attempts == 1
    assert row.sent_at is None
    assert row.error == "SMTP server smtp.example.com:587 did not take the mail: refused"


def test_an_email_that_failed_once_is_sent_on_a_later_delivery(outbox):
    msg = command("email")
    run(msg, outbox, FailingSender())
    sender = RecordingSender()

    run(msg, outbox, sender)

    assert len(sender.sent) == 1
    assert outbox.rows[msg.key].sent_at == NOW
    assert outbox.rows[msg.key].error is None


def test_our_own_mailbox_addresses_are_never_mailed(outbox):
    # Given a notification addressed to a customer and to two of our own mailboxes
    sender = RecordingSender()
    msg = command("email", to=["ann@example.org", "Support@Example.com", "help@example.com"])

    # When it is sent
    run(msg, outbox, sender)

    # Then only the customer gets it: mail to ourselves would come back as a new mail
    [sent] = sender.sent
    assert sent.to == ["ann@example.org"]
    assert outbox.rows[msg.key].recipients == ["ann@example.org"]


def test_a_notification_only_for_our_own_mailboxes_sends_nothing(outbox):
    sender = RecordingSender()
    msg = command("email", to=["support@example.com"])

    run(msg, outbox, sender)

    assert sender.sent == []
    assert outbox.rows[msg.key].recipients == []
