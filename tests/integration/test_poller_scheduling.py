"""Poller scheduling: one slow mailbox delays nobody; one poller per mailbox at a time."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from contracts.settings import Settings, parse_settings
from services.poller.adapters import SqlLeases
from services.poller.sources.base import Throttled
from services.poller.testing import FakeMailSource
from services.poller.worker import Poller
from services.reports import run_summary
from services.runtime.bus import connect
from services.runtime.clock import SystemClock
from services.runtime.config_store import ConfigStore
from services.runtime.stage import secret_box
from services.runtime.store import Store

MAIL = b"From: a@example.com\r\nSubject: hi\r\nMessage-ID: <%d@example.com>\r\n\r\nbody\r\n"


class SlowSource(FakeMailSource):
    """A mailbox whose server hangs until released, like one that stopped answering."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def list_new(self, limit: int) -> list[str]:
        self.release.wait(timeout=30)
        return super().list_new(limit)


@pytest.fixture
def store(settings: Settings, tmp_path: Path) -> Store:
    store = Store(settings.effective_database_url)
    store.migrate()
    boxes = "\n".join(
        f"      - {{name: {n}, protocol: maildir, path: {tmp_path / n}, fetch_every_minutes: 1}}"
        for n in ("hanging", "quick")
    )
    parsed = parse_settings(f"helpdesks:\n  - id: default\n    mailboxes:\n{boxes}\n")
    ConfigStore(store, secret_box(settings)).apply(parsed)
    return store


def make_poller(settings: Settings, store: Store, sources: dict[str, FakeMailSource]) -> Poller:
    return Poller(
        settings,
        connection=connect("memory://"),
        store=store,
        clock=SystemClock(),
        open_mailbox=lambda state, _s: sources[state.settings.name],
    )


def test_a_hanging_mailbox_does_not_delay_the_others(settings: Settings, store: Store) -> None:
    release = threading.Event()
    slow, quick = SlowSource(release), FakeMailSource()
    quick.deliver(MAIL % 1)
    poller = make_poller(settings, store, {"hanging": slow, "quick": quick})

    poller.poll_due()  # the worker's tick returns at once; rounds run on their own
    done = threading.Event()
    threading.Thread(target=lambda: (_wait_handed_off(quick), done.set()), daemon=True).start()

    assert done.wait(timeout=20), "the quick mailbox waited for the slow one"
    assert not release.is_set()
    release.set()
    poller.close()


def _wait_handed_off(source: FakeMailSource) -> None:
    while not source.handed_off:
        threading.Event().wait(0.02)


def test_a_mailbox_is_polled_by_one_poller_at_a_time(settings: Settings, store: Store) -> None:
    quick = FakeMailSource()
    quick.deliver(MAIL % 2)
    other_process = SqlLeases(store, holder="other-host:1")
    assert other_process.acquire("quick", SystemClock().now(), timedelta(minutes=5))
    poller = make_poller(settings, store, {"quick": quick, "hanging": FakeMailSource()})

    [state] = [
        s
        for s in ConfigStore(store, secret_box(settings)).mailboxes()
        if s.settings.name == "quick"
    ]
    assert poller.poll(state) == []
    assert quick.handed_off == set()

    other_process.release("quick")
    assert len(poller.poll(state)) == 1
    assert quick.handed_off == {"fake-1"}


def test_a_dead_pollers_lease_expires(settings: Settings, store: Store) -> None:
    quick = FakeMailSource()
    quick.deliver(MAIL % 3)
    dead = SqlLeases(store, holder="crashed-host:9")
    dead.acquire("quick", SystemClock().now() - timedelta(hours=1), timedelta(minutes=5))
    poller = make_poller(settings, store, {"quick": quick, "hanging": FakeMailSource()})

    [state] = [
        s
        for s in ConfigStore(store, secret_box(settings)).mailboxes()
        if s.settings.name == "quick"
    ]
    fetched = poller.poll(state)

    assert len(fetched) == 1
    with store.transaction() as conn:
        assert run_summary(conn, fetched).fetched == 1


