"""Wiring of the validator: ``mail.parsed`` -> checks -> ``mail.validated`` (+ ``notify``)."""

from __future__ import annotations

from kombu import Connection

from contracts import queues
from contracts.mail import MailParsed
from contracts.settings import Settings
from services.runtime.config_store import ConfigStore
from services.runtime.ports import Clock
from services.runtime.stage import Stage, dispatcher, secret_box
from services.runtime.store import SqlBlobStore, Store
from services.validator.adapters import LibmagicSniffer, SqlBlobHeads
from services.validator.handler import validate
from services.validator.policy import AttachmentPolicy, StripNotices


def build(
    settings: Settings, *, connection: Connection, store: Store, clock: Clock | None = None
) -> Stage:
    """The validator needs no clock; the parameter keeps every stage's ``build`` alike."""
    blobs = SqlBlobStore(store)
    heads = SqlBlobHeads(store)
    config = ConfigStore(store, secret_box(settings))
    sniff = LibmagicSniffer()

    def handle(msg: MailParsed):  # type: ignore[no-untyped-def]
        desk = config.helpdesk(msg.helpdesk)
        own = (a for mailbox in config.mailboxes() for a in mailbox.settings.addresses)
        return validate(
            msg,
            policy=AttachmentPolicy.from_settings(desk.attachments),
            notices=StripNotices.from_settings(desk.notifications, own_addresses=own),
            blobs=blobs,
            sniff=sniff,
            read_head=heads,
        )

    d = dispatcher("validator", handle, settings=settings, connection=connection, store=store)
    return Stage("validator", {queues.MAIL_PARSED: d})
