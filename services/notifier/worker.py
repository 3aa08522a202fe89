"""Wiring of the notifier: ``notify`` -> outbox, bell, SMTP; a timer for due retries."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from kombu import Connection

from contracts import queues
from contracts.notify import Notify
from contracts.settings import HelpdeskSettings, Settings
from services.notifier.adapters import SqlOutbox
from services.notifier.handler import Outgoing, notify
from services.notifier.message import message_domain
from services.notifier.rate_limit import RateLimit
from services.notifier.retries import RetryRounds
from services.notifier.schedule import RetryPolicy
from services.notifier.smtp import SmtpSender
from services.runtime.addresses import AddressSet
from services.runtime.cached_settings import CachedSettings
from services.runtime.clock import SystemClock
from services.runtime.errors import ConfigError, InfraError
from services.runtime.open_sockets import OpenSockets
from services.runtime.ports import Clock, Metrics
from services.runtime.stage import Stage, dispatcher, secret_box
from services.runtime.store import Store

log = logging.getLogger(__name__)

#: How often the worker's loop looks for due retries; the loop turns far more often.
RETRY_EVERY = timedelta(seconds=1)


def outgoing_for(desk: HelpdeskSettings, sockets: OpenSockets | None = None) -> Outgoing:
    """The help desk's sending rules; no sender when it has no outgoing server.
    ``sockets``: where the sender's connections are kept for a stop to cut."""
    cfg = desk.outgoing
    rate_limit = RateLimit.of(desk.notifications.rate_limit)
    if cfg is None:
        return Outgoing(rate_limit=rate_limit)
    return Outgoing(
        sender=SmtpSender(cfg, sockets=sockets),
        domain=message_domain(cfg.from_address),
        retry=RetryPolicy.of(cfg.retry),
        rate_limit=rate_limit,
    )


def build(
    settings: Settings,
    *,
    connection: Connection,
    store: Store,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
) -> Stage:
    clock = clock or SystemClock()
    # Only the outgoing server's password is opened: the notifier logs in there, never to a
    # mailbox.
    configured = CachedSettings(store, outgoing_secrets=secret_box(settings))
    outbox = SqlOutbox(store)
    # A stop cuts the connection of a send under way: the email is tried again later.
    sockets = OpenSockets()

    def handle(msg: Notify):  # type: ignore[no-untyped-def]
        current = configured.current()
        own = AddressSet.of(a for s in current.mailboxes() for a in s.settings.addresses)
        outgoing = outgoing_for(current.helpdesk(msg.helpdesk), sockets)
        return notify(msg, outbox=outbox, outgoing=outgoing, own_addresses=own, now=clock.now())

    def outgoing_of(helpdesk: str) -> Outgoing:
        try:
            return outgoing_for(configured.current().helpdesk(helpdesk), sockets)
        except ConfigError:  # the help desk was removed from the settings
            return Outgoing()

    rounds = RetryRounds(outbox=outbox, outgoing_of=outgoing_of, clock=clock)

    def retry() -> None:
        try:
            rounds.run()
        except InfraError as exc:  # the store is unreachable: the next round tries again
            log.warning("notification retries skipped: %s", exc)

    d = dispatcher(
        "notifier",
        handle,
        settings=settings,
        connection=connection,
        store=store,
        metrics=metrics,
    )
    return Stage(
        "notifier",
        {queues.NOTIFY: d},
        tick=every(RETRY_EVERY, retry, clock),
        catch_up=retry,
        stop_soon=[sockets.cut],
    )


def every(interval: timedelta, run: Callable[[], None], clock: Clock) -> Callable[[], None]:
    """``run``, skipped when it ran less than ``interval`` ago."""
    last: datetime | None = None

    def tick() -> None:
        nonlocal last
        now = clock.now()
        if last is None or now - last >= interval:
            last = now
            run()

    return tick
