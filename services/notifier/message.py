"""A notification email as it goes out: fixed when the entry is kept, the same on every attempt.

The Message-ID derives from the notification's key, so a retry is the same mail to the
receiving side, and a reply or bounce that names it leads back to the notification (and so
to its ``mail_id``) through ``notifications.message_id``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

DEFAULT_DOMAIN = "mailroom.local"
DEFAULT_FROM = "mailroom@localhost"
#: Names the notification a mail carries, for tracing when a bounce drops the Message-ID.
KEY_HEADER = "X-Mailroom-Notification"

_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class OutgoingMail:
    key: str
    to: tuple[str, ...]
    subject: str
    body: str
    in_reply_to: str | None
    message_id: str
    #: When the notification was made; a retry keeps it, as a queued mail would.
    date: datetime


def message_domain(from_address: str | None) -> str:
    """The domain of ``from_address`` (``helpdesk@example.com`` -> ``example.com``), if usable."""
    _name, address = parseaddr(from_address or "")
    domain = address.rpartition("@")[2].strip().lower()
    return domain if "@" in address and _DOMAIN.match(domain) else DEFAULT_DOMAIN


def message_id_for(key: str, domain: str) -> str:
    """``<notify.HASH@domain>``: the same key always gives the same Message-ID."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<notify.{digest}@{domain}>"


def compose(mail: OutgoingMail, from_address: str | None) -> EmailMessage:
    """The MIME message; raises ``ValueError`` for text a mail header cannot carry."""
    message = EmailMessage()
    message["From"] = from_address or DEFAULT_FROM
    message["To"] = ", ".join(mail.to)
    message["Subject"] = _one_line(mail.subject)
    message["Date"] = format_datetime(mail.date)
    message["Message-ID"] = mail.message_id
    # Marks our mail as automatic, so well-behaved auto-responders do not answer it.
    message["Auto-Submitted"] = "auto-generated"
    # Exchange's auto-replies ignore Auto-Submitted but honour this.
    message["X-Auto-Response-Suppress"] = "All"
    message[KEY_HEADER] = mail.key
    if mail.in_reply_to:
        message["In-Reply-To"] = mail.in_reply_to
        message["References"] = mail.in_reply_to
    message.set_content(mail.body)
    return message


def _one_line(text: str) -> str:
    # A subject taken from a customer's mail may still hold a folded line break.
    return re.sub(r"\s*[\r\n]+\s*", " ", text).strip()
