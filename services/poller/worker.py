"""Wiring of the poller: the schedule, leases, and what ``mail.dead`` brings back.

The hand-off of one round is in ``rounds.py``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import uuid4

from kombu import Connection
from sqlalchemy import Row

from contracts import queues
from contracts.settings import MailboxSettings, Settings
from services.oauth.consent import PAUSED_FOR_REAUTHORIZATION
from services.oauth.health import lapsing
from services.oauth.token_store import SqlTokenStore
from services.poller.adapters import SqlFetchedLog, SqlLeases, SqlSourceState
from services.poller.context import OpenMailbox, PollerContext
from services.poller.dead_letters import DeadLetterHandler
from services.poller.idle import RENEW_EVERY, IdleWatcher
from services.poller.notices import (
    connectivity_alert,
    connectivity_recovered,
    reauthorization_needed,
    refresh_token_lapsing,
)
from services.poller.opener import mailbox_opener
from services.poller.rounds import MailboxRound
from services.poller.sources.base import Throttled
from services.poller.sources.imap_session import ImapSession
from services.poller.sources.tokens import ReauthorizeNeeded
from services.runtime.bus import Delivery, Publisher, is_embedded
from services.runtime.clock import SystemClock
from services.runtime.config_store import MailboxState
from services.runtime.dispatch import dead_letter_for
from services.runtime.errors import ConfigError, InfraError, MailroomError, Outage
from services.runtime.metrics import RECORDED, REQUEUED, NoMetrics, measured
from services.runtime.open_sockets import OpenSockets
from services.runtime.ports import Clock, Metrics
from services.runtime.stage import Polled, Stage
from services.runtime.store import Store
from services.runtime.unfinished import mail_fetched_of, unfinished_mails

log = logging.getLogger(__name__)

#: How often the schedule looks for refresh tokens about to lapse.
LAPSE_CHECK_EVERY = timedelta(hours=1)


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
        open_mailbox: OpenMailbox | None = None,
        max_parallel: int = 4,
        metrics: Metrics | None = None,
        idle_renewal: timedelta = RENEW_EVERY,
    ) -> None:
        """``idle_renewal``: how often an IDLE is left and entered again (``idle: true``)."""
        self._ctx = PollerContext(settings, store, clock, connection)
        #: The rounds' connections to mail servers, which a stop cuts.
        self._sockets = OpenSockets()
        self._stopping = threading.Event()
        opener = mailbox_opener(
            store, self._ctx.box, clock, sockets=self._sockets, sleep=self._wait
        )
        self._open_round: OpenMailbox = opener
        self._tokens_for = opener.tokens_for
        self._metrics = metrics or NoMetrics()
        if open_mailbox is not None:
            self._ctx.open = self._open_round = open_mailbox
        self._fetched = SqlFetchedLog(store)
        self._publisher = Publisher(connection)
        self.handle_dead = DeadLetterHandler(self._ctx, self._publisher)
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
        self._leases = SqlLeases(store, holder=holder)
        self._pool = ThreadPoolExecutor(max_parallel, thread_name_prefix="poll")
        self._running: dict[str, Future[list[str]]] = {}
        #: Mailboxes whose lease another poller held, and the sentence that says so.
        self.held_elsewhere: dict[str, str] = {}
        self._tokens = SqlTokenStore(store, self._ctx.box)
        self._lapses_checked_at: datetime | None = None
        #: ``idle: true`` mailboxes: their IDLE watchers, and those woken by new mail.
        self._idle_renewal = idle_renewal
        self._watchers: dict[str, IdleWatcher] = {}
        self._woken: set[str] = set()
        self._states: dict[str, MailboxState] = {}
        #: ``poll_due`` (the tick) and ``wake`` (a watcher's thread) both start rounds.
        self._schedule = threading.Lock()

    # -- polling ---------------------------------------------------------------------------

    def poll_due(self) -> None:
        """Start a round on every enabled mailbox whose interval has passed and that is idle."""
        self._running = {n: f for n, f in self._running.items() if not f.done()}
        now = self._ctx.clock.now()
        if self._lapses_checked_at is None or now - self._lapses_checked_at >= LAPSE_CHECK_EVERY:
            self._lapses_checked_at = now
            self.warn_of_lapsing_tokens()
        states = self._ctx.config.mailboxes()
        self._watch(states)
        with self._schedule:
            self._states = {s.settings.name: s for s in states}
            for state in states:
                name = state.settings.name
                due = name in self._woken or _is_due(state, now)
                if state.enabled and name not in self._running and due:
                    self._start_round(state)

    def wake(self, name: str) -> None:
        """New mail in ``name`` (its IDLE said so): a round starts now, or right after the
        one under way (which may have listed the mailbox before the mail came)."""
        with self._schedule:
            self._woken.add(name)
            state = self._states.get(name)
            running = self._running.get(name)
            if self._stopping.is_set() or state is None or not state.enabled:
                return
            if running is None or running.done():
                self._start_round(state)

    def _start_round(self, state: MailboxState) -> None:
        """Under ``_schedule``."""
        name = state.settings.name
        self._woken.discard(name)
        self._running[name] = self._pool.submit(self.poll, state)

    def _watch(self, states: list[MailboxState]) -> None:
        """An IDLE watcher for each enabled ``idle: true`` mailbox, on its current settings."""
        wanted = {
            s.settings.name: s.settings
            for s in states
            if s.enabled and s.settings.idle and s.settings.protocol in ("imap", "imaps")
        }
        for name, watcher in list(self._watchers.items()):
            if wanted.get(name) != watcher.box:
                watcher.stop_soon()
                del self._watchers[name]
        if self._stopping.is_set():
            return
        for name, box in wanted.items():
            if name not in self._watchers:
                watcher = IdleWatcher(
                    box,
                    wake=partial(self.wake, name),
                    open_session=self._idle_session,
                    renew_every=self._idle_renewal,
                )
                self._watchers[name] = watcher
                watcher.start()

    def _idle_session(self, box: MailboxSettings, sockets: OpenSockets) -> ImapSession:
        tokens = self._tokens_for(box) if box.auth == "oauth" else None
        return ImapSession(box, tokens, sockets=sockets)

    def poll_all(self) -> Polled:
        """Poll every enabled mailbox now and wait (``run --once``): the mail ids handed
        on, and the mailboxes another poller held."""
        self.held_elsewhere = {}
        self.warn_of_lapsing_tokens()
        futures = [
            self._pool.submit(self.poll, s) for s in self._ctx.config.mailboxes() if s.enabled
        ]
        mail_ids = [mid for f in futures for mid in f.result()]
        for name, note in self.held_elsewhere.items():  # asked for now, so worth a warning
            log.warning("mailbox=%s %s", name, note)
        return Polled(mail_ids, dict(self.held_elsewhere))

    def poll(self, state: MailboxState) -> list[str]:
        """One round on one mailbox. A failure skips the round and is counted, never raised;
        an outage of the store or broker skips it too, and is no fault of the mailbox."""
        name = state.settings.name
        try:
            if not self._leases.acquire(name, self._ctx.clock.now(), _lease_ttl(state)):
                self._held_elsewhere(name)
                return []
            # Both lines fall within the lease: with -v, the log shows who polled when.
            log.info("mailbox=%s lease taken by %s; round starts", name, self._leases.holder)
            handed_off: list[str] = []
            try:
                handed_off = self._round(state)
                return handed_off
            finally:
                log.info("mailbox=%s round over, %s mails handed off", name, len(handed_off))
                self._leases.release(name)
        except Outage as exc:
            _skipped_for_outage(name, exc)
            return []

    def _held_elsewhere(self, name: str) -> None:
        held = self._leases.held(name)
        who, until = held if held else ("unknown", None)
        when = f" until {until:%Y-%m-%d %H:%M:%S} UTC" if until else ""
        note = f"held by another poller ({who}){when}; skipped"
        # Routine when several pollers share the mailboxes: the schedule keeps it quiet.
        log.info("mailbox=%s %s", name, note)
        self.held_elsewhere[name] = note

    def _round(self, state: MailboxState) -> list[str]:
        """Returns what was handed off, also when the round failed half-way (it stays so)."""
        name = state.settings.name
        handed_off: list[str] = []
        try:
            self._hand_off_new_mail(state, handed_off)
        except Outage as exc:  # what was handed off stays so; the rest comes next round
            _skipped_for_outage(name, exc)
            return handed_off
        except Throttled as exc:  # the server asked to slow down: no fault of the mailbox
            log.info("mailbox=%s round ended early, throttled by the server: %s", name, exc)
            return handed_off
        except ReauthorizeNeeded as exc:
            self._needs_reauthorization(state, str(exc))
            return handed_off
        except (ConfigError, InfraError) as exc:
            if self._stopping.is_set():  # the stop cut the connection: no fault of the mailbox
                log.info("mailbox=%s round cut short by the stop: %s", name, exc)
            else:
                self._failed(state, str(exc))
            return handed_off
        except Exception as exc:  # noqa: BLE001 - one broken mailbox must not stop the others
            log.exception("mailbox=%s poll failed unexpectedly", name)
            self._failed(state, f"unexpected error: {exc!r}")
            return handed_off
        self._ctx.health.record_poll(name, self._ctx.clock.now(), None)
        if state.alerted_at is not None:
            self._ctx.tell(
                state, lambda people, at: connectivity_recovered(name, state.helpdesk, people, at)
            )
            self._ctx.health.set_alerted(name, None)
        return handed_off

    def _failed(self, state: MailboxState, error: str) -> None:
        """Count the failure; at the help desk's threshold alert admins and reps, and reset."""
        name = state.settings.name
        failures = self._ctx.health.record_poll(name, self._ctx.clock.now(), error)
        log.warning("mailbox=%s poll failed (%s in a row): %s", name, failures, error)
        rule = self._ctx.helpdesk(state).notifications.connectivity
        if rule.enabled and failures >= rule.consecutive_retry_threshold:
            self._ctx.tell(
                state,
                lambda people, at: connectivity_alert(
                    name, state.helpdesk, error, failures, people, at
                ),
            )
            self._ctx.health.reset_failures(name)
            self._ctx.health.set_alerted(name, self._ctx.clock.now())

    def _needs_reauthorization(self, state: MailboxState, error: str) -> None:
        """Only an admin can fix a refused grant: fetching is paused until they re-authorize
        (which resumes it), and they are told once; the failure counts toward the alert."""
        name = state.settings.name
        self._failed(state, error)
        self._ctx.health.pause(name, PAUSED_FOR_REAUTHORIZATION.format(name=name))
        self._ctx.tell(
            state,
            lambda people, at: reauthorization_needed(name, state.helpdesk, error, people, at),
        )

    def warn_of_lapsing_tokens(self) -> None:
        """Tell admins, once per date, of refresh tokens about to lapse (paused mailboxes
        included: theirs are the ones that go unused)."""
        try:
            states = {s.settings.name: s for s in self._ctx.config.mailboxes()}
            stored = {t.mailbox: t for t in self._tokens.all()}
            now = self._ctx.clock.now()
            boxes = [(s.settings, self._lapse_warning(s)) for s in states.values()]
            for box, lapse in lapsing(boxes, stored, now):
                state = states[box.name]
                self._ctx.tell(
                    state, partial(refresh_token_lapsing, box.name, state.helpdesk, lapse)
                )
                self._tokens.mark_lapse_warned(box.name, lapse)
        except MailroomError as exc:  # an outage too: the next check tries again
            log.warning("checking OAuth refresh tokens for lapses failed: %s", exc)

    def _lapse_warning(self, state: MailboxState) -> timedelta:
        days = self._ctx.helpdesk(state).notifications.token_lapse_warning_days
        return timedelta(days=days)

    def _hand_off_new_mail(self, state: MailboxState, handed_off: list[str]) -> None:
        name = state.settings.name
        clock = self._ctx.clock
        source_state = SqlSourceState(self._ctx.store, name, clock)
        source = self._open_round(state, source_state)
        # Each round publishes on a connection of its own: kombu connections are not shared
        # between threads.
        publisher = Publisher(self._ctx.connection)
        try:
            MailboxRound(
                mailbox=name,
                helpdesk=state.helpdesk,
                source=source,
                state=source_state,
                publisher=publisher,
                store=self._ctx.store,
                fetched=self._fetched,
                clock=self._ctx.clock,
                keep_alive=lambda: self._leases.acquire(
                    name, self._ctx.clock.now(), _lease_ttl(state)
                ),
                stopping=self._stopping.is_set,
                handed_off=handed_off,
                metrics=self._metrics,
            ).run()
        finally:
            source.close()
            publisher.close()

    def _wait(self, seconds: float) -> None:
        """A wait a server asked for (Retry-After), cut short by a stop."""
        self._stopping.wait(seconds)

    def stop_soon(self) -> None:
        """Rounds under way end now: after their batch in hand, or at once where they wait
        on a mail server (their connections are cut; what they fetched and did not hand
        off yet is fetched again). Returns at once; safe in a signal handler."""
        self._stopping.set()
        self._sockets.cut()
        for watcher in list(self._watchers.values()):
            watcher.stop_soon()

    def close(self) -> None:
        """End the rounds under way (``stop_soon``) and wait for them."""
        self.stop_soon()
        for watcher in list(self._watchers.values()):
            watcher.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- recovery on the in-process broker --------------------------------------------------

    def recover(self) -> int:
        """Re-publish fetched mails that have no outcome (the in-process broker lost them).

        A mail already published ``DELIVERY_LIMIT`` times is dead-lettered instead, as
        RabbitMQ's delivery limit would: it keeps stopping the process.
        """
        rows = unfinished_mails(self._ctx.store)
        for row in rows:
            self._republish(row)
        return len(rows)

    def _republish(self, row: Row[Any]) -> None:
        count = self._fetched.bump_publish_count(row.mail_id)
        fetched = mail_fetched_of(row)
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
        self._metrics.dead_lettered("pipeline")


