"""One polling round on one mailbox: fetch, store, publish with confirms, then mark.

Hand-off order (DESIGN guarantee 1): blob and row committed -> published and confirmed ->
remembered as taken -> marked on the server. A crash anywhere leads to a re-fetch, which
every later stage ignores by ``mail_id``; never to a gap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from services.poller.adapters import SqlFetchedLog
from services.poller.handler import FetchRound, fetch_new
from services.poller.sources.base import MailSource, SourceState
from services.runtime.bus import Publisher
from services.runtime.ports import BlobStore, Clock

BATCH = 50


@dataclass
class MailboxRound:
    mailbox: str
    helpdesk: str
    source: MailSource
    state: SourceState
    publisher: Publisher
    blobs: BlobStore
    fetched: SqlFetchedLog
    clock: Clock
    #: Called after every batch: renews the mailbox's lease while a long round goes on.
    keep_alive: Callable[[], object] = lambda: None
    #: Mail ids handed off so far; filled as the round goes, so a failure keeps the count.
    handed_off: list[str] = field(default_factory=list)

    def run(self) -> list[str]:
        """Hand off every new mail, batch by batch; returns the mail ids handed off."""
        while True:
            batch = self._fetch()
            self._hand_off(batch)
            # A mail too big to download still counts: it ends as a dead-letter entry.
            self.handed_off += [m.mail_id for m in [*batch.fetched, *batch.skipped]]
            self.keep_alive()
            if len(batch.fetched) + len(batch.skipped) < BATCH:
                return self.handed_off

    def _fetch(self) -> FetchRound:
        return fetch_new(
            self.source,
            mailbox=self.mailbox,
            helpdesk=self.helpdesk,
            blobs=self.blobs,
            fetched=self.fetched,
            now=self.clock.now(),
            limit=BATCH,
        )

    def _hand_off(self, batch: FetchRound) -> None:
        self.publisher.publish_all([*batch.fetched, *batch.skipped])
        refs = [m.source.ref for m in batch.fetched]
        self.state.mark_taken([(r, batch.message_ids.get(r)) for r in refs], "handed_off")
        # Not downloaded, so never marked (POP would delete it): only remembered.
        self.state.mark_taken([(d.source.ref, None) for d in batch.skipped if d.source], "skipped")
        self.source.mark_handed_off(refs)
        if batch.fetched:
            self.fetched.mark_handed_off([m.mail_id for m in batch.fetched], self.clock.now())
