"""What a poll round tells /metrics: mails handed on, mails it could not download, and the
mailbox's health as the store then has it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from contracts.settings import Settings, parse_settings
from services.poller.sources.base import Fetched
from services.poller.testing import FakeMailSource
from services.poller.worker import Poller
from services.reports import monitoring_figures
from services.runtime.bus import connect
from services.runtime.clock import SystemClock
from services.runtime.config_store import ConfigStore, MailboxState
from services.runtime.errors import InfraError
from services.runtime.metrics import StageMetrics
from services.runtime.stage import secret_box
from services.runtime.store import Store

MAIL = b"From: a@example.com\r\nSubject: hi\r\nMessage-ID: <%d@example.com>\r\n\r\nbody\r\n"


class OneTooLarge(FakeMailSource):
    """Downloads every mail but the one named ``too_large``, which it skips, as IMAP does a
    mail over the size limit."""

    too_large = ""

    def fetch_many(self, refs: Sequence[str]) -> Iterator[Fetched]:
        for ref in refs:
            if ref == self.too_large:
                yield Fetched(ref, None, skipped="over 25 MB", error_class="MailTooLarge")
            else:
                yield Fetched(ref, self.fetch_raw(ref))


@pytest.fixture
def store(settings: Settings, tmp_path: Path) -> Store:
    store = Store(settings.effective_database_url)
    store.migrate()
    parsed = parse_settings(
        "helpdesks:\n  - id: sales\n    mailboxes:\n"
        f"      - {{name: orders, protocol: maildir, path: {tmp_path}, fetch_every_minutes: 1}}\n"
    )
    ConfigStore(store, secret_box(settings)).apply(parsed)
    return store


def poll_once(
    settings: Settings, store: Store, source: FakeMailSource, registry: CollectorRegistry
) -> None:
    poller = Poller(
        settings,
        connection=connect("memory://"),
        store=store,
        clock=SystemClock(),
        open_mailbox=lambda _state, _s: source,
        metrics=StageMetrics(registry, ["poller"]),
    )
    try:
        poller.poll(the_mailbox(settings, store))
    finally:
        poller.close()


def the_mailbox(settings: Settings, store: Store) -> MailboxState:
    [state] = ConfigStore(store, secret_box(settings)).mailboxes()
    return state


def handled(registry: CollectorRegistry, outcome: str) -> float | None:
    labels = {"stage": "poller", "outcome": outcome}
    return registry.get_sample_value("mailroom_mails_handled_total", labels)


def test_a_round_counts_the_mails_it_handed_on_and_those_it_could_not_download(
    settings: Settings, store: Store
) -> None:
    source = OneTooLarge()
    source.deliver(MAIL % 1)
    source.too_large = source.deliver(MAIL % 2)
    source.deliver(MAIL % 3)
    registry = CollectorRegistry()

    poll_once(settings, store, source, registry)

    assert handled(registry, "fetched") == 2
    assert handled(registry, "dead_lettered") == 1
    assert registry.get_sample_value("mailroom_dead_letters_total", {"stage": "poller"}) == 1
    with store.transaction() as conn:
        [orders] = monitoring_figures(conn).mailboxes
    assert orders.last_success is not None and orders.consecutive_failures == 0


def test_a_failed_round_counts_no_mail_and_leaves_no_success_behind(
    settings: Settings, store: Store
) -> None:
    source = FakeMailSource()
    source.deliver(MAIL % 1)
    source.fail_with = InfraError("imap.example.com: connection refused")
    registry = CollectorRegistry()

    poll_once(settings, store, source, registry)

    assert handled(registry, "fetched") == 0
    with store.transaction() as conn:
        [orders] = monitoring_figures(conn).mailboxes
    assert (orders.helpdesk, orders.mailbox) == ("sales", "orders")
    assert orders.consecutive_failures == 1 and orders.last_success is None
