"""Wiring of the parser: ``mail.fetched`` -> parse -> ``mail.parsed``."""

from __future__ import annotations

from kombu import Connection

from contracts import queues
from contracts.mail import MailFetched
from contracts.settings import Settings
from services.parser.handler import parse
from services.parser.limits import ParserLimits
from services.runtime.ports import Clock, Metrics
from services.runtime.stage import Stage, batched
from services.runtime.store import BlobsInTransaction, Store


def parser_limits(settings: Settings) -> ParserLimits:
    """The ``MAILROOM_MAX_*`` parser settings as the value object the handler takes."""
    return ParserLimits(
        max_depth=settings.max_mime_depth,
        max_parts=settings.max_mime_parts,
        max_header_kb=settings.max_header_kb,
        max_decoded_mb=settings.max_decoded_mb,
    )


def build(
    settings: Settings,
    *,
    connection: Connection,
    store: Store,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
) -> Stage:
    """The parser needs no clock; the parameter keeps every stage's ``build`` alike."""
    limits = parser_limits(settings)

    def handle(msg: MailFetched):  # type: ignore[no-untyped-def]
        # The mail's bodies and attachments are committed together, before it is published.
        with store.transaction() as conn:
            return parse(msg, blobs=BlobsInTransaction(conn), limits=limits)

    d = batched(
        "parser",
        handle,
        settings=settings,
        connection=connection,
        store=store,
        metrics=metrics,
    )
    return Stage("parser", {queues.MAIL_FETCHED: d})
