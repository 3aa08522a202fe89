"""Wiring of the parser: ``mail.fetched`` -> parse -> ``mail.parsed``."""

from __future__ import annotations

from kombu import Connection

from contracts import queues
from contracts.mail import MailFetched
from contracts.settings import Settings
from services.parser.handler import parse
from services.runtime.ports import Clock
from services.runtime.stage import Stage, dispatcher
from services.runtime.store import SqlBlobStore, Store


def build(
    settings: Settings, *, connection: Connection, store: Store, clock: Clock | None = None
) -> Stage:
    """The parser needs no clock; the parameter keeps every stage's ``build`` alike."""
    blobs = SqlBlobStore(store)

    def handle(msg: MailFetched):  # type: ignore[no-untyped-def]
        return parse(msg, blobs=blobs)

    d = dispatcher("parser", handle, settings=settings, connection=connection, store=store)
    return Stage("parser", {queues.MAIL_FETCHED: d})
