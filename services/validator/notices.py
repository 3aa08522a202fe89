"""Notices about stripped attachments: to the sender by email, to support reps by bell and email.

Who is told:

- nobody, when nothing was stripped or the help desk turned ``attachment_stripped`` off;
- the support reps, always otherwise (a bell and an email);
- the sender, by a reply to the Reply-To address (else From), except when answering could
  start a mail loop or reach nobody: the mail is an auto-reply or bounce (the parser's
  ``auto_reply``: Auto-Submitted, X-Autoreply, Precedence, delivery reports), the sender is a
  mail system (``mailer-daemon``, ``postmaster``) or a no-reply address, there is no sender
  address, or the address is one of the help desk's own mailboxes.

Every notice is a ``Notify`` whose ``key`` derives from ``mail_id``, so a redelivered mail
never tells anyone twice; the notifier marks each mail it sends ``Auto-Submitted:
auto-generated``.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts.mail import Address, MailParsed, StrippedAttachment
from contracts.notify import Channel, Notify
from services.runtime.addresses import NO_ADDRESSES, AddressSet
from services.validator.policy import StripNotices

TOPIC = "attachment_stripped"

#: Local parts of addresses that are mail systems or refuse replies; a notice to them can only
#: bounce, and the bounce would come back to the help desk's mailbox as a new mail.
AUTOMATED_LOCAL_PARTS = frozenset(
    {"mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply", "do-not-reply"}
)


def strip_notices(
    msg: MailParsed, stripped: Sequence[StrippedAttachment], notices: StripNotices
) -> list[Notify]:
    """The notices about ``stripped`` (see the module's docstring for who is told)."""
    if not stripped or not notices.enabled:
        return []
    out: list[Notify] = []
    sender = sender_to_tell(msg, notices.own_addresses)
    if sender is not None:
        out.append(_sender_notice(msg, stripped, sender))
    if notices.support_reps:
        out.extend(_rep_notices(msg, stripped, list(notices.support_reps)))
    return out


def sender_to_tell(msg: MailParsed, own_addresses: AddressSet = NO_ADDRESSES) -> str | None:
    """The address that may be told about stripped attachments, or ``None`` if nobody may."""
    mail = msg.mail
    address = reply_address(msg)
    machine_or_list = mail.auto_reply or mail.mailing_list
    if address is None or machine_or_list or address in own_addresses:
        return None
    senders = [address, *([mail.from_.email] if mail.from_ else [])]
    return None if any(map(is_automated, senders)) else address


def is_automated(address: str) -> bool:
    """Whether ``address`` belongs to a mail system or a no-reply sender.

    ``MAILER-DAEMON@example.com``, ``postmaster@…``, ``no-reply+news@…``: the local part,
    without a ``+tag``, compared case-insensitively. An empty address counts as automated:
    bounces are sent from the null sender.
    """
    local = address.rpartition("@")[0] if "@" in address else address
    return local.split("+", 1)[0].strip().lower() in AUTOMATED_LOCAL_PARTS or not local.strip()


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
    # Each message is a sentence that names its file.
    return "\n".join(f"- {s.message}" for s in stripped)


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
