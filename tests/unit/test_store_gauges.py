"""Gauges read from the store at each scrape, and /metrics when the store cannot be read."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from services.runtime.errors import StoreOutage
from services.runtime.health import Health, HealthServer
from services.runtime.metrics import StageMetrics
from services.runtime.store_gauges import MailboxFigures, StoreFigures, StoreGauges

POLLED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def figures() -> StoreFigures:
    return StoreFigures(
        mailboxes=[
            MailboxFigures("sales", "orders", POLLED, 0, 2, True, False),
            MailboxFigures("support", "inbox", None, 4, 50, False, True),
        ],
        outbox_pending=3,
        outbox_given_up=1,
        dead_letter_entries=7,
    )


class Store:
    """Figures as a store would give them, or an outage while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.reads = 0

    def read(self) -> StoreFigures:
        self.reads += 1
        if self.down:
            raise StoreOutage("database 127.0.0.1:5432 cannot be reached: connection refused")
        return figures()


@pytest.fixture
def served() -> Iterator[tuple[Store, StoreGauges, int, CollectorRegistry]]:
    registry = CollectorRegistry()
    StageMetrics(registry, ["parser"]).handled("parser", "handled", 5)
    gauges = StoreGauges()
    registry.register(gauges)
    server = HealthServer(Health(), "127.0.0.1", 0, registry).start()
    try:
        yield Store(), gauges, server.port, registry
    finally:
        server.close()


def scrape(port: int) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert answer.status == 200
        kind = answer.headers["Content-Type"]
        text = answer.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return kind, samples


def box(helpdesk: str, mailbox: str) -> tuple[tuple[str, str], ...]:
    return (("helpdesk", helpdesk), ("mailbox", mailbox))


def test_metrics_are_served_in_the_prometheus_text_format(served):
    store, gauges, port, _ = served
    gauges.watch(store.read)

    kind, samples = scrape(port)

    assert kind.startswith("text/plain; version=0.0.4")
    key = ("mailroom_mails_handled_total", (("outcome", "handled"), ("stage", "parser")))
    assert samples[key] == 5


def test_every_mailbox_shows_its_health_as_the_store_has_it(served):
    store, gauges, port, _ = served
    gauges.watch(store.read)

    _, samples = scrape(port)

    orders, inbox = box("sales", "orders"), box("support", "inbox")
    assert samples[("mailroom_mailbox_last_success_timestamp_seconds", orders)] == (
        POLLED.timestamp()
    )
    assert samples[("mailroom_mailbox_consecutive_failures", inbox)] == 4
    assert samples[("mailroom_mailbox_error_folder_mails", inbox)] == 50
    assert samples[("mailroom_mailbox_fetching", orders)] == 1
    assert samples[("mailroom_mailbox_fetching", inbox)] == 0
    assert samples[("mailroom_mailbox_stopped_by_errors", inbox)] == 1
    assert samples[("mailroom_mailbox_stopped_by_errors", orders)] == 0
    # never polled with success: no timestamp at all, rather than one from 1970
    assert ("mailroom_mailbox_last_success_timestamp_seconds", inbox) not in samples


def test_the_outbox_and_the_dead_letter_queue_are_shown_as_the_store_has_them(served):
    store, gauges, port, _ = served
    gauges.watch(store.read)

    _, samples = scrape(port)

    assert samples[("mailroom_outbox_pending", ())] == 3
    assert samples[("mailroom_outbox_given_up", ())] == 1
    assert samples[("mailroom_dead_letter_entries", ())] == 7


def test_each_scrape_reads_the_store_anew(served):
    store, gauges, port, _ = served
    gauges.watch(store.read)

    scrape(port)
    scrape(port)

    assert store.reads == 2


def test_a_store_that_cannot_be_read_leaves_its_gauges_out_and_the_rest_is_served(
    served, caplog: pytest.LogCaptureFixture
):
    store, gauges, port, _ = served
    gauges.watch(store.read)
    store.down = True

    with caplog.at_level(logging.WARNING, logger="services.runtime.store_gauges"):
        _, first = scrape(port)
        _, second = scrape(port)

    assert ("mailroom_dead_letter_entries", ()) not in first
    key = ("mailroom_mails_handled_total", (("outcome", "handled"), ("stage", "parser")))
    assert first[key] == second[key] == 5
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said  # once, not at every scrape
    assert "the store cannot be read" in said[0] and "connection refused" in said[0]


def test_the_gauges_come_back_with_the_store_and_a_later_outage_is_told_again(
    served, caplog: pytest.LogCaptureFixture
):
    store, gauges, port, _ = served
    gauges.watch(store.read)

    with caplog.at_level(logging.WARNING, logger="services.runtime.store_gauges"):
        store.down = True
        scrape(port)
        store.down = False
        _, back = scrape(port)
        store.down = True
        scrape(port)

    assert back[("mailroom_dead_letter_entries", ())] == 7
    said = [r.getMessage() for r in caplog.records]
    assert [("cannot be read" in s, "read again" in s) for s in said] == [
        (True, False),
        (False, True),
        (True, False),
    ]


def test_before_the_store_is_open_only_the_counters_are_served(served):
    store, _, port, _ = served

    _, samples = scrape(port)

    assert store.reads == 0
    assert not [name for name, _ in samples if name.startswith("mailroom_mailbox_")]
    assert ("mailroom_handling_seconds_count", (("stage", "parser"),)) in samples


def test_registering_the_gauges_reads_nothing_from_the_store():
    store = Store()
    gauges = StoreGauges()
    gauges.watch(store.read)

    CollectorRegistry().register(gauges)

    assert store.reads == 0
