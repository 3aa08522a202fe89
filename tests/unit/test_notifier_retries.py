"""Emails the outgoing server did not take: the back-off schedule and the retry round."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts.notify import Notify
from services.notifier.handler import Outgoing, notify
from services.notifier.rate_limit import RateLimit
from services.notifier.retries import NO_SERVER, RetryRounds
from services.notifier.schedule import RetryPolicy, next_attempt_at, retry_delay
from services.notifier.testing import FailingSender, InMemoryOutbox, RecordingSender
from services.notifier.worker import every
from services.runtime.addresses import AddressSet
from services.runtime.testing import FakeClock

START = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
S, MIN = timedelta(seconds=1), timedelta(minutes=1)


# -- the schedule ----------------------------------------------------------------------------


def test_the_default_waits_double_from_30_seconds_up_to_30_minutes():
    waits = [retry_delay(n, RetryPolicy()) for n in range(1, 10)]

    assert waits == [30 * S, 1 * MIN, 2 * MIN, 4 * MIN, 8 * MIN, 16 * MIN] + [30 * MIN] * 3


def test_a_shortened_schedule_keeps_its_shape():
    policy = RetryPolicy(first_delay=0.5 * S, max_delay=2 * S)

    assert [retry_delay(n, policy) for n in range(1, 6)] == [0.5 * S, S, 2 * S, 2 * S, 2 * S]


def test_a_very_late_attempt_still_waits_the_cap():
    assert retry_delay(10_000, RetryPolicy()) == 30 * MIN


def test_the_next_attempt_is_the_failure_time_plus_the_wait():
    now = START + 5 * MIN

    assert next_attempt_at(3, START, now, RetryPolicy()) == now + 2 * MIN


def test_an_email_is_given_up_after_the_last_allowed_attempt():
    policy = RetryPolicy(max_attempts=4)

    assert next_attempt_at(3, START, START, policy) is not None
    assert next_attempt_at(4, START, START, policy) is None


def test_an_email_is_given_up_when_the_next_attempt_would_come_after_a_day():
    policy = RetryPolicy()

    assert next_attempt_at(40, START, START + timedelta(hours=23), policy) is not None
    assert next_attempt_at(40, START, START + timedelta(hours=23, minutes=31), policy) is None


def test_by_default_a_server_that_stays_down_is_tried_for_a_day_and_then_given_up():
    policy, now, attempts = RetryPolicy(), START, 1
    while (at := next_attempt_at(attempts, START, now, policy)) is not None:
        now, attempts = at, attempts + 1

    assert timedelta(hours=23) < now - START <= timedelta(hours=24)
    assert attempts < policy.max_attempts


# -- the retry round -------------------------------------------------------------------------


def email(key: str, helpdesk: str = "default", to: str = "reps@example.com") -> Notify:
    return Notify(
        mail_id="mail-1",
        helpdesk=helpdesk,
        key=key,
        topic="mail_error",
        channel="email",
        to=[to],
        subject="Mail could not be processed",
        body="See the error folder.",
    )


POLICY = RetryPolicy(first_delay=30 * S, max_delay=30 * MIN, max_attempts=5)


class Desk:
    """The outgoing server of each help desk, as the worker looks it up."""

    def __init__(self, **senders) -> None:
        self.senders = senders

    def __call__(self, helpdesk: str) -> Outgoing:
        return Outgoing(sender=self.senders.get(helpdesk), domain="example.com", retry=POLICY)


def rounds(outbox: InMemoryOutbox, desks: Desk, clock: FakeClock, **options) -> RetryRounds:
    return RetryRounds(outbox=outbox, outgoing_of=desks, clock=clock, **options)


def handle(msg: Notify, outbox: InMemoryOutbox, desks: Desk, clock: FakeClock) -> None:
    outgoing = desks(msg.helpdesk)
    notify(msg, outbox=outbox, outgoing=outgoing, own_addresses=AddressSet(), now=clock.now())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def outbox() -> InMemoryOutbox:
    return InMemoryOutbox()


def test_an_email_that_failed_is_sent_once_the_server_is_back_and_its_wait_is_over(outbox, clock):
    # Given an email that failed while the server was down
    handle(email("k"), outbox, Desk(default=FailingSender()), clock)
    server = RecordingSender()
    back = Desk(default=server)

    # When the server is back, a round before the wait is over sends nothing
    clock.advance(seconds=10)
    assert rounds(outbox, back, clock).run() == 0

    # And a round after it sends the same mail, once
    clock.advance(seconds=30)
    rounds(outbox, back, clock).run()
    rounds(outbox, back, clock).run()

    [mail] = server.sent
    row = outbox.rows["k"]
    assert mail.message_id == row.message_id
    assert mail.date == START  # a retry is the same mail, dated when it was made
    assert row.sent_at == clock.now()
    assert row.error is None
    assert row.attempts == 2


def test_each_failed_round_counts_an_attempt_and_waits_longer(outbox, clock):
    down = Desk(default=FailingSender("SMTP server down"))
    handle(email("k"), outbox, down, clock)
    expected_waits = []

    for _ in range(3):
        row = outbox.rows["k"]
        clock.current = row.next_attempt_at
        rounds(outbox, down, clock).run()
        expected_waits.append(outbox.rows["k"].next_attempt_at - clock.now())

    assert expected_waits == [1 * MIN, 2 * MIN, 4 * MIN]
    assert outbox.rows["k"].attempts == 4
    assert outbox.rows["k"].error == "SMTP server down"


def test_after_the_last_attempt_the_email_is_given_up_and_kept_with_the_error(outbox, clock):
    down = Desk(default=FailingSender("SMTP server down"))
    handle(email("k"), outbox, down, clock)

    while (row := outbox.rows["k"]).next_attempt_at is not None:
        clock.current = row.next_attempt_at
        rounds(outbox, down, clock).run()

    row = outbox.rows["k"]
    assert row.attempts == POLICY.max_attempts
    assert row.error == "gave up after 5 attempt(s): SMTP server down"
    assert row.sent_at is None
    clock.advance(days=2)
    assert rounds(outbox, down, clock).run() == 0


def test_a_round_leaves_a_failing_help_desk_alone_and_sends_the_others(outbox, clock):
    # Given emails of two help desks that failed while their servers were down
    down = Desk(alpha=FailingSender(), beta=FailingSender())
    for key, desk in (("a1", "alpha"), ("b1", "beta"), ("a2", "alpha")):
        handle(email(key, desk), outbox, down, clock)
    clock.advance(minutes=1)
    broken, working = FailingSender(), RecordingSender()

    # When a round runs with alpha's server still down and beta's back
    attempted = rounds(outbox, Desk(alpha=broken, beta=working), clock).run()

    # Then alpha's second email did not wait for the same outage; beta's went out
    assert attempted == 2
    assert broken.attempts == 1
    assert [m.key for m in working.sent] == ["b1"]
    assert outbox.rows["a2"].attempts == 1


def test_after_a_failure_the_help_desk_rests_before_its_other_due_emails_are_tried(outbox, clock):
    # Given two emails that failed while the server was down, both due again
    down = Desk(default=FailingSender())
    handle(email("k1"), outbox, down, clock)
    handle(email("k2"), outbox, down, clock)
    clock.advance(minutes=1)
    still_down = FailingSender()
    retrying = rounds(outbox, Desk(default=still_down), clock)

    # When rounds follow each other while the server is still down
    retrying.run()
    clock.advance(seconds=1)
    retrying.run()

    # Then only one email waited for the outage
    assert still_down.attempts == 1

    # And once the first retry delay has passed, the other one is tried
    clock.advance(seconds=30)
    retrying.run()
    assert still_down.attempts == 2
    assert outbox.rows["k1"].attempts == outbox.rows["k2"].attempts == 2


def test_a_round_sends_at_most_its_limit(outbox, clock):
    down = Desk(default=FailingSender())
    for i in range(5):
        handle(email(f"k{i}"), outbox, down, clock)
    clock.advance(minutes=1)
    server = RecordingSender()

    assert rounds(outbox, Desk(default=server), clock, limit=3).run() == 3
    assert rounds(outbox, Desk(default=server), clock, limit=3).run() == 2
    assert sorted(m.key for m in server.sent) == [f"k{i}" for i in range(5)]


def test_emails_of_a_help_desk_without_a_server_stay_in_the_outbox(outbox, clock):
    handle(email("k"), outbox, Desk(default=FailingSender()), clock)
    clock.advance(minutes=1)

    rounds(outbox, Desk(), clock).run()

    row = outbox.rows["k"]
    assert (row.sent_at, row.next_attempt_at, row.error) == (None, None, NO_SERVER)


def test_suppressed_emails_are_never_retried(outbox, clock):
    one_a_day = RateLimit(per_address=1, window=timedelta(days=1))
    for key in ("first", "second"):
        outgoing = Outgoing(sender=FailingSender(), retry=POLICY, rate_limit=one_a_day)
        notify(email(key), outbox=outbox, outgoing=outgoing, own_addresses=AddressSet(), now=START)
    clock.advance(hours=1)
    server = RecordingSender()

    rounds(outbox, Desk(default=server), clock).run()

    assert [m.key for m in server.sent] == ["first"]
    assert outbox.rows["second"].suppressed_reason


def test_the_retry_timer_runs_at_most_once_per_interval(clock):
    runs = []
    tick = every(timedelta(seconds=1), lambda: runs.append(clock.now()), clock)

    tick()
    tick()
    clock.advance(seconds=0.5)
    tick()
    clock.advance(seconds=0.5)
    tick()

    assert runs == [START, START + S]
