"""LibmagicSniffer on real bytes, and the validator stripping with the real sniffer."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import pytest

from contracts.mail import Address, Attachment, MailParsed, ParsedMail, SourceRef
from contracts.settings import AttachmentSettings
from services.runtime.testing import InMemoryBlobStore
from services.validator.adapters import LibmagicSniffer
from services.validator.handler import validate
from services.validator.policy import AttachmentPolicy, StripNotices

# libmagic before 5.44 says x-dosexec, later versions the registered IANA type.
PE_TYPES = {"application/x-dosexec", "application/vnd.microsoft.portable-executable"}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def minimal_png() -> bytes:
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    pixels = zlib.compress(b"\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


def minimal_pdf() -> bytes:
    return b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


def tiny_pe() -> bytes:
    image = bytearray(0x80)
    image[0:2] = b"MZ"
    image[0x18:0x1A] = struct.pack("<H", 0x40)  # relocation table offset: "new" executable
    image[0x3C:0x40] = struct.pack("<I", 0x40)  # where the PE header starts
    image[0x40:0x44] = b"PE\x00\x00"
    image[0x44:0x46] = struct.pack("<H", 0x14C)  # machine: i386
    return bytes(image)


def small_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def sniffer() -> LibmagicSniffer:
    return LibmagicSniffer()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (minimal_png(), {"image/png"}),
        (minimal_pdf(), {"application/pdf"}),
        (tiny_pe(), PE_TYPES),
        (small_zip(), {"application/zip"}),
        (b"Hello, the printer on floor 3 is out of toner.\n", {"text/plain"}),
    ],
    ids=["png", "pdf", "pe", "zip", "text"],
)
def test_sniffer_names_real_content(sniffer, data, expected):
    assert sniffer(data) in expected


def test_validate_with_libmagic_strips_png_named_as_text(sniffer):
    blobs = InMemoryBlobStore()
    png, pdf = minimal_png(), minimal_pdf()
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
    assert "photo.txt claims text/plain but its content is image/png" in stripped.message
