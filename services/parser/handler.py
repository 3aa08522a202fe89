"""The parser stage: a fetched raw mail becomes fields plus body and attachment blobs."""

from __future__ import annotations

from contracts.base import Envelope
from contracts.mail import Attachment, MailFetched, MailParsed, ParsedMail
from services.parser.headers import dedupe
from services.parser.limits import ParserLimits
from services.parser.mime import MimeAttachment, parse_mime
from services.runtime.ports import BlobStore

Message = Envelope  # every queue message is an Envelope


def parse(
    msg: MailFetched, *, blobs: BlobStore, limits: ParserLimits | None = None
) -> list[Message]:
    """Parse the raw mail ``msg.raw_blob``; store its bodies and attachments as blobs.

    Attachments are decoded and stored one at a time, so memory stays near the size of the
    raw mail plus its largest attachment. The raw blob itself is left as it is: whatever
    the parser repaired (a charset, a header), the original bytes stay there.

    Idempotent: the same mail always gives the same ``MailParsed`` (apart from its
    ``message_id`` and ``occurred_at``) and the same blobs, which the store keeps once.

    Raises:
        MailError: the mail must be rejected (empty, no header, broken MIME structure, over
            one of ``limits``, by default ``ParserLimits()``); the message says why.
        KeyError: ``msg.raw_blob`` is not in the store (from ``BlobStore.get``).
    """
    parsed = parse_mime(blobs.get(msg.raw_blob), limits)
    stored = []
    for attachment in parsed.attachments:
        stored.append(_stored(attachment, blobs))
        del attachment  # let its bytes go before the next one is decoded
    mail = parsed.mail.model_copy(
        update={
            "body_text_blob": _put_text(parsed.body_text, blobs),
            "body_html_blob": _put_text(parsed.body_html, blobs),
            "attachments": stored,
            "defects": dedupe(parsed.defects),
        }
    )
    return [_parsed(msg, mail)]


def _parsed(msg: MailFetched, mail: ParsedMail) -> MailParsed:
    return MailParsed(
        mail_id=msg.mail_id,
        helpdesk=msg.helpdesk,
        source=msg.source,
        raw_blob=msg.raw_blob,
        mail=mail,
    )


def _put_text(text: str | None, blobs: BlobStore) -> str | None:
    # A few codecs (utf-7) can decode to lone surrogates, which UTF-8 cannot hold.
    return None if text is None else blobs.put(text.encode("utf-8", errors="replace"))


def _stored(attachment: MimeAttachment, blobs: BlobStore) -> Attachment:
    return Attachment(
        filename=attachment.filename,
        content_type=attachment.content_type,
        size=len(attachment.data),
        sha256=blobs.put(attachment.data),
        inline=attachment.inline,
        content_id=attachment.content_id,
    )
