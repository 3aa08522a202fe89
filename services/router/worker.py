"""Wiring of the router: ``mail.validated`` -> a request or conversation in the store."""

from __future__ import annotations

from kombu import Connection

from contracts import queues
from contracts.mail import MailValidated
from contracts.settings import Settings
from services.router.adapters import SqlRequestBook
from services.router.handler import IntakePolicy, route
from services.runtime.clock import SystemClock
from services.runtime.config_store import ConfigStore
from services.runtime.errors import ConfigError
from services.runtime.ports import Clock
from services.runtime.stage import Stage, dispatcher, secret_box
from services.runtime.store import Store


def build(
    settings: Settings, *, connection: Connection, store: Store, clock: Clock | None = None
) -> Stage:
    clock = clock or SystemClock()
    config = ConfigStore(store, secret_box(settings))

    def handle(msg: MailValidated):  # type: ignore[no-untyped-def]
        intake = _intake(config, msg.source.mailbox)
        with store.transaction() as conn:
            return route(msg, book=SqlRequestBook(conn), intake=intake, now=clock.now())

    d = dispatcher("router", handle, settings=settings, connection=connection, store=store)
    return Stage("router", {queues.MAIL_VALIDATED: d})


def _intake(config: ConfigStore, mailbox: str) -> IntakePolicy:
    try:
        rules = config.mailbox(mailbox).settings.new_requests
    except ConfigError:
        return IntakePolicy()  # mailbox removed since the fetch: accept rather than lose mail
    return IntakePolicy(enabled=rules.enabled, allow=tuple(rules.allow))
