"""Wiring of the router: ``mail.validated`` -> a request or conversation in the store."""

from __future__ import annotations

from collections.abc import Sequence

from kombu import Connection

from contracts import queues
from contracts.mail import MailValidated
from contracts.settings import Settings
from services.router.adapters import SqlRequestBook
from services.router.handler import route
from services.router.intake import IntakePolicy
from services.runtime.addresses import AddressSet
from services.runtime.cached_settings import CachedSettings, ConfiguredMailbox
from services.runtime.clock import SystemClock
from services.runtime.ports import Clock, Metrics
from services.runtime.stage import Stage, batched
from services.runtime.store import Store


def build(
    settings: Settings,
    *,
    connection: Connection,
    store: Store,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
) -> Stage:
    clock = clock or SystemClock()
    # No box for secrets: the router never logs in to a mailbox.
    configured = CachedSettings(store)

    def handle(msg: MailValidated):  # type: ignore[no-untyped-def]
        boxes = configured.current().mailboxes()
        intake = intake_of(boxes, msg.source.mailbox)
        own = own_addresses(boxes, msg.helpdesk)
        with store.transaction() as conn:
            book = SqlRequestBook(conn)
            return route(msg, book=book, intake=intake, own_addresses=own, now=clock.now())

    d = batched(
        "router",
        handle,
        settings=settings,
        connection=connection,
        store=store,
        metrics=metrics,
    )
    return Stage("router", {queues.MAIL_VALIDATED: d})


def intake_of(boxes: Sequence[ConfiguredMailbox], mailbox: str) -> IntakePolicy:
    """The new-request rules of ``mailbox``."""
    found = next((b for b in boxes if b.settings.name == mailbox), None)
    if found is None:
        return IntakePolicy()  # mailbox removed since the fetch: accept rather than lose mail
    rules = found.settings.new_requests
    return IntakePolicy(enabled=rules.enabled, allow=tuple(rules.allow))


def own_addresses(boxes: Sequence[ConfiguredMailbox], helpdesk: str) -> AddressSet:
    """Every address of every mailbox of ``helpdesk``."""
    return AddressSet.of(a for b in boxes if b.helpdesk == helpdesk for a in b.settings.addresses)
