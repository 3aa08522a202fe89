"""Retry rounds: send the emails whose next attempt is due, one claimed entry at a time.

Any number of notifier processes may run rounds at once: each entry is claimed in the store
before it is sent (``RetryOutbox.claim_next``), so no two of them send one entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from services.notifier.handler import SEND_LEASE, Outbox, Outgoing, PendingMail, deliver
from services.runtime.ports import Clock

log = logging.getLogger(__name__)

#: Emails one round sends at most; the rest wait for the next round, so that a round stays
#: short next to the consumers it shares a loop with.
ROUND_SIZE = 20

NO_SERVER = "the help desk has no outgoing server any more; the email stays in the outbox"


class RetryOutbox(Outbox, Protocol):
    def claim_next(
        self, now: datetime, lease_until: datetime, *, skip_helpdesks: frozenset[str]
    ) -> PendingMail | None:
        """Claim the email that has been due longest (see ``Outbox.claim``), leaving out
        ``skip_helpdesks``; None when nothing is due or another claimer was faster."""
        ...


class RetryRounds:
    """Each ``run()`` sends up to ``limit`` due emails and returns how many it attempted.

    A help desk whose server failed rests until its first retry delay has passed: its other
    due emails would only wait for the same outage (up to a timeout each), holding up the
    loop the rounds share with the consumers. They stay due and go out after the rest.
    """

    def __init__(
        self,
        *,
        outbox: RetryOutbox,
        outgoing_of: Callable[[str], Outgoing],
        clock: Clock,
        limit: int = ROUND_SIZE,
    ) -> None:
        self._outbox = outbox
        self._outgoing_of = outgoing_of
        self._clock = clock
        self._limit = limit
        self._resting: dict[str, datetime] = {}

    def run(self) -> int:
        attempted = 0
        # Each help desk's settings are read once per round, not once per email.
        outgoing: dict[str, Outgoing] = {}
        while attempted < self._limit:
            now = self._clock.now()
            resting = frozenset(d for d, until in self._resting.items() if until > now)
            pending = self._outbox.claim_next(now, now + SEND_LEASE, skip_helpdesks=resting)
            if pending is None:
                break
            attempted += 1
            if pending.helpdesk not in outgoing:
                outgoing[pending.helpdesk] = self._outgoing_of(pending.helpdesk)
            self._attempt(pending, outgoing[pending.helpdesk], now)
        if attempted:
            log.info("retry round: %s notification email(s) attempted", attempted)
        return attempted

    def _attempt(self, pending: PendingMail, outgoing: Outgoing, now: datetime) -> None:
        if outgoing.sender is None:
            self._outbox.mark_failed(pending.id, NO_SERVER, None)
            return
        sent = deliver(
            pending, outbox=self._outbox, sender=outgoing.sender, retry=outgoing.retry, now=now
        )
        if not sent:
            self._resting[pending.helpdesk] = now + outgoing.retry.first_delay
