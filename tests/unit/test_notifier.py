"""The notifier: every notification is kept in the outbox; bells at once, email over SMTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts.notify import Notify
from services.notifier.handler import Outgoing, notify
from services.notifier.message import message_id_for
from services.notifier.rate_limit import RateLimit
from services.notifier.schedule import RetryPolicy
from services.notifier.testing import FailingSender, InMemoryOutbox, RecordingSender
from services.runtime.addresses import AddressSet
from services.runtime.errors import ConfigError, MailError

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
OWN = AddressSet.of({"support@example.com", "help@example.com"})


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


def run(msg: Notify, outbox: InMemoryOutbox, sender=None, *, now=NOW, **rules) -> None:
    outgoing = Outgoing(sender=sender, domain="example.com", **rules)
    assert notify(msg, outbox=outbox, outgoing=outgoing, own_addresses=OWN, now=now) == []


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
    assert outbox.rows["k-bell"].message_id is None


def test_an_email_without_an_outgoing_server_stays_in_the_outbox(outbox):
    run(command("email"), outbox, sender=None)

    [row] = outbox.rows.values()
    assert row.recipients == ["reps@example.com"]
    assert row.sent_at is None
    assert row.error is None
    assert row.next_attempt_at is None  # nothing will try to send it
    assert row.message_id == message_id_for("mail-1:mail_error:email", "example.com")


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

    # Then the mail went out once, as asked, with the entry's Message-ID, and is marked sent
    [mail] = sender.sent
    assert mail.to == ("reps@example.com", "lead@example.com")
    assert (mail.subject, mail.body) == ("Attachment removed", "invoice.exe was removed")
    assert mail.in_reply_to == "<m1@example.org>"
    assert mail.date == NOW
    row = outbox.rows[msg.key]
    assert mail.message_id == row.message_id
    assert row.sent_at == NOW
    assert row.attempts == 1


def test_the_message_id_is_fixed_by_the_key_and_the_from_domain():
    a = message_id_for("mail-1:attachment_stripped:email:sender", "example.com")

    assert a == message_id_for("mail-1:attachment_stripped:email:sender", "example.com")
    assert a != message_id_for("mail-1:attachment_stripped:email:reps", "example.com")
    assert a.startswith("<") and a.endswith("@example.com>")


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
    assert outbox.rows["a"].message_id != outbox.rows["b"].message_id


def test_an_smtp_failure_keeps_the_entry_with_its_error_and_a_next_attempt(outbox):
    # Given an SMTP server that is down
    sender = FailingSender("SMTP server smtp.example.com:587 did not take the mail: refused")
    msg = command("email")

    # When the command is handled, it does not raise
    run(msg, outbox, sender)

    # Then the entry stays, unsent, with the error, one attempt, and a retry in 30 seconds
    row = outbox.rows[msg.key]
    assert sender.attempts == 1
    assert row.sent_at is None
    assert row.error == "SMTP server smtp.example.com:587 did not take the mail: refused"
    assert row.attempts == 1
    assert row.next_attempt_at == NOW + timedelta(seconds=30)


def test_a_redelivery_before_the_next_attempt_sends_nothing(outbox):
    msg = command("email")
    run(msg, outbox, FailingSender())
    sender = RecordingSender()

    run(msg, outbox, sender, now=NOW + timedelta(seconds=5))

    assert sender.sent == []
    assert outbox.rows[msg.key].attempts == 1


def test_a_login_the_server_refuses_is_retried_like_an_outage(outbox):
    msg = command("email")

    run(
        msg, outbox, FailingSender("refused the login: check outgoing.password", raises=ConfigError)
    )

    row = outbox.rows[msg.key]
    assert row.next_attempt_at == NOW + timedelta(seconds=30)
    assert "check outgoing.password" in row.error


def test_a_mail_the_server_refuses_for_good_is_given_up_at_once(outbox):
    msg = command("email")

    run(msg, outbox, FailingSender("refused every recipient", raises=MailError))

    row = outbox.rows[msg.key]
    assert row.next_attempt_at is None
    assert row.error == "gave up after 1 attempt(s): refused every recipient"


def test_a_sender_bug_gives_the_entry_up_with_the_error_instead_of_stopping(outbox):
    msg = command("email")

    run(msg, outbox, FailingSender("boom", raises=RuntimeError))

    row = outbox.rows[msg.key]
    assert row.next_attempt_at is None
    assert row.error == "gave up after 1 attempt(s): unexpected error: RuntimeError('boom')"


def test_our_own_mailbox_addresses_are_never_mailed(outbox):
    # Given a notification addressed to a customer and to two of our own mailboxes
    sender = RecordingSender()
    msg = command("email", to=["ann@example.org", "Support@Example.com", "help@example.com"])

    # When it is sent
    run(msg, outbox, sender)

    # Then only the customer gets it: mail to ourselves would come back as a new mail
    [sent] = sender.sent
    assert sent.to == ("ann@example.org",)
    assert outbox.rows[msg.key].recipients == ["ann@example.org"]


def test_a_notification_only_for_our_own_mailboxes_sends_nothing(outbox):
    sender = RecordingSender()
    msg = command("email", to=["support@example.com"])

    run(msg, outbox, sender)

    assert sender.sent == []
    assert outbox.rows[msg.key].recipients == []
    assert outbox.rows[msg.key].next_attempt_at is None


# -- rate limit ------------------------------------------------------------------------------

LIMIT = RateLimit(per_address=3, window=timedelta(minutes=60))


def notices_to(to: list[str], n: int, *, start: int = 0) -> list[Notify]:
    return [command("email", key=f"n{i}", to=to) for i in range(start, start + n)]


def test_emails_over_the_rate_limit_are_kept_suppressed_and_not_sent(outbox):
    # Given a limit of 3 emails per address and hour
    sender = RecordingSender()

    # When 5 notifications for the same customer come within minutes
    for i, msg in enumerate(notices_to(["Ann@Example.org"], 5)):
        run(msg, outbox, sender, now=NOW + timedelta(minutes=i), rate_limit=LIMIT)

    # Then 3 are sent, 2 are kept with the reason and never sent
    assert len(sender.sent) == 3
    suppressed = [r for r in outbox.rows.values() if r.suppressed_reason]
    assert [r.msg.key for r in suppressed] == ["n3", "n4"]
    assert {r.suppressed_reason for r in suppressed} == {
        "rate limit: 3 emails to Ann@Example.org in 60 minutes"
    }
    assert all(r.sent_at is None and r.next_attempt_at is None for r in suppressed)


def test_the_rate_limit_counts_each_address_apart_and_support_reps_too(outbox):
    sender = RecordingSender()
    for msg in notices_to(["reps@example.com"], 3):
        run(msg, outbox, sender, rate_limit=LIMIT)

    # A fourth mail for the reps is held back, one for a customer goes out
    run(command("email", key="reps-4", to=["reps@example.com"]), outbox, sender, rate_limit=LIMIT)
    run(command("email", key="ann-1", to=["ann@example.org"]), outbox, sender, rate_limit=LIMIT)

    assert outbox.rows["reps-4"].suppressed_reason
    assert outbox.rows["ann-1"].sent_at == NOW
    assert len(sender.sent) == 4


def test_an_email_for_several_people_is_held_back_when_one_of_them_is_over_the_limit(outbox):
    sender = RecordingSender()
    for msg in notices_to(["ann@example.org"], 3):
        run(msg, outbox, sender, rate_limit=LIMIT)

    both = command("email", key="both", to=["reps@example.com", "ann@example.org"])
    run(both, outbox, sender, rate_limit=LIMIT)

    assert outbox.rows["both"].suppressed_reason == (
        "rate limit: 3 emails to ann@example.org in 60 minutes"
    )


def test_emails_go_out_again_once_the_window_has_passed(outbox):
    sender = RecordingSender()
    for msg in notices_to(["ann@example.org"], 4):
        run(msg, outbox, sender, rate_limit=LIMIT)

    later = NOW + timedelta(minutes=61)
    run(
        command("email", key="later", to=["ann@example.org"]),
        outbox,
        sender,
        now=later,
        rate_limit=LIMIT,
    )

    assert outbox.rows["later"].sent_at == later
    assert len(sender.sent) == 4


def test_bell_notifications_are_not_rate_limited(outbox):
    sender = RecordingSender()
    for i in range(5):
        run(
            command("bell", key=f"bell-{i}", to=["admin@example.com"]),
            outbox,
            sender,
            rate_limit=LIMIT,
        )

    assert all(r.sent_at == NOW and r.suppressed_reason is None for r in outbox.rows.values())


def test_a_failed_email_still_counts_toward_the_limit(outbox):
    # A failing server must not lift the loop protection: its emails are still on their way.
    for msg in notices_to(["ann@example.org"], 3):
        run(msg, outbox, FailingSender(), rate_limit=LIMIT)

    run(
        command("email", key="fourth", to=["ann@example.org"]),
        outbox,
        RecordingSender(),
        rate_limit=LIMIT,
    )

    assert outbox.rows["fourth"].suppressed_reason


def test_a_retry_policy_of_the_help_desk_sets_the_first_wait(outbox):
    policy = RetryPolicy(first_delay=timedelta(seconds=2), max_delay=timedelta(seconds=10))

    run(command("email"), outbox, FailingSender(), retry=policy)

    assert outbox.rows["mail-1:mail_error:email"].next_attempt_at == NOW + timedelta(seconds=2)
