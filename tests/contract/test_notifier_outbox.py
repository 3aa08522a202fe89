"""Behaviour every notifier Outbox must have: the in-memory fake and the store's adapter alike.

The notifier's unit tests run on ``InMemoryOutbox``; these tests hold it to what
``SqlOutbox`` does on SQLite and PostgreSQL: one entry per key, claims that count attempts
and hold the email until their lease ends, retry times, the order of retries, and the
counts the rate limit reads. Time is a ``FakeClock``, moved by the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from contracts.notify import Notify
from services.notifier.adapters import SqlOutbox
from services.notifier.handler import Outgoing
from services.notifier.message import DEFAULT_DOMAIN, message_id_for
from services.notifier.retries import RetryOutbox, RetryRounds
from services.notifier.testing import FailingSender, InMemoryOutbox
from services.runtime.store import Store
from services.runtime.testing import FakeClock

START = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)
NOBODY = frozenset[str]()


def notice(
    key: str,
    *,
    to: tuple[str, ...] = ("reps@example.com",),
    channel: str = "email",
    helpdesk: str = "default",
) -> Notify:
    return Notify(
        mail_id=f"mail-{key}",
        helpdesk=helpdesk,
        key=key,
        topic="mail_error",
        channel=channel,  # type: ignore[arg-type]
        to=list(to),
        subject=f"Mail {key} could not be processed",
        body="See the error folder.",
        in_reply_to="<original@example.org>",
    )


class OutboxContract:
    @pytest.fixture
    def outbox(self) -> Iterator[RetryOutbox]:
        raise NotImplementedError("an implementation's test class provides outbox")

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock(START)

    def keep(
        self, outbox: RetryOutbox, key: str, clock: FakeClock, *, due: object = "now", **fields
    ) -> int:
        """An email kept for sending, due now unless ``due`` says when (None: never)."""
        msg = notice(key, **fields)
        at = clock.now() if due == "now" else due
        entry = outbox.add(
            msg,
            list(msg.to),
            clock.now(),
            message_id=message_id_for(key, "desk.example"),
            next_attempt_at=at,  # type: ignore[arg-type]
        )
        return entry.id

    # -- keeping -----------------------------------------------------------------------------

    def test_each_key_is_kept_once_and_adding_it_again_changes_nothing(self, outbox, clock):
        first = self.keep(outbox, "k", clock, due=None)
        other = self.keep(outbox, "other", clock, due=None)
        msg = notice("k", to=("someone@else.example",))

        again = outbox.add(msg, list(msg.to), START, suppressed_reason="x", next_attempt_at=START)

        assert again.id == first != other
        assert again.sent_at is None
        assert outbox.claim(first, START, START + LEASE) is None  # still never due
        assert outbox.recent_email_counts("default", ["someone@else.example"], START) == {
            "someone@else.example": 0
        }

    def test_adding_a_sent_key_again_tells_when_it_was_sent(self, outbox, clock):
        entry = self.keep(outbox, "k", clock)
        outbox.mark_sent(entry, START + timedelta(seconds=5))

        msg = notice("k")
        again = outbox.add(msg, list(msg.to), START + timedelta(minutes=1), next_attempt_at=START)

        assert again.id == entry
        assert again.sent_at == START + timedelta(seconds=5)

    # -- claims ------------------------------------------------------------------------------

    def test_a_claimed_email_carries_everything_needed_to_send_it(self, outbox, clock):
        entry = self.keep(outbox, "k", clock, to=("ann@example.org", "bob@example.org"))

        pending = outbox.claim(entry, START, START + LEASE)

        assert pending is not None
        assert (pending.id, pending.helpdesk, pending.attempts) == (entry, "default", 1)
        assert pending.created_at == START
        mail = pending.mail
        assert mail.key == "k"
        assert mail.to == ("ann@example.org", "bob@example.org")
        assert mail.subject == "Mail k could not be processed"
        assert mail.body == "See the error folder."
        assert mail.in_reply_to == "<original@example.org>"
        assert mail.message_id == message_id_for("k", "desk.example")
        assert mail.date == START

    def test_an_email_kept_without_a_message_id_is_sent_with_the_one_its_key_gives(
        self, outbox, clock
    ):
        msg = notice("k")
        entry = outbox.add(msg, list(msg.to), START, next_attempt_at=START)

        pending = outbox.claim(entry.id, START, START + LEASE)

        assert pending is not None
        assert pending.mail.message_id == message_id_for("k", DEFAULT_DOMAIN)

    def test_a_due_email_is_claimed_once_until_its_lease_ends(self, outbox, clock):
        entry = self.keep(outbox, "k", clock)

        first = outbox.claim(entry, clock.now(), clock.now() + LEASE)
        clock.advance(minutes=9, seconds=59)
        while_held = outbox.claim(entry, clock.now(), clock.now() + LEASE)
        held_for_retries = outbox.claim_next(
            clock.now(), clock.now() + LEASE, skip_helpdesks=NOBODY
        )
        clock.advance(seconds=1)
        after_the_lease = outbox.claim(entry, clock.now(), clock.now() + LEASE)

        assert first is not None and first.attempts == 1
        assert while_held is None and held_for_retries is None
        assert after_the_lease is not None and after_the_lease.attempts == 2  # its claimer died

    def test_an_email_due_later_is_not_claimed_before_its_time(self, outbox, clock):
        entry = self.keep(outbox, "k", clock, due=START + timedelta(minutes=5))

        early = outbox.claim(entry, START + timedelta(minutes=4), START + LEASE)
        on_time = outbox.claim(entry, START + timedelta(minutes=5), START + LEASE)

        assert early is None
        assert on_time is not None and on_time.attempts == 1

    def test_sent_suppressed_unscheduled_and_bell_entries_are_never_claimed(self, outbox, clock):
        sent = self.keep(outbox, "sent", clock)
        outbox.mark_sent(sent, START)
        msg = notice("suppressed")
        suppressed = outbox.add(
            msg, list(msg.to), START, suppressed_reason="rate limit", next_attempt_at=START
        ).id
        unscheduled = self.keep(outbox, "no-server", clock, due=None)
        bell = self.keep(outbox, "bell", clock, channel="bell")

        later = START + timedelta(days=1)
        assert outbox.claim_next(later, later + LEASE, skip_helpdesks=NOBODY) is None
        for entry in (sent, suppressed, unscheduled, bell):
            assert outbox.claim(entry, later, later + LEASE) is None

    def test_claiming_or_marking_an_unknown_entry_changes_nothing(self, outbox, clock):
        entry = self.keep(outbox, "k", clock)

        assert outbox.claim(entry + 1000, START, START + LEASE) is None
        outbox.mark_sent(entry + 1000, START)
        outbox.mark_failed(entry + 1000, "gone", None)

        assert outbox.claim(entry, START, START + LEASE) is not None

    # -- outcomes of an attempt --------------------------------------------------------------

    def test_a_failed_email_is_due_again_at_its_retry_time_and_counts_its_attempts(
        self, outbox, clock
    ):
        entry = self.keep(outbox, "k", clock)
        outbox.claim(entry, START, START + LEASE)
        outbox.mark_failed(entry, "SMTP server down", START + timedelta(seconds=30))

        early = outbox.claim_next(
            START + timedelta(seconds=29), START + LEASE, skip_helpdesks=NOBODY
        )
        due = outbox.claim_next(START + timedelta(seconds=30), START + LEASE, skip_helpdesks=NOBODY)

        assert early is None
        assert due is not None and due.id == entry and due.attempts == 2

    def test_an_email_given_up_is_never_claimed_again(self, outbox, clock):
        entry = self.keep(outbox, "k", clock)
        outbox.claim(entry, START, START + LEASE)
        outbox.mark_failed(entry, "gave up after 1 attempt(s): refused", None)

        later = START + timedelta(days=30)
        assert outbox.claim(entry, later, later + LEASE) is None
        assert outbox.claim_next(later, later + LEASE, skip_helpdesks=NOBODY) is None

    def test_a_sent_email_is_never_claimed_again(self, outbox, clock):
        entry = self.keep(outbox, "k", clock)
        outbox.claim(entry, START, START + LEASE)
        outbox.mark_sent(entry, START)

        later = START + LEASE
        assert outbox.claim(entry, later, later + LEASE) is None
        assert outbox.claim_next(later, later + LEASE, skip_helpdesks=NOBODY) is None

    # -- retry order -------------------------------------------------------------------------

    def test_the_email_due_longest_is_claimed_first_and_skipped_help_desks_are_left(
        self, outbox, clock
    ):
        self.keep(outbox, "late", clock, due=START)
        self.keep(outbox, "early", clock, due=START - timedelta(minutes=5))
        self.keep(outbox, "other", clock, due=START - timedelta(minutes=9), helpdesk="other")
        self.keep(outbox, "same time, kept after", clock, due=START)

        order = [
            outbox.claim_next(START, START + LEASE, skip_helpdesks=frozenset({"other"}))
            for _ in range(4)
        ]

        keys = [p.mail.key if p else None for p in order]
        assert keys == ["early", "late", "same time, kept after", None]

    def test_retry_rounds_send_a_failing_email_on_schedule_until_the_server_takes_it(
        self, outbox, clock
    ):
        # Given an email whose server fails twice, then takes it
        self.keep(outbox, "k", clock)
        server = FailingSender(failures=2)
        outgoing = Outgoing(sender=server, domain="desk.example")
        rounds = RetryRounds(outbox=outbox, outgoing_of=lambda _: outgoing, clock=clock)

        # When rounds run as time goes by
        attempted = [rounds.run()]
        for _ in range(3):
            clock.advance(seconds=30)
            attempted.append(rounds.run())
        clock.advance(minutes=1)
        attempted.append(rounds.run())
        clock.advance(hours=1)
        attempted.append(rounds.run())

        # Then it was tried at 0 s, 30 s and 90 s (doubling waits), and sent once
        assert attempted == [1, 1, 0, 1, 0, 0]
        assert [m.key for m in server.sent] == ["k"]

    # -- counts for the rate limit -----------------------------------------------------------

    def test_recent_emails_are_counted_per_address_whatever_its_case(self, outbox, clock):
        self.keep(outbox, "1", clock, to=("Ann@Example.org", "reps@example.com"))
        self.keep(outbox, "2", clock, to=("ann@example.org",))
        self.keep(outbox, "bell", clock, to=("ann@example.org",), channel="bell")
        self.keep(outbox, "other desk", clock, to=("ann@example.org",), helpdesk="other")
        msg = notice("suppressed", to=("ann@example.org",))
        outbox.add(msg, list(msg.to), START, suppressed_reason="rate limit")

        counts = outbox.recent_email_counts(
            "default", ["ANN@example.org", "reps@example.com", "bob@example.org"], START
        )

        assert counts == {"ann@example.org": 2, "reps@example.com": 1, "bob@example.org": 0}

    def test_only_emails_kept_since_the_start_of_the_window_count(self, outbox, clock):
        self.keep(outbox, "old", clock, to=("ann@example.org",))
        clock.advance(minutes=30)
        self.keep(outbox, "new", clock, to=("ann@example.org",))

        since_new = outbox.recent_email_counts("default", ["ann@example.org"], clock.now())
        after_new = outbox.recent_email_counts(
            "default", ["ann@example.org"], clock.now() + timedelta(microseconds=1)
        )

        assert since_new == {"ann@example.org": 1}
        assert after_new == {"ann@example.org": 0}
        assert outbox.recent_email_counts("default", [], START) == {}

    def test_address_counts_take_wildcards_quotes_and_non_ascii_literally(self, outbox, clock):
        self.keep(outbox, "1", clock, to=("a_b@example.org",))
        self.keep(outbox, "2", clock, to=("100%@example.org",))
        self.keep(outbox, "3", clock, to=("jörg@example.de",))
        self.keep(outbox, "4", clock, to=('"x/y"@example.org',))

        counts = outbox.recent_email_counts(
            "default",
            [
                "axb@example.org",
                "a_b@example.org",
                "1000@example.org",
                "jörg@example.de",
                "jorg@example.de",
                '"x/y"@example.org',
            ],
            START,
        )

        assert counts == {
            "axb@example.org": 0,
            "a_b@example.org": 1,
            "1000@example.org": 0,
            "jörg@example.de": 1,
            "jorg@example.de": 0,
            '"x/y"@example.org': 1,
        }

    def test_non_ascii_addresses_are_counted_whatever_their_case(self, outbox, clock):
        # An auto-responder's address written once in capitals still meets the limit
        self.keep(outbox, "1", clock, to=("JÖRG@Example.de",))
        self.keep(outbox, "2", clock, to=("jörg@example.de",))
        self.keep(outbox, "3", clock, to=("ÄÖÜ@example.de",))

        counts = outbox.recent_email_counts("default", ["Jörg@example.de", "äöü@EXAMPLE.de"], START)

        assert counts == {"jörg@example.de": 2, "äöü@example.de": 1}


# -- the in-memory fake used by the notifier's unit tests -----------------------------------


class TestInMemoryOutbox(OutboxContract):
    @pytest.fixture
    def outbox(self) -> Iterator[RetryOutbox]:
        yield InMemoryOutbox()


# -- the store's adapter, on SQLite and PostgreSQL ------------------------------------------


class TestSqlOutbox(OutboxContract):
    @pytest.fixture
    def outbox(self, store: Store) -> Iterator[RetryOutbox]:
        yield SqlOutbox(store)