def _skipped_for_outage(mailbox: str, exc: Outage) -> None:
    log.warning(
        "mailbox=%s round cut short: the %s cannot be reached (%s); not counted against the "
        "mailbox, the next round takes up the rest",
        mailbox,
        exc.what,
        exc,
    )


def _lease_ttl(state: MailboxState) -> timedelta:
    """Long enough for a slow batch, short enough that a dead holder's mailbox is soon free."""
    return timedelta(seconds=max(120.0, 10 * state.settings.timeout_seconds))


def _is_due(state: MailboxState, now: datetime) -> bool:
    last = state.last_polled_at
    return last is None or now - last >= timedelta(minutes=state.settings.fetch_every_minutes)


def build(
    settings: Settings,
    *,
    connection: Connection,
    store: Store,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
) -> Stage:
    metrics = metrics or NoMetrics()
    poller = Poller(
        settings, connection=connection, store=store, clock=clock or SystemClock(), metrics=metrics
    )
    record_dead = measured(
        "poller", poller.handle_dead, metrics, {"ack": RECORDED, "requeue": REQUEUED}
    )
    # The in-process broker forgets everything when the process stops; the store does not.
    on_start = [poller.recover] if is_embedded(settings.broker_url) else []
    return Stage(
        "poller",
        {queues.MAIL_DEAD: record_dead},
        tick=poller.poll_due,
        on_start=on_start,
        on_stop=[poller.close],
        stop_soon=[poller.stop_soon],
        poll_all=poller.poll_all,
    )
