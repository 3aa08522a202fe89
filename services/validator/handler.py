"""The validator stage: check every attachment, drop the failing ones, and say so.

``validate`` is pure apart from reading the start of each attachment (through the
``read_head`` port, or the ``BlobStore`` when none is given) and sniffing it through the
injected ``sniff`` callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from contracts.mail import Attachment, MailParsed, MailValidated, StrippedAttachment
from contracts.notify import Notify
from services.runtime.errors import MailError
from services.runtime.ports import BlobStore
from services.validator.checks import SNIFF_BYTES, first_failure
from services.validator.notices import strip_notices
from services.validator.policy import AttachmentPolicy, StripNotices

#: ``read_head(sha256, n)``: the first ``n`` bytes of a blob; raises ``KeyError`` when absent.
HeadReader = Callable[[str, int], bytes]


def validate(
    msg: MailParsed,
    *,
    policy: AttachmentPolicy,
    notices: StripNotices,
    blobs: BlobStore,
    sniff: Callable[[bytes], str],
    read_head: HeadReader | None = None,
) -> list[MailValidated | Notify]:
    """Check each attachment of ``msg.mail`` and drop those that fail.

    Inline parts take the same checks: one that passes stays in ``attachments`` (still
    ``inline``, with its ``content_id``) and is not counted; one that fails is stripped like
    any other attachment.

    Returns the ``MailValidated`` with the kept attachments and the ``stripped`` list, then,
    when something was dropped and notices are on, the ``Notify`` commands for the sender
    and the support reps. Idempotent: the same input gives the same outputs, and every
    ``Notify`` has a key derived from ``mail_id``, so the notifier sends each notice once.

    ``read_head`` reads only the start of a blob; without it the whole blob is read through
    ``blobs`` and cut to the ``SNIFF_BYTES`` the sniffer looks at.

    Raises:
        MailError: an attachment's bytes are missing from the blob store.
        InfraError: from ``sniff`` or the store when they fail (retried by the dispatcher).
    """
    head = read_head or (lambda sha, n: blobs.get(sha)[:n])
    kept, stripped = _partition(msg.mail.attachments, policy=policy, head=head, sniff=sniff)
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
    head: HeadReader,
    sniff: Callable[[bytes], str],
) -> tuple[list[Attachment], list[StrippedAttachment]]:
    kept: list[Attachment] = []
    stripped: list[StrippedAttachment] = []
    for att in attachments:
        failure = first_failure(
            att, policy=policy, read_head=partial(_head, head, att), sniff=sniff
        )
        if failure is None:
            kept.append(att)
        else:
            stripped.append(failure)
    return kept, stripped


def _head(read_head: HeadReader, att: Attachment) -> bytes:
    try:
        return read_head(att.sha256, SNIFF_BYTES)
    except KeyError:
        # Blobs are stored before the mail is published, so a retry would not find it either.
        name, sha = att.filename, att.sha256
        raise MailError(
            f"the bytes of attachment {name!r} (blob {sha}) are missing from the store"
        ) from None
