"""Command to tell people something: by email or as a bell notification."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from contracts.base import Envelope

Channel = Literal["email", "bell"]


class Notify(Envelope):
    """Command: send one notification.

    ``key`` makes it idempotent: the notifier keeps one notification per key, so a redelivered
    command never mails anyone twice.
    """

    kind: Literal["notify"] = "notify"
    helpdesk: str
    key: str = Field(min_length=1)
    topic: str  # attachment_stripped | mail_error | ...
    channel: Channel
    to: list[str] = Field(min_length=1)
    subject: str
    body: str
    in_reply_to: str | None = None
