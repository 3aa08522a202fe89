"""Wiring of the poller: the schedule, leases, and what ``mail.dead`` brings back.

The hand-off of one round is in ``rounds.py``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from kombu import Connection
from sqlalchemy import Row
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from contracts import queues
from contracts.dead import DeadLetter
from contracts.mail import MailFetched, SourceRef
from contracts.settings import Settings
from services.poller.adapters import SqlDeadLetterLog, SqlFetchedLog, SqlLeases, SqlSourceState
from services.poller.dead import decode_dead
from services.poller.handler import DeadLetterKept, ErrorNotices, record_dead_letter
from services.poller.rounds import MailboxRound
from services.poller.sources import open_source
from services.poller.sources.base import MailSource, SourceState
from services.runtime.bus import Delivery, Publisher, is_embedded
from services.runtime.clock import SystemClock
from services.runtime.config_store import ConfigStore, MailboxState
from services.runtime.dispatch import ErrorLog, dead_letter_for
from services.runtime.errors import ConfigError, InfraError
from services.runtime.ports import Clock
from services.runtime.stage import Stage, secret_box
from services.runtime.store import SqlBlobStore, Store

log = logging.getLogger(__name__)


class Poller:
    """Polls mailboxes (concurrently, one poller per mailbox at a time) and handles dead letters.

    ``poll_due`` (the worker's tick) never waits for a round: each due mailbox runs on a
    bounded thread pool with its own broker connection, so a slow mailbox delays nobody.
    A lease in the store keeps other poller processes off a mailbox while a round runs.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        connection: Connection,
        store: Store,
        clock: Clock,
        open_mailbox: Callable[[MailboxState, SourceState], MailSource] | None = None,
        max_parallel: int = 4,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._blobs = SqlBlobStore(store)
        self._fetched = SqlFetchedLog(store)
        self._box = secret_box(settings)
        self._config = ConfigStore(store, self._box)
        self._connection = connection
        self._publisher = Publisher(connection)
        self._open = open_mailbox or (lambda s, state: open_source(s.settings, state))
        self._leases = SqlLeases(
            store, holder=f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
        )
        self._pool = ThreadPoolExecutor(max_parallel, thread_name_prefix="poll")
        self._running: dict[str, Future[list[str]]] = {}

    # -- polling ---------------------------------------------------------------------------

    def poll_due(self) -> None:
        """Start a round on every enabled mailbox whose interval has passed and that is idle."""
        self._running = {n: f for n, f in self._running.items() if not f.done()}
        now = self._clock.now()
        for state in self._config.mailboxes():
            name = state.settings.name
            if state.enabled and name not in self._running and _is_due(state, now):
                self._running[name] = self._pool.submit(self.poll, state)

    def poll_all(self) -> list[str]:
        """Poll every enabled mailbox now and wait (``run --once``); returns fetched mail ids."""
        futures = [self._pool.submit(self.poll, s) for s in self._config.mailboxes() if s.enabled]
        return [mid for f in futures for mid in f.result()]

    def poll(self, state: MailboxState) -> list[str]:
        """One round on one mailbox. A failure skips the round and is counted, never raised."""
        name = state.settings.name
        if not self._leases.acquire(name, self._clock.now(), _lease_ttl(state)):
            log.info("mailbox=%s is being polled by another poller; skipped", name)
            return []
        try:
            return self._round(state)
        finally:
            self._leases.release(name)

    def _round(self, state: MailboxState) -> list[str]:
        """Returns what was handed off, also when the round failed half-way (it stays so)."""
        name = state.settings.name
        handed_off: list[str] = []
        try:
            self._hand_off_new_mail(state, handed_off)
        except (ConfigError, InfraError) as exc:
            failures = self._config.record_poll(name, self._clock.now(), str(exc))
            log.warning("mailbox=%s poll failed (%s in a row): %s", name, failures, exc)
            return handed_off
        except Exception as exc:  # noqa: BLE001 - one broken mailbox must not stop the others
            log.exception("mailbox=%s poll failed unexpectedly", name)
            self._config.record_poll(name, self._clock.now(), f"unexpected error: {exc!r}")
            return handed_off
        self._config.record_poll(name, self._clock.now(), None)
        return handed_off

    def _hand_off_new_mail(self, state: MailboxState, handed_off: list[str]) -> None:
        name = state.settings.name
        source_state = SqlSourceState(self._store, name, self._clock)
        source = self._open(state, source_state)
        # Each round publishes on a connection of its own: kombu connections are not shared
        # between threads.
        publisher = Publisher(self._connection)
        try:
            MailboxRound(
                mailbox=name,
                helpdesk=state.helpdesk,
                source=source,
                state=source_state,
                publisher=publisher,
                store=self._store,
                fetched=self._fetched,
                clock=self._clock,
                keep_alive=lambda: self._leases.acquire(name, self._clock.now(), _lease_ttl(state)),
                handed_off=handed_off,
            ).run()
        finally:
            source.close()
            publisher.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- recovery on the in-process broker --------------------------------------------------

    def recover(self) -> int:
        """Re-publish fetched mails that have no outcome (the in-process broker lost them).

        A mail already published ``DELIVERY_LIMIT`` times is dead-lettered instead, as
        RabbitMQ's delivery limit would: it keeps stopping the process.
        """
        rows = self._fetched.unfinished()
        for row in rows:
            self._republish(row)
        return len(rows)

    def _republish(self, row: Row[Any]) -> None:
        count = self._fetched.bump_publish_count(row.mail_id)
        source = SourceRef(mailbox=row.mailbox, ref=row.ref)
        fetched = MailFetched(
            mail_id=row.mail_id,
            helpdesk=row.helpdesk_id,
            source=source,
            raw_blob=row.raw_sha256,
            size=row.size,
        )
        if count <= queues.DELIVERY_LIMIT:
            self._publisher.publish(fetched)
            return
        body = fetched.model_dump_json().encode()
        delivery = Delivery(queues.MAIL_FETCHED, body, {"x-delivery-count": count - 1})
        error = f"the process stopped {count - 1} times while this mail was in the pipeline"
        self._publisher.publish(
            dead_letter_for(
                "pipeline", delivery, fetched.model_dump(), error, None, "DeliveryLimitExceeded"
            )
        )

    # -- dead letters -----------------------------------------------------------------------

    def handle_dead(self, delivery: Delivery) -> str:
        """Record the entry, tell the reps, move the original to the error folder; then ack."""
        error_log = ErrorLog(self._blobs, self._box)
        try:
            dead = decode_dead(delivery, error_log)
            for attempt in _store_retries():
                with attempt:
                    outcome = self._record(dead)
            self._publisher.publish_all(outcome.notices)
        except InfraError as exc:
            log.error("dead letter not recorded, requeued: %s", exc)
            return "requeue"
        if outcome.kept:
            self._move_to_error_folder(dead)
        return "ack"

    def _record(self, dead: DeadLetter) -> DeadLetterKept:
        notices = ErrorNotices(enabled=False, support_reps=())
        if dead.helpdesk:
            notices = self._error_notices(dead)
        with self._store.transaction() as conn:
            return record_dead_letter(
                dead, dead=SqlDeadLetterLog(conn), notices=notices, now=self._clock.now()
            )

    def _error_notices(self, dead: DeadLetter) -> ErrorNotices:
        try:
            desk = self._config.helpdesk(dead.helpdesk or "")
            notify = (
                self._config.mailbox(dead.source.mailbox).settings.error_folder.notify
                if dead.source
                else False
            )
        except ConfigError:
            return ErrorNotices(enabled=False, support_reps=())
        return ErrorNotices(enabled=notify, support_reps=tuple(desk.notifications.support_reps))

    def _move_to_error_folder(self, dead: DeadLetter) -> None:
        if dead.source is None:
            return
        error = self._try_move(dead.source)
        with self._store.transaction() as conn:
            moved_at = None if error else self._clock.now()
            SqlDeadLetterLog(conn).mark_moved(dead.mail_id, moved_at, error)

    def _try_move(self, source: SourceRef) -> str | None:
        """Move one mail; returns why it was not moved, or None when it was."""
        try:
            state = self._config.mailbox(source.mailbox)
            if not state.settings.error_folder.enabled:
                return "the mailbox's error folder is disabled"
            box = self._open(state, SqlSourceState(self._store, source.mailbox, self._clock))
            try:
                if not box.supports_error_folder:
                    return f"protocol {state.settings.protocol} has no folders"
                box.move_to_error_folder([source.ref])
            finally:
                box.close()
        except (ConfigError, InfraError) as exc:
            log.warning(
                "mailbox=%s could not move %s to the error folder: %s",
                source.mailbox,
                source.ref,
                exc,
            )
            return str(exc)
        return None


def _store_retries() -> Retrying:
    return Retrying(
        retry=retry_if_exception_type(InfraError),
        stop=stop_after_attempt(3),
        wait=wait_exponential_jitter(multiplier=0.5, max=5),
        reraise=True,
    )


def _lease_ttl(state: MailboxState) -> timedelta:
    """Long enough for a slow batch, short enough that a dead holder's mailbox is soon free."""
    return timedelta(seconds=max(120.0, 10 * state.settings.timeout_seconds))


def _is_due(state: MailboxState, now: datetime) -> bool:
    last = state.last_polled_at
    return last is None or now - last >= timedelta(minutes=state.settings.fetch_every_minutes)


def build(
    settings: Settings, *, connection: Connection, store: Store, clock: Clock | None = None
) -> Stage:
    poller = Poller(settings, connection=connection, store=store, clock=clock or SystemClock())
    # The in-process broker forgets everything when the process stops; the store does not.
    on_start = [poller.recover] if is_embedded(settings.broker_url) else []
    return Stage(
        "poller",
        {queues.MAIL_DEAD: poller.handle_dead},
        tick=poller.poll_due,
        on_start=on_start,
        poll_all=poller.poll_all,
    )
