"""The envelope every queue message carries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


def new_message_id() -> str:
    """A fresh id for one delivery of one message."""
    return uuid.uuid4().hex


class Contract(BaseModel):
    """Base of every contract model: immutable and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Envelope(Contract):
    """Fields shared by every queue message.

    ``message_id`` identifies this delivery; ``mail_id`` is the deterministic id of the mail
    (see ``contracts.ids.mail_id``) on which every stage is idempotent.
    """

    schema_version: int = SCHEMA_VERSION
    message_id: str = Field(default_factory=new_message_id)
    mail_id: str = Field(min_length=1)
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
