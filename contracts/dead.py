"""Event: a mail could not be processed and goes to the dead-letter queue."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from contracts.base import Envelope
from contracts.mail import SourceRef


class DeadLetter(Envelope):
    """One failed mail: which stage gave up, why, and where the encrypted error log is.

    ``source`` and ``helpdesk`` are None only when even they could not be read from the
    failed message (a message that does not match its contract at all).
    """

    kind: Literal["mail.dead"] = "mail.dead"
    helpdesk: str | None = None
    source: SourceRef | None = None
    stage: str
    error_class: str
    error: str
    attempts: int = Field(ge=1)
    log_blob: str | None = None
    #: The queue the failed message came from.
    queue: str | None = None
    #: The failed message itself, encrypted, when the raw mail cannot rebuild it (a
    #: notification): ``dlq replay`` publishes it again to ``queue``.
    payload_blob: str | None = None
