"""The poller's logic: take new mail from a source, and record mail that failed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from contracts.dead import DeadLetter
from contracts.ids import mail_id
from contracts.mail import MailFetched, SourceRef
from contracts.notify import Notify
from services.poller.sources.base import MailSource
from services.runtime.ports import BlobStore


class FetchedLog(Protocol):
    """What the poller remembers of every mail it took."""

    def record(self, fetched: MailFetched, at: datetime) -> None:
        """Remember a fetched mail (idempotent: a re-fetch updates nothing but the count)."""
        ...


class DeadLetterLog(Protocol):
    def has_final_outcome(self, mail_id: str) -> bool:
        """True when the mail already became a request, conversation, duplicate or rejection."""
        ...

    def record(self, dead: DeadLetter, at: datetime) -> bool:
        """Keep one entry per mail; True when this call created it."""
        ...


@dataclass(frozen=True)
class ErrorNotices:
    """Whom to tell about a mail that went to the error folder."""

    enabled: bool
    support_reps: tuple[str, ...]


def fetch_new(
    source: MailSource,
    *,
    mailbox: str,
    helpdesk: str,
    blobs: BlobStore,
    fetched: FetchedLog,
    now: datetime,
    limit: int,
) -> list[MailFetched]:
    """Store up to ``limit`` new mails as blobs and remember them; nothing is marked yet.

    The caller publishes the returned messages with confirms and only then marks the mails
    handed off, so a crash in between leads to a re-fetch, never to a gap.
    """
    out = []
    for ref in source.list_new(limit):
        raw = source.fetch_raw(ref)
        message = MailFetched(
            mail_id=mail_id(mailbox, ref),
            helpdesk=helpdesk,
            source=SourceRef(mailbox=mailbox, ref=ref),
            raw_blob=blobs.put(raw),
            size=len(raw),
            occurred_at=now,
        )
        fetched.record(message, now)
        out.append(message)
    return out


@dataclass(frozen=True)
class DeadLetterKept:
    """Whether the mail is an error (to be moved to the error folder), and whom to tell."""

    kept: bool
    notices: list[Notify]


def record_dead_letter(
    msg: DeadLetter, *, dead: DeadLetterLog, notices: ErrorNotices, now: datetime
) -> DeadLetterKept:
    """Keep the dead-letter entry of a failed mail and tell the support reps.

    A mail that already reached a final outcome (its worker died after committing, and the
    broker gave up on the ack) is not an error: nothing is recorded and it stays where it is.
    """
    if dead.has_final_outcome(msg.mail_id):
        return DeadLetterKept(kept=False, notices=[])
    dead.record(msg, now)
    if not (notices.enabled and notices.support_reps and msg.helpdesk):
        return DeadLetterKept(kept=True, notices=[])
    return DeadLetterKept(True, _error_notices(msg, msg.helpdesk, list(notices.support_reps)))


def _error_notices(msg: DeadLetter, helpdesk: str, reps: list[str]) -> list[Notify]:
    where = (
        f"mailbox {msg.source.mailbox}, mail {msg.source.ref}" if msg.source else "unknown mailbox"
    )
    subject = f"Mail could not be processed ({where})"
    body = (
        f"A mail could not be turned into a request and was moved to the error folder.\n\n"
        f"Where: {where}\nStage: {msg.stage}\nError: {msg.error_class}: {msg.error}\n"
        f"Attempts: {msg.attempts}\n\nSee `mailroom dlq list` and `mailroom errors download`."
    )
    return [
        Notify(
            mail_id=msg.mail_id,
            helpdesk=helpdesk,
            key=f"{msg.mail_id}:mail_error:{channel}",
            topic="mail_error",
            channel=channel,
            to=reps,
            subject=subject,
            body=body,
        )
        for channel in ("bell", "email")
    ]
