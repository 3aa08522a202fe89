"""Waiting out an outage: retried until it passes, not ready meanwhile, bounded, stoppable."""

from __future__ import annotations

import threading

import pytest

from services.runtime.errors import BrokerOutage, MailError, StoreOutage
from services.runtime.health import Health
from services.runtime.outages import Outages, OutageTooLong, Stopping


class Clock:
    """Monotonic seconds that move only when the outage waits (its stop event is patched)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Sleepless(threading.Event):
    """A stop event whose waits return at once, moving ``clock`` on by the time waited."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        self.clock.now += timeout or 0.0
        return self.is_set()


def outages(limit_s: float = 600) -> tuple[Outages, Sleepless]:
    clock = Clock()
    stop = Sleepless(clock)
    return Outages(limit_s, health=Health(), stop=stop, monotonic=clock), stop


class Flaky:
    """Work that fails with ``errors`` in turn, then returns "done"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


STORE_DOWN = StoreOutage("database postgresql://mailroom@db/mailroom cannot be reached: refused")


def test_work_is_tried_again_until_the_store_is_back():
    o, stop = outages()
    work = Flaky(STORE_DOWN, STORE_DOWN, STORE_DOWN)

    assert o.ride_out(work) == "done"

    assert work.calls == 4
    assert len(stop.waits) == 3
    assert o.health.state() == (True, "")


def test_the_waits_grow_and_stay_bounded():
    o, stop = outages(limit_s=10_000)

    o.ride_out(Flaky(*[STORE_DOWN] * 30))

    assert stop.waits[0] <= 1.5
    assert max(stop.waits) <= 11
    assert stop.waits[-1] > stop.waits[0]


def test_the_worker_is_not_ready_while_it_waits_and_says_why():
    o, _ = outages()
    seen: list[tuple[bool, str]] = []

    def work() -> str:
        seen.append(o.health.state())
        if len(seen) < 3:
            raise STORE_DOWN
        return "done"

    o.ride_out(work)

    assert seen[1][0] is False
    assert "the store cannot be reached" in seen[1][1]
    assert "refused" in seen[1][1]
    assert o.health.state()[0] is True


def test_an_outage_past_the_limit_gives_up_naming_what_is_down_and_the_setting():
    o, _ = outages(limit_s=60)

    with pytest.raises(OutageTooLong) as given_up:
        o.ride_out(Flaky(*[STORE_DOWN] * 1000))

    text = str(given_up.value)
    assert "the store could not be reached" in text
    assert "MAILROOM_OUTAGE_LIMIT_SECONDS=60" in text
    assert "postgresql://mailroom@db/mailroom" in text


def test_a_stop_ends_the_wait_at_once():
    o, stop = outages()
    stop.set()

    with pytest.raises(Stopping):
        o.ride_out(Flaky(STORE_DOWN, STORE_DOWN))


def test_only_the_outages_asked_for_are_waited_out():
    o, _ = outages()

    with pytest.raises(BrokerOutage):
        o.ride_out(Flaky(BrokerOutage("publishing failed")), kinds=(StoreOutage,))
    with pytest.raises(MailError):
        o.ride_out(Flaky(MailError("bad mail")))


def test_the_outage_clock_runs_across_reconnection_attempts_until_it_recovers():
    # Given a broker that stays away while the worker keeps trying to reconnect
    o, _ = outages(limit_s=30)
    down = BrokerOutage("broker amqp://rabbit/ is unreachable: refused")

    # When it fails again and again, Then the worker gives up once the whole outage is too long
    with pytest.raises(OutageTooLong, match="the broker could not be reached"):
        for _ in range(100):
            o.failed(down)

    # And after a recovery the clock starts again
    o.recovered()
    o.failed(down)
    assert o.health.state()[0] is False
