"""The validator stage: check every attachment, drop the failing ones, and say so.

``validate`` is pure apart from reading attachment bytes through the ``BlobStore`` port and
sniffing them through the injected ``sniff`` callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from contracts.mail import Address, Attachment, MailParsed, MailValidated, StrippedAttachment
from contracts.notify import Channel, Notify
from services.runtime.errors import MailError
from services.runtime.ports import BlobStore
from services.validator.checks import SNIFF_BYTES, first_failure, shown_name
from services.validator.policy import AttachmentPolicy, StripNotices

TOPIC = "attachment_stripped"


def validate(
    msg: MailParsed,
    *,
    policy: AttachmentPolicy,
    notices: StripNotices,
    blobs: BlobStore,
    sniff: Callable[[bytes], str],
) -> list[MailValidated | Notify]:
    """Check each attachment of ``msg.mail`` (inline ones too) and drop those that fail.

    Returns the ``MailValidated`` with the kept attachments and the ``stripped`` list, then,
    when something was dropped and notices are on, the ``Notify`` commands for the sender
    and the support reps. Idempotent: the same input gives the same outputs, and every
    ``Notify`` has a key derived from ``mail_id``, so the notifier sends each notice once.

    Raises:
        MailError: an attachment's bytes are missing from the blob store.
        InfraError: from ``sniff`` when the content sniffer fails (retried by the dispatcher).
    """
    kept, stripped = _partition(msg.mail.attachments, policy=policy, blobs=blobs, sniff=sniff)
    mail = msg.mail.model_copy(update={"attachments": kept}) if stripped else msg.mail
    validated = MailValidated(
        mail_id=msg.mail_id,
        helpdesk=msg.helpdesk,
        source=msg.source,
        raw_blob=msg.raw_blob,
        mail=mail,
        stripped=stripped,
    )
    return [validated, *strip_notices(msg, stripped, notices)]


def _partition(
    attachments: Sequence[Attachment],
    *,
    policy: AttachmentPolicy,
    blobs: BlobStore,
    sniff: Callable[[bytes], str],
) -> tuple[list[Attachment], list[StrippedAttachment]]:
    kept: list[Attachment] = []
    stripped: list[StrippedAttachment] = []
    for att in attachments:
        failure = first_failure(
            att, policy=policy, read_head=lambda a=att: _head(blobs, a), sniff=sniff
        )
        if failure is None:
            kept.append(att)
        else:
            stripped.append(failure)
    return kept, stripped


def _head(blobs: BlobStore, att: Attachment) -> bytes:
    try:
        return blobs.get(att.sha256)[:SNIFF_BYTES]
    except KeyError:
        # Blobs are stored before the mail is published, so a retry would not find it either.
        raise MailError(f"attachment blob {att.sha256} is missing from the store") from None


# --- notices --------------------------------------------------------------------------------


def strip_notices(
    msg: MailParsed, stripped: Sequence[StrippedAttachment], notices: StripNotices
) -> list[Notify]:
    """The notices about ``stripped``: to the sender by email, to support reps by bell and email.

    None at all when nothing was stripped or notices are off. The sender is not told when
    the mail is an auto-reply (answering one risks a mail loop) or has no address.
    """
    if not stripped or not notices.enabled:
        return []
    out: list[Notify] = []
    sender = reply_address(msg)
    if sender is not None and not msg.mail.auto_reply:
        out.append(_sender_notice(msg, stripped, sender))
    if notices.support_reps:
        out.extend(_rep_notices(msg, stripped, list(notices.support_reps)))
    return out


def reply_address(msg: MailParsed) -> str | None:
    """Where a reply to the mail goes: the first Reply-To address, else From; None if neither."""
    mail = msg.mail
    candidates = [*mail.reply_to[:1], *([mail.from_] if mail.from_ else [])]
    return next((a.email for a in candidates if a.email), None)


def reply_subject(subject: str) -> str:
    """``"Re: "`` before ``subject`` unless it already starts with one."""
    subject = subject.strip()
    if subject.lower().startswith("re:"):
        return subject
    return f"Re: {subject or '(no subject)'}"


def _notify(msg: MailParsed, *, key: str, channel: Channel, to: list[str], **fields: str) -> Notify:
    return Notify(
        mail_id=msg.mail_id,
        helpdesk=msg.helpdesk,
        key=f"{msg.mail_id}:{TOPIC}:{key}",
        topic=TOPIC,
        channel=channel,
        to=to,
        **fields,
    )


def _file_lines(stripped: Sequence[StrippedAttachment]) -> str:
    return "\n".join(f"- {shown_name(s.filename) or '(no name)'}: {s.message}" for s in stripped)


def _sender_notice(msg: MailParsed, stripped: Sequence[StrippedAttachment], sender: str) -> Notify:
    body = (
        "Hello,\n\n"
        f'We received your mail "{msg.mail.subject}", but removed these attachments'
        " from it:\n\n"
        f"{_file_lines(stripped)}\n\n"
        "The rest of your mail reached the help desk. If the files are needed, please send"
        " them again in a form the help desk accepts.\n"
    )
    return _notify(
        msg,
        key="email:sender",
        channel="email",
        to=[sender],
        subject=reply_subject(msg.mail.subject),
        body=body,
        in_reply_to=msg.mail.message_id,
    )


def _describe(address: Address | None) -> str:
    if address is None or not address.email:
        return "an unknown sender"
    return f"{address.name} <{address.email}>" if address.name else address.email


def _rep_notices(
    msg: MailParsed, stripped: Sequence[StrippedAttachment], reps: list[str]
) -> list[Notify]:
    mail = msg.mail
    sender = _describe(mail.from_ or next(iter(mail.reply_to), None))
    count = f"{len(stripped)} attachment{'s' if len(stripped) != 1 else ''}"
    subject = f'{count} removed from "{mail.subject}" from {sender}'
    body = (
        f"Attachments were removed from a mail before it reached the help desk.\n\n"
        f"From: {sender}\nSubject: {mail.subject}\n\n{_file_lines(stripped)}\n"
    )
    return [
        _notify(msg, key="bell", channel="bell", to=reps, subject=subject, body=body),
        _notify(msg, key="email:reps", channel="email", to=reps, subject=subject, body=body),
    ]
