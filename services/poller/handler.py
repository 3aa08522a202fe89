"""The poller's logic: take new mail from a source, and record mail that failed."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from contracts.dead import DeadLetter
from contracts.ids import mail_id
from contracts.mail import MailFetched, SourceRef
from contracts.notify import Notify
from services.poller.sources.base import Fetched, MailSource
from services.runtime.mail_text import message_id_of
from services.runtime.ports import BlobStore


class FetchedLog(Protocol):
    """What the poller remembers of every mail it took."""

    def record(self, fetched: MailFetched, at: datetime) -> None:
        """Remember a fetched mail (idempotent: a re-fetch updates nothing but the count)."""
        ...


class DeadLetterLog(Protocol):
    def claim(self, dead: DeadLetter, at: datetime) -> bool:
        """Claim the mail's one outcome for this entry and keep the entry, in one step.

        True when the mail's outcome is this dead letter (made now, or by an earlier
        delivery of it); False when the mail already has another outcome (a request, a
        conversation, a duplicate or a rejection): then nothing is recorded. Atomic against
        the router, which claims the same outcome row.
        """
        ...


@dataclass
class FetchRound:
    """What one batch of fetching produced."""

    fetched: list[MailFetched] = field(default_factory=list)
    #: Mails not downloaded, as dead letters of the poller stage.
    skipped: list[DeadLetter] = field(default_factory=list)
    #: Message-ID of each fetched mail by ref (None when it has none).
    message_ids: dict[str, str | None] = field(default_factory=dict)
    #: Bytes downloaded.
    size: int = 0


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
    max_bytes: int = 64 * 1024 * 1024,
    exclude: Collection[str] = (),
) -> FetchRound:
    """Store up to ``limit`` new mails as blobs and remember them; nothing is marked yet.

    The caller publishes what this returns with confirms and only then marks the mails
    handed off, so a crash in between leads to a re-fetch, never to a gap. A mail the source
    would not download (over the size limit, unreadable, impossible to mark) becomes a
    DeadLetter of the poller stage. Refs in ``exclude`` (taken already in this round) are
    left out even when the source lists them again.
    """
    out = FetchRound()
    refs = [ref for ref in source.list_new(limit) if ref not in exclude]
    for item in source.fetch_many(refs) if refs else ():
        source_ref = SourceRef(mailbox=mailbox, ref=item.ref)
        if item.raw is None:
            out.skipped.append(_not_downloaded(item, source_ref, helpdesk))
            continue
        message = MailFetched(
            mail_id=mail_id(mailbox, item.ref),
            helpdesk=helpdesk,
            source=source_ref,
            raw_blob=blobs.put(item.raw),
            size=len(item.raw),
            occurred_at=now,
        )
        fetched.record(message, now)
        out.fetched.append(message)
        out.message_ids[item.ref] = message_id_of(item.raw)
        out.size += len(item.raw)
        if out.size >= max_bytes:
            break  # bounded memory: the rest of the refs come in the next batch
    return out


def _not_downloaded(item: Fetched, source: SourceRef, helpdesk: str) -> DeadLetter:
    return DeadLetter(
        mail_id=mail_id(source.mailbox, item.ref),
        helpdesk=helpdesk,
        source=source,
        stage="poller",
        error_class=item.error_class,
        error=item.skipped or "the mail was not downloaded",
        attempts=1,
    )


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
    if not dead.claim(msg, now):
        return DeadLetterKept(kept=False, notices=[])
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
