"""Queue messages stay small whatever the mail size: bodies and attachments travel as blobs."""

from __future__ import annotations

from email.message import EmailMessage

from contracts.ids import mail_id
from contracts.mail import MailFetched, SourceRef
from services.parser.handler import parse
from services.runtime.testing import InMemoryBlobStore
from services.validator.handler import validate
from services.validator.policy import AttachmentPolicy, StripNotices


def big_mail(attachment_mb: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Big Sender <big@example.com>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "the logs you asked for"
    msg["Message-ID"] = "<big@example.com>"
    msg.set_content("Logs attached.\n" * 1000)
    msg.add_attachment(
        b"\x89PNG" + bytes(attachment_mb * 1024 * 1024),
        maintype="application",
        subtype="octet-stream",
        filename="dump.bin",
    )
    return msg.as_bytes()


def test_every_message_of_a_big_mail_is_a_few_kilobytes() -> None:
    blobs = InMemoryBlobStore()
    raw = big_mail(5)
    fetched = MailFetched(
        mail_id=mail_id("box", "k1"),
        helpdesk="default",
        source=SourceRef(mailbox="box", ref="k1"),
        raw_blob=blobs.put(raw),
        size=len(raw),
    )

    [parsed] = parse(fetched, blobs=blobs)
    policy = AttachmentPolicy(
        max_size_bytes=50 * 1024 * 1024,
        restricted_extensions=frozenset(),
        allowed_extensions=frozenset(),
    )
    validated = validate(
        parsed,
        policy=policy,
        notices=StripNotices(False, ()),
        blobs=blobs,
        sniff=lambda data: "application/octet-stream",
    )[0]

    assert len(raw) > 5 * 1024 * 1024
    for message in (fetched, parsed, validated):
        assert len(message.model_dump_json()) < 4096
    [attachment] = parsed.mail.attachments
    assert len(blobs.get(attachment.sha256)) == 5 * 1024 * 1024 + 4
