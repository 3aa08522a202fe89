"""A mail as it is kept on its request (``requests list --json`` shows it)."""

from __future__ import annotations

from typing import Any

from contracts.mail import MailValidated
from services.router.addresses import without
from services.runtime.addresses import AddressSet


def mail_record(
    msg: MailValidated, *, own_addresses: AddressSet, note: str | None = None
) -> dict[str, Any]:
    """The mail's fields; bodies stay blobs, named by hash.

    The help desk's own addresses (every alias of every mailbox, ``own_addresses``) are left
    out of To and Cc: they are where the mail arrived, not people to copy on answers.
    ``kind`` is ``"bounce"`` for a delivery report kept as a ``note``.
    """
    mail = msg.mail.model_copy(
        update={
            "to": without(msg.mail.to, own_addresses),
            "cc": without(msg.mail.cc, own_addresses),
        }
    )
    data = mail.model_dump(mode="json", by_alias=True)
    data["source"] = msg.source.model_dump(mode="json")
    data["stripped"] = [s.model_dump(mode="json") for s in msg.stripped]
    data["kind"] = "bounce" if note is not None else "mail"
    data["note"] = note
    return data
