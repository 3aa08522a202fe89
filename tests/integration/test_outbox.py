"""The notifier's outbox in the store, on SQLite and on a real PostgreSQL: claims, counts."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from contracts.notify import Notify
from services.notifier.adapters import SqlOutbox
from services.notifier.handler import Outgoing
from services.notifier.message import message_id_for
from services.notifier.retries import RetryRounds
from services.notifier.testing import RecordingSender
from services.runtime.store import Store
from services.runtime.testing import FakeClock

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
LEASE = NOW + timedelta(minutes=10)


def notice(key: str, *, to=("reps@example.com",), channel="email", helpdesk="default") -> Notify:
    return Notify(
        mail_id="mail-1",
        helpdesk=helpdesk,
        key=key,
        topic="mail_error",
        channel=channel,
        to=list(to),
        subject="Mail could not be processed",
        body="See the error folder.",
    )


def keep(outbox: SqlOutbox, key: str, *, at=NOW, due=NOW, **fields) -> int:
    msg = notice(key, **fields)
    entry = outbox.add(
        msg, list(msg.to), at, message_id=message_id_for(key, "example.com"), next_attempt_at=due
    )
    return entry.id


@pytest.fixture
def outbox(store: Store) -> SqlOutbox:
    return SqlOutbox(store)


def test_a_due_email_is_claimed_once_until_its_lease_ends(outbox):
    entry = keep(outbox, "k")

    first = outbox.claim(entry, NOW, LEASE)
    again = outbox.claim(entry, NOW + timedelta(minutes=1), LEASE)
    after_lease = outbox.claim(entry, LEASE, LEASE + timedelta(minutes=10))

    assert first is not None and first.attempts == 1
    assert first.mail.message_id == message_id_for("k", "example.com")
    assert first.mail.to == ("reps@example.com",)
    assert first.mail.date == NOW
    assert again is None
    assert after_lease is not None and after_lease.attempts == 2  # its claimer died


def test_sent_suppressed_and_unscheduled_emails_are_never_claimed(outbox):
    sent = keep(outbox, "sent")
    outbox.mark_sent(sent, NOW)
    msg = notice("suppressed")
    outbox.add(msg, list(msg.to), NOW, suppressed_reason="rate limit", next_attempt_at=NOW)
    keep(outbox, "no-server", due=None)
    keep(outbox, "bell", channel="bell")

    assert outbox.claim_next(NOW + timedelta(days=1), LEASE, skip_helpdesks=frozenset()) is None


def test_a_failed_email_is_due_again_at_its_retry_time(outbox):
    entry = keep(outbox, "k")
    outbox.claim(entry, NOW, LEASE)
    outbox.mark_failed(entry, "SMTP server down", NOW + timedelta(seconds=30))

    early = outbox.claim_next(NOW + timedelta(seconds=29), LEASE, skip_helpdesks=frozenset())
    due = outbox.claim_next(NOW + timedelta(seconds=30), LEASE, skip_helpdesks=frozenset())

    assert early is None
    assert due is not None and due.id == entry and due.attempts == 2


def test_the_email_due_longest_is_claimed_first_and_skipped_help_desks_are_left(outbox):
    keep(outbox, "late", due=NOW)
    keep(outbox, "early", due=NOW - timedelta(minutes=5))
    keep(outbox, "other", due=NOW - timedelta(minutes=9), helpdesk="other")

    order = [outbox.claim_next(NOW, LEASE, skip_helpdesks=frozenset({"other"})) for _ in range(3)]

    assert [p.mail.key if p else None for p in order] == ["early", "late", None]


def test_adding_a_key_again_returns_the_first_entry_unchanged(outbox):
    first = keep(outbox, "k", due=None)
    msg = notice("k")

    again = outbox.add(
        msg, ["someone@else.example"], NOW, suppressed_reason="x", next_attempt_at=NOW
    )

    assert again.id == first
    assert outbox.claim_next(NOW, LEASE, skip_helpdesks=frozenset()) is None


def test_recent_emails_are_counted_per_address_whatever_its_case(outbox):
    keep(outbox, "1", to=["Ann@Example.org", "reps@example.com"])
    keep(outbox, "2", to=["ann@example.org"])
    keep(outbox, "old", to=["ann@example.org"], at=NOW - timedelta(hours=2))
    keep(outbox, "bell", to=["ann@example.org"], channel="bell")
    keep(outbox, "other desk", to=["ann@example.org"], helpdesk="other")
    msg = notice("suppressed", to=["ann@example.org"])
    outbox.add(msg, list(msg.to), NOW, suppressed_reason="rate limit")

    counts = outbox.recent_email_counts(
        "default",
        ["ANN@example.org", "reps@example.com", "bob@example.org"],
        NOW - timedelta(hours=1),
    )

    assert counts == {"ann@example.org": 2, "reps@example.com": 1, "bob@example.org": 0}


def test_address_counts_take_like_wildcards_and_non_ascii_literally(outbox):
    keep(outbox, "1", to=["a_b@example.org"])
    keep(outbox, "2", to=["100%@example.org"])
    keep(outbox, "3", to=["jörg@example.de"])

    counts = outbox.recent_email_counts(
        "default",
        ["axb@example.org", "a_b@example.org", "1000@example.org", "jörg@example.de"],
        NOW,
    )

    assert counts == {
        "axb@example.org": 0,
        "a_b@example.org": 1,
        "1000@example.org": 0,
        "jörg@example.de": 1,
    }


def test_two_notifier_processes_retrying_at_once_send_every_email_exactly_once(store):
    # Given 60 due emails and two notifier processes (each with its own database pool)
    for i in range(60):
        keep(SqlOutbox(store), f"k{i}", due=NOW - timedelta(seconds=i))
    server = RecordingSender()
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def notifier_process() -> None:
        outbox = SqlOutbox(Store(store.url))
        clock = FakeClock(NOW)
        outgoing = Outgoing(sender=server, domain="example.com")
        rounds = RetryRounds(outbox=outbox, outgoing_of=lambda _: outgoing, clock=clock, limit=5)
        start.wait()
        try:
            while rounds.run():
                pass
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    # When both run retry rounds at the same time until nothing is due
    threads = [threading.Thread(target=notifier_process) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    # Then every email went out, none twice
    assert errors == []
    sent = Counter(m.message_id for m in server.sent)
    assert len(sent) == 60
    assert set(sent.values()) == {1}