def test_a_failed_round_is_counted_and_the_next_good_one_resets_it(
    settings: Settings, store: Store
) -> None:
    from services.runtime.errors import InfraError

    broken = FakeMailSource()
    broken.fail_with = InfraError("mailbox 'quick': no answer from mail.example.com:993")
    poller = make_poller(settings, store, {"quick": broken, "hanging": FakeMailSource()})
    config = ConfigStore(store, secret_box(settings))
    state = next(s for s in config.mailboxes() if s.settings.name == "quick")

    poller.poll(state)
    poller.poll(state)
    failing = next(s for s in config.mailboxes() if s.settings.name == "quick")
    broken.fail_with = None
    poller.poll(state)
    healed = next(s for s in config.mailboxes() if s.settings.name == "quick")

    assert failing.consecutive_failures == 2
    assert "no answer from mail.example.com:993" in (failing.last_error or "")
    assert healed.consecutive_failures == 0 and healed.last_error is None


def test_an_edit_waits_for_the_round_under_way_then_pauses_the_mailbox(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    # Given a round on "hanging" that is under way (its server is slow to answer)
    release = threading.Event()
    slow = SlowSource(release)
    slow.deliver(MAIL % 4)
    opened: list[str] = []
    sources = {"hanging": slow, "quick": FakeMailSource()}
    poller = Poller(
        settings,
        connection=connect("memory://"),
        store=store,
        clock=SystemClock(),
        open_mailbox=lambda state, _s: (
            opened.append(f"{state.settings.name}:{state.settings.path}")
            or sources[state.settings.name]
        ),
    )
    poller.poll_due()
    while not any(o.startswith("hanging:") for o in opened):
        threading.Event().wait(0.02)

    # When an admin changes the mailbox's settings meanwhile
    config = ConfigStore(store, secret_box(settings))
    moved = tmp_path / "moved"
    edited = parse_settings(
        "helpdesks:\n  - id: default\n    mailboxes:\n"
        f"      - {{name: hanging, protocol: maildir, path: {moved}, fetch_every_minutes: 1}}\n"
        f"      - {{name: quick, protocol: maildir, path: {tmp_path / 'quick'}, "
        "fetch_every_minutes: 1}\n"
    )
    result = config.apply(edited)
    release.set()
    poller.close()

    # Then the round finishes as it began, and the mailbox waits to be enabled again
    assert result.paused == ["hanging"]
    assert slow.handed_off == {"fake-1"}, "the round under way was not cut short"
    hanging_rounds = [o for o in opened if o.startswith("hanging:")]
    assert hanging_rounds == [f"hanging:{tmp_path / 'hanging'}"], "the edit waited"
    state = next(s for s in config.mailboxes() if s.settings.name == "hanging")
    assert not state.enabled and "settings changed" in (state.paused_reason or "")
    assert str(state.settings.path) == str(moved), "the next round will use the new settings"


def test_a_throttled_round_is_no_failure_and_the_next_round_carries_on(
    settings: Settings, store: Store
) -> None:
    busy = FakeMailSource()
    busy.deliver(MAIL % 1)
    busy.fail_with = Throttled("mailbox 'quick': the server asked to wait 120 s", 120)
    poller = make_poller(settings, store, {"quick": busy, "hanging": FakeMailSource()})
    config = ConfigStore(store, secret_box(settings))
    state = next(s for s in config.mailboxes() if s.settings.name == "quick")

    for _ in range(5):  # more than the connectivity alert's threshold of 3
        poller.poll(state)
    throttled = next(s for s in config.mailboxes() if s.settings.name == "quick")
    busy.fail_with = None
    poller.poll(state)

    assert throttled.consecutive_failures == 0 and throttled.last_error is None
    assert throttled.alerted_at is None and throttled.enabled
    assert len(busy.handed_off) == 1, "the next round takes the mail"
