"""Wiring of the validator: ``mail.parsed`` -> checks -> ``mail.validated`` (+ ``notify``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kombu import Connection

from contracts import queues
from contracts.mail import MailParsed, MailValidated
from contracts.notify import Notify
from contracts.settings import HelpdeskSettings, Settings
from services.runtime.cached_settings import CachedSettings, ConfiguredMailbox
from services.runtime.ports import BlobStore, Clock, Metrics
from services.runtime.stage import Stage, batched
from services.runtime.store import SqlBlobStore, Store
from services.validator.adapters import LibmagicSniffer, SqlBlobHeads
from services.validator.handler import HeadReader, validate
from services.validator.policy import AttachmentPolicy, StripNotices


def build(
    settings: Settings,
    *,
    connection: Connection,
    store: Store,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
) -> Stage:
    """The validator needs no clock; the parameter keeps every stage's ``build`` alike."""
    blobs = SqlBlobStore(store)
    heads = SqlBlobHeads(store)
    # No box for secrets: the validator never logs in to a mailbox.
    configured = CachedSettings(store)
    sniff = LibmagicSniffer()

    def handle(msg: MailParsed):  # type: ignore[no-untyped-def]
        current = configured.current()
        return validate_for(
            msg,
            current.helpdesk(msg.helpdesk),
            current.mailboxes(),
            blobs=blobs,
            sniff=sniff,
            read_head=heads,
        )

    d = batched(
        "validator",
        handle,
        settings=settings,
        connection=connection,
        store=store,
        metrics=metrics,
    )
    return Stage("validator", {queues.MAIL_PARSED: d})


def validate_for(
    msg: MailParsed,
    desk: HelpdeskSettings,
    boxes: Sequence[ConfiguredMailbox],
    *,
    blobs: BlobStore,
    sniff: Callable[[bytes], str],
    read_head: HeadReader | None = None,
) -> list[MailValidated | Notify]:
    """``validate`` with the help desk's attachment policy and notices; the help desk's own
    addresses are those of every mailbox in ``boxes``."""
    own = (a for mailbox in boxes for a in mailbox.settings.addresses)
    return validate(
        msg,
        policy=AttachmentPolicy.from_settings(desk.attachments),
        notices=StripNotices.from_settings(desk.notifications, own_addresses=own),
        blobs=blobs,
        sniff=sniff,
        read_head=read_head,
    )
