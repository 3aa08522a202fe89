"""Messages that carry one mail through the pipeline.

Bodies and attachments never travel in a message: they are blobs in the store, named
by the SHA-256 of their bytes (claim check), so a message stays small whatever the mail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from contracts.base import Contract, Envelope


class SourceRef(Contract):
    """Where a mail came from: the mailbox name and the protocol's own identity of the mail."""

    mailbox: str
    ref: str


class Address(Contract):
    name: str = ""
    email: str


class Attachment(Contract):
    """One attachment; its bytes are the blob ``sha256``."""

    filename: str
    content_type: str
    size: int = Field(ge=0)
    sha256: str
    inline: bool = False
    content_id: str | None = None


class StrippedAttachment(Contract):
    """An attachment the validator dropped, with a reason code and a readable message."""

    filename: str
    reason: str
    message: str
    content_type: str = ""
    size: int = 0


class DeliveryStatus(Contract):
    """One recipient of a delivery status notification (RFC 3464 per-recipient fields)."""

    address: str
    action: str = ""  # failed | delayed | delivered | relayed | expanded
    status: str = ""  # e.g. "5.1.1"
    diagnostic: str = ""  # e.g. "smtp; 550 5.1.1 User unknown"


class DeliveryReport(Contract):
    """A delivery status notification (``multipart/report; report-type=delivery-status``).

    ``original_message_id`` is the Message-ID of the mail the report is about, read from its
    returned copy or headers; ``envelope_id`` is the report's Original-Envelope-Id.
    """

    original_message_id: str | None = None
    envelope_id: str | None = None
    recipients: list[DeliveryStatus] = []


class ParsedMail(Contract):
    """What the parser found in a mail. ``body_text_blob``/``body_html_blob`` are claim checks."""

    message_id: str
    message_id_synthetic: bool = False
    from_: Address | None = Field(default=None, alias="from")
    #: The Sender header: who sent the mail on behalf of From.
    sender: Address | None = None
    reply_to: list[Address] = []
    to: list[Address] = []
    cc: list[Address] = []
    subject: str = ""
    date: datetime | None = None
    in_reply_to: list[str] = []
    references: list[str] = []
    auto_reply: bool = False
    #: Sent to or through a mailing list (``Precedence: list``, ``List-Id``): a person wrote
    #: it, so it may open a request, but nothing is ever answered to it automatically.
    mailing_list: bool = False
    #: ``Auto-Submitted: auto-generated`` together with an ``X-Mailroom-*`` header: one of
    #: Mailroom's own notifications, come back into a mailbox.
    sent_by_mailroom: bool = False
    #: Set when the mail is a delivery status notification (a bounce or a delay warning).
    delivery_report: DeliveryReport | None = None
    body_text_blob: str | None = None
    body_html_blob: str | None = None
    attachments: list[Attachment] = []
    defects: list[str] = []

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class MailFetched(Envelope):
    """Event: the poller took a mail from a mailbox and stored its raw bytes."""

    kind: Literal["mail.fetched"] = "mail.fetched"
    helpdesk: str
    source: SourceRef
    raw_blob: str
    size: int = Field(ge=0)


class MailParsed(Envelope):
    """Event: the parser turned the raw mail into fields and attachment blobs."""

    kind: Literal["mail.parsed"] = "mail.parsed"
    helpdesk: str
    source: SourceRef
    raw_blob: str
    mail: ParsedMail


class MailValidated(Envelope):
    """Event: the validator kept ``mail.attachments`` and dropped ``stripped``."""

    kind: Literal["mail.validated"] = "mail.validated"
    helpdesk: str
    source: SourceRef
    raw_blob: str
    mail: ParsedMail
    stripped: list[StrippedAttachment] = []
