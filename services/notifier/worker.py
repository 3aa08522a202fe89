"""Wiring of the notifier: ``notify`` -> outbox, bell, SMTP."""

from __future__ import annotations

from kombu import Connection

from contracts import queues
from contracts.notify import Notify
from contracts.settings import Settings
from services.notifier.adapters import SmtpSender, SqlOutbox
from services.notifier.handler import notify
from services.runtime.clock import SystemClock
from services.runtime.config_store import ConfigStore
from services.runtime.ports import Clock
from services.runtime.stage import Stage, dispatcher, secret_box
from services.runtime.store import Store


def build(
    settings: Settings, *, connection: Connection, store: Store, clock: Clock | None = None
) -> Stage:
    clock = clock or SystemClock()
    config = ConfigStore(store, secret_box(settings))
    outbox = SqlOutbox(store)

    def handle(msg: Notify):  # type: ignore[no-untyped-def]
        outgoing = config.helpdesk(msg.helpdesk).outgoing
        own = frozenset(a.lower() for s in config.mailboxes() for a in s.settings.addresses)
        sender = SmtpSender(outgoing) if outgoing else None
        return notify(msg, outbox=outbox, sender=sender, own_addresses=own, now=clock.now())

    d = dispatcher("notifier", handle, settings=settings, connection=connection, store=store)
    return Stage("notifier", {queues.NOTIFY: d})
