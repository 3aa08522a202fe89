"""The validator's adapters on real things: libmagic on real files, blob heads on real databases."""

from __future__ import annotations

import pytest
from attachments import samples

from contracts.mail import Address, Attachment, MailParsed, ParsedMail, SourceRef
from contracts.settings import AttachmentSettings
from services.runtime.store import SqlBlobStore, Store
from services.runtime.testing import InMemoryBlobStore
from services.validator.adapters import LibmagicSniffer, SqlBlobHeads
from services.validator.handler import validate
from services.validator.policy import AttachmentPolicy, StripNotices

# libmagic before 5.44 says x-dosexec, later versions the registered IANA type.
PE_TYPES = {"application/x-dosexec", "application/vnd.microsoft.portable-executable"}
OOXML = "application/vnd.openxmlformats-officedocument"


@pytest.fixture(scope="module")
def sniffer() -> LibmagicSniffer:
    return LibmagicSniffer()


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("document.pdf", {"application/pdf"}),
        ("picture.png", {"image/png"}),
        ("picture.jpg", {"image/jpeg"}),
        ("picture.gif", {"image/gif"}),
        # Older libmagic names Office Open XML by the zip container only.
        ("letter.docx", {f"{OOXML}.wordprocessingml.document", "application/zip"}),
        ("sheet.xlsx", {f"{OOXML}.spreadsheetml.sheet", "application/zip"}),
        ("letter.odt", {"application/vnd.oasis.opendocument.text"}),
        ("archive.zip", {"application/zip"}),
        ("program.exe", PE_TYPES),
        ("script.sh", {"text/x-shellscript", "text/x-sh"}),
        ("notes.txt", {"text/plain"}),
        ("table.csv", {"text/csv", "text/plain"}),
        ("spooler.log", {"text/plain"}),
        ("forwarded.eml", {"message/rfc822"}),
    ],
)
def test_sniffer_names_real_content(sniffer, sample, expected):
    assert sniffer(samples.SAMPLES[sample]) in expected


def test_every_sample_is_a_few_kilobytes_at_most():
    assert all(len(data) <= 4096 for data in samples.SAMPLES.values())


def test_validate_with_libmagic_strips_png_named_as_text(sniffer):
    blobs = InMemoryBlobStore()
    png, pdf = samples.png(), samples.pdf()
    attachments = [
        Attachment(
            filename="photo.txt", content_type="text/plain", size=len(png), sha256=blobs.put(png)
        ),
        Attachment(
            filename="report.pdf",
            content_type="application/pdf",
            size=len(pdf),
            sha256=blobs.put(pdf),
        ),
    ]
    msg = MailParsed(
        mail_id="mail-7",
        helpdesk="default",
        source=SourceRef(mailbox="support", ref="7"),
        raw_blob="raw",
        mail=ParsedMail(
            message_id="<7@example.com>",
            from_=Address(email="heather@zylker.com"),
            attachments=attachments,
        ),
    )
    [out] = validate(
        msg,
        policy=AttachmentPolicy.from_settings(AttachmentSettings()),
        notices=StripNotices(enabled=False, support_reps=()),
        blobs=blobs,
        sniff=sniffer,
    )
    assert [a.filename for a in out.mail.attachments] == ["report.pdf"]
    [stripped] = out.stripped
    assert stripped.reason == "content_mismatch"
    assert stripped.message.startswith("photo.txt was removed because its content is a PNG image")


# --- reading only the head of a blob --------------------------------------------------------


def test_blob_heads_return_the_first_bytes_only(store: Store) -> None:
    data = samples.pdf(padding=200_000)
    sha = SqlBlobStore(store).put(data)
    heads = SqlBlobHeads(store)

    assert heads(sha, 8192) == data[:8192]
    assert heads(sha, 5) == b"%PDF-"
    assert heads(sha, len(data) + 10) == data


def test_blob_heads_keep_binary_bytes_intact(store: Store) -> None:
    data = bytes(range(256)) * 4  # NUL bytes and every high byte
    sha = SqlBlobStore(store).put(data)
    assert SqlBlobHeads(store)(sha, 300) == data[:300]


def test_blob_head_of_a_missing_blob_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError):
        SqlBlobHeads(store)("0" * 64, 10)


def test_validate_reads_heads_from_the_store(store: Store, sniffer: LibmagicSniffer) -> None:
    blobs = SqlBlobStore(store)
    png = samples.png()
    photo = Attachment(
        filename="photo.txt", content_type="text/plain", size=len(png), sha256=blobs.put(png)
    )
    msg = MailParsed(
        mail_id="mail-8",
        helpdesk="default",
        source=SourceRef(mailbox="support", ref="8"),
        raw_blob="raw",
        mail=ParsedMail(message_id="<8@example.com>", attachments=[photo]),
    )
    [out] = validate(
        msg,
        policy=AttachmentPolicy.from_settings(AttachmentSettings()),
        notices=StripNotices(enabled=False, support_reps=()),
        blobs=blobs,
        sniff=sniffer,
        read_head=SqlBlobHeads(store),
    )
    assert [s.reason for s in out.stripped] == ["content_mismatch"]
