"""Gauges read from the store at scrape time: mailbox health, the outbox, the dead-letter queue.

Any process may change these (a poller, the notifier, ``mailroom errors move-to-inbox`` run
by hand), so no process counts them: every scrape reads them where they are kept. A store
that cannot be read leaves them out of that scrape; the rest of ``/metrics`` is served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

MAILBOX_LABELS = ["helpdesk", "mailbox"]


@dataclass(frozen=True)
class MailboxFigures:
    helpdesk: str
    mailbox: str
    #: The end of the last poll round that succeeded; None before the first.
    last_success: datetime | None
    consecutive_failures: int
    #: Mails in the error folder (dead-lettered ones, for POP).
    error_folder_mails: int
    fetching: bool
    #: Fetching was stopped because the error folder reached its ``stop_after``.
    stopped_by_errors: bool


@dataclass(frozen=True)
class StoreFigures:
    mailboxes: list[MailboxFigures] = field(default_factory=list)
    #: Emails waiting to be sent (kept without a server, or waiting for their next attempt).
    outbox_pending: int = 0
    #: Emails given up: past the retry bounds, or refused for good.
    outbox_given_up: int = 0
    dead_letter_entries: int = 0


ReadFigures = Callable[[], StoreFigures]


class StoreGauges:
    """A collector for a registry; reads nothing until ``watch`` tells it how.

    A failed read is logged once, at WARNING, until a read works again.
    """

    def __init__(self) -> None:
        self._read: ReadFigures | None = None
        self._failing = False

    def watch(self, read: ReadFigures) -> None:
        """Read the figures with ``read`` from now on (once the store is open)."""
        self._read = read

    def describe(self) -> Iterator[Metric]:
        """The families without samples: registering reads nothing from the store."""
        return iter(_families(None))

    def collect(self) -> Iterator[Metric]:
        figures = self._figures()
        return iter(_families(figures) if figures is not None else [])

    def _figures(self) -> StoreFigures | None:
        if self._read is None:
            return None
        try:
            figures = self._read()
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail for the store
            if not self._failing:
                log.warning(
                    "metrics: the store cannot be read (%s); mailbox, outbox and dead-letter "
                    "gauges are left out until it can",
                    exc,
                )
            self._failing = True
            return None
        if self._failing:
            log.warning("metrics: the store can be read again")
        self._failing = False
        return figures


def _families(figures: StoreFigures | None) -> list[Metric]:
    def mailbox_gauge(name: str, text: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, text, labels=MAILBOX_LABELS)

    last_success = mailbox_gauge(
        "mailroom_mailbox_last_success_timestamp_seconds",
        "When a poll round of the mailbox last succeeded (Unix time); absent before the first.",
    )
    failures = mailbox_gauge(
        "mailroom_mailbox_consecutive_failures",
        "Poll rounds of the mailbox that failed in a row (reset when admins are alerted).",
    )
    error_folder = mailbox_gauge(
        "mailroom_mailbox_error_folder_mails",
        "Mails in the mailbox's error folder (dead-lettered mails, for POP).",
    )
    fetching = mailbox_gauge(
        "mailroom_mailbox_fetching", "1 while the mailbox is fetched, 0 while paused."
    )
    stopped = mailbox_gauge(
        "mailroom_mailbox_stopped_by_errors",
        "1 when fetching stopped because the error folder reached its stop_after.",
    )
    families: list[Metric] = [last_success, failures, error_folder, fetching, stopped]
    totals = [
        ("mailroom_outbox_pending", "Notification emails waiting to be sent."),
        ("mailroom_outbox_given_up", "Notification emails given up (not sent, never retried)."),
        ("mailroom_dead_letter_entries", "Entries in the dead-letter queue (`mailroom dlq list`)."),
    ]
    if figures is None:
        return families + [GaugeMetricFamily(name, text) for name, text in totals]
    for box in figures.mailboxes:
        labels = [box.helpdesk, box.mailbox]
        if box.last_success is not None:
            last_success.add_metric(labels, box.last_success.timestamp())
        failures.add_metric(labels, box.consecutive_failures)
        error_folder.add_metric(labels, box.error_folder_mails)
        fetching.add_metric(labels, int(box.fetching))
        stopped.add_metric(labels, int(box.stopped_by_errors))
    values = [figures.outbox_pending, figures.outbox_given_up, figures.dead_letter_entries]
    return families + [
        GaugeMetricFamily(name, text, value=value)
        for (name, text), value in zip(totals, values, strict=True)
    ]
