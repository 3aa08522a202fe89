"""One polling round on one mailbox: fetch, store, publish with confirms, then mark.

Hand-off order (DESIGN guarantee 1): blob and row committed -> published and confirmed ->
remembered as taken -> marked on the server. A crash anywhere leads to a re-fetch, which
every later stage ignores by ``mail_id``; never to a gap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from contracts.ids import content_hash
from contracts.mail import MailFetched
from services.poller.adapters import SqlFetchedLog
from services.poller.handler import FetchRound, fetch_new
from services.poller.sources.base import MailSource, NotMarked, SourceState
from services.runtime.bus import Publisher
from services.runtime.metrics import DEAD_LETTERED, FETCHED, NoMetrics
from services.runtime.ports import Clock, Metrics
from services.runtime.store import Store, put_blobs

log = logging.getLogger(__name__)

BATCH = 50


class BatchWrites:
    """The blobs and fetched rows of one batch, written in one transaction.

    Acts as the ``BlobStore`` and ``FetchedLog`` of ``fetch_new``; one transaction per batch
    instead of two per mail is most of the poller's speed.
    """

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._rows: list[tuple[MailFetched, datetime]] = []

    def put(self, data: bytes) -> str:
        sha = content_hash(data)
        self._blobs[sha] = bytes(data)  # a copy of a mutable buffer; bytes are not copied
        return sha

    def get(self, sha256: str) -> bytes:
        return self._blobs[sha256]

    def record(self, fetched: MailFetched, at: datetime) -> None:
        self._rows.append((fetched, at))

    def flush(self, store: Store) -> None:
        with store.transaction() as conn:
            put_blobs(conn, self._blobs)
            SqlFetchedLog.record_all_in(conn, self._rows)


@dataclass
class MailboxRound:
    mailbox: str
    helpdesk: str
    source: MailSource
    state: SourceState
    publisher: Publisher
    store: Store
    fetched: SqlFetchedLog
    clock: Clock
    #: Called after every batch: renews the mailbox's lease while a long round goes on.
    keep_alive: Callable[[], object] = lambda: None
    #: True once the process is stopping: the round ends after the batch in hand.
    stopping: Callable[[], bool] = lambda: False
    #: Mail ids handed off so far; filled as the round goes, so a failure keeps the count.
    handed_off: list[str] = field(default_factory=list)
    #: Counts the mails handed on (``fetched``) and those not downloaded (``dead_lettered``).
    metrics: Metrics = field(default_factory=NoMetrics)

    def run(self) -> list[str]:
        """Hand off every new mail, batch by batch; returns the mail ids handed off.

        Each mail is taken once per round: a mail the source lists again after its hand-off
        (its marking did not take) is left for the next round, so every round ends.
        """
        taken: set[str] = set()
        while True:
            batch = self._fetch(taken)
            refs = [m.source.ref for m in batch.fetched] + [
                d.source.ref for d in batch.skipped if d.source
            ]
            if not refs:
                return self.handed_off
            taken.update(refs)
            self._hand_off(batch)
            self.keep_alive()
            if self.stopping():
                return self.handed_off

    def _fetch(self, taken: set[str]) -> FetchRound:
        writes = BatchWrites()
        batch = fetch_new(
            self.source,
            mailbox=self.mailbox,
            helpdesk=self.helpdesk,
            blobs=writes,
            fetched=writes,
            now=self.clock.now(),
            limit=BATCH,
            exclude=taken,
        )
        writes.flush(self.store)
        return batch

    def _hand_off(self, batch: FetchRound) -> None:
        self.publisher.publish_all([*batch.fetched, *batch.skipped])
        # Counted once published: a mail not downloaded ends as a dead-letter entry.
        self.handed_off += [m.mail_id for m in [*batch.fetched, *batch.skipped]]
        self.metrics.handled("poller", FETCHED, len(batch.fetched))
        self.metrics.handled("poller", DEAD_LETTERED, len(batch.skipped))
        self.metrics.dead_lettered("poller", len(batch.skipped))
        refs = [m.source.ref for m in batch.fetched]
        self.state.mark_taken([(r, batch.message_ids.get(r)) for r in refs], "handed_off")
        # Not downloaded, so never marked (POP would delete it): only remembered, under this
        # reason even where the ref was taken before (a Maildir key copied back).
        self._remember([(d.source.ref, None) for d in batch.skipped if d.source], "skipped")
        for dead in batch.skipped:
            log.warning(
                "mailbox=%s mail %s not downloaded (%s): %s; it is not fetched again",
                self.mailbox,
                dead.source.ref if dead.source else "?",
                dead.error_class,
                dead.error,
            )
        try:
            self.source.mark_handed_off(refs)
        except NotMarked as exc:
            self._not_marked(exc.failures, batch.message_ids)
        if batch.fetched:
            self.fetched.mark_handed_off([m.mail_id for m in batch.fetched], self.clock.now())

    def _not_marked(self, failures: dict[str, str], message_ids: dict[str, str | None]) -> None:
        """A mail handed off but left unmarked is reported once and not fetched again: the
        store remembers it under a reason of its own."""
        for ref, why in failures.items():
            log.warning(
                "mailbox=%s mail %s was handed off but could not be marked: %s; "
                "it is left where it is and not fetched again",
                self.mailbox,
                ref,
                why,
            )
        self._remember([(r, message_ids.get(r)) for r in failures], "unmarked")

    def _remember(self, items: list[tuple[str, str | None]], reason: str) -> None:
        """Remember refs as taken for ``reason``, replacing an earlier reason."""
        if items:
            self.state.mark_taken(items, reason, replace=True)
