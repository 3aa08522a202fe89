"""Attachment cases built from real files, judged with the real libmagic sniffer.

Each row is one attachment of one mail: a file name, the bytes of a real file of some format
(``tests/attachments/samples.py``), the type the mail declares, and the verdict: ``KEPT`` or
the reason code it is stripped with. The help desk restricts the product's default list plus
``sh``, and accepts files up to 1 MB.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

import pytest
from attachments import samples

from contracts.ids import mail_id
from contracts.mail import Address, Attachment, MailFetched, MailParsed, ParsedMail, SourceRef
from contracts.settings import AttachmentSettings
from services.parser.handler import parse
from services.runtime.testing import InMemoryBlobStore
from services.validator.adapters import LibmagicSniffer
from services.validator.handler import validate
from services.validator.policy import AttachmentPolicy, StripNotices

KEPT = "kept"
POLICY = AttachmentPolicy.from_settings(
    AttachmentSettings(
        max_size_mb=1, restricted_extensions=[*AttachmentSettings().restricted_extensions, "sh"]
    )
)
NO_NOTICES = StripNotices(enabled=False, support_reps=())
OOXML = "application/vnd.openxmlformats-officedocument"
LONG_NAME = "Quarterly facilities report for the third floor printers " * 5 + ".pdf"


@dataclass(frozen=True)
class Case:
    filename: str
    data: bytes
    declared: str
    verdict: str
    inline: bool = False


CASES = {
    "pdf": Case("invoice-2026-118.pdf", samples.pdf(), "application/pdf", KEPT),
    "png": Case("scan.png", samples.png(), "image/png", KEPT),
    "jpeg": Case("photo.jpg", samples.jpeg(), "image/jpeg", KEPT),
    "gif": Case("spinner.gif", samples.gif(), "image/gif", KEPT),
    "docx": Case("letter.docx", samples.docx(), f"{OOXML}.wordprocessingml.document", KEPT),
    "xlsx": Case("assets.xlsx", samples.xlsx(), "application/octet-stream", KEPT),
    "odt": Case("minutes.odt", samples.odt(), "application/vnd.oasis.opendocument.text", KEPT),
    "zip": Case("logs.zip", samples.zip_archive(), "application/x-zip-compressed", KEPT),
    "pe": Case(
        "setup.exe", samples.pe_executable(), "application/x-msdownload", "restricted_extension"
    ),
    "shell script": Case(
        "restart.sh", samples.shell_script(), "application/x-sh", "restricted_extension"
    ),
    "text": Case("notes.txt", samples.plain_text(), "text/plain", KEPT),
    "csv": Case("assets.csv", samples.csv_table(), "text/csv", KEPT),
    "csv as outlook declares it": Case(
        "assets-2.csv", samples.csv_table(), "application/vnd.ms-excel", KEPT
    ),
    "log": Case("spooler.log", samples.log_file(), "text/plain", KEPT),
    "eml": Case("forwarded.eml", samples.eml(), "message/rfc822", KEPT),
    "empty": Case("blank.txt", b"", "text/plain", "empty"),
    "image renamed .txt": Case("photo.txt", samples.png(), "text/plain", "content_mismatch"),
    "image renamed .txt, declared as image": Case(
        "photo2.txt", samples.png(), "image/png", "content_mismatch"
    ),
    "double extension": Case(
        "invoice.pdf.exe", samples.pe_executable(), "application/pdf", "restricted_extension"
    ),
    "rtlo name": Case(
        "invoice\u202egpj.exe", samples.pe_executable(), "image/jpeg", "invalid_name"
    ),
    "very long name": Case(LONG_NAME, samples.pdf(), "application/pdf", "invalid_name"),
    "windows device name": Case("CON.txt", samples.plain_text(), "text/plain", "invalid_name"),
    "accents and spaces": Case("Résumé final (v2).pdf", samples.pdf(), "application/pdf", KEPT),
    "dotted name, last extension pdf": Case(
        "report.example.com.pdf", samples.pdf(), "application/pdf", KEPT
    ),
    "pe without extension": Case(
        "setup", samples.pe_executable(), "application/octet-stream", "restricted_extension"
    ),
    "script without extension": Case("install", samples.shell_script(), "", "restricted_extension"),
    "text without extension": Case("README", samples.plain_text(), "", KEPT),
    "pe named .pdf": Case(
        "report.pdf", samples.pe_executable(), "application/pdf", "content_mismatch"
    ),
    "docx named .pdf": Case("contract.pdf", samples.docx(), "application/pdf", "content_mismatch"),
    "plain zip named .docx": Case("draft.docx", samples.zip_archive(), "", KEPT),
    "pdf over 1 MB": Case(
        "manual.pdf", samples.pdf(padding=1024 * 1024), "application/pdf", "too_large"
    ),
    "inline image": Case("image001.png", samples.png(), "image/png", KEPT, inline=True),
    "inline image that is a program": Case(
        "logo.png", samples.pe_executable(), "image/png", "content_mismatch", inline=True
    ),
}


@pytest.fixture(scope="module")
def sniffer() -> LibmagicSniffer:
    return LibmagicSniffer()


def attachment(blobs: InMemoryBlobStore, case: Case, number: int) -> Attachment:
    return Attachment(
        filename=case.filename,
        content_type=case.declared,
        size=len(case.data),
        sha256=blobs.put(case.data),
        inline=case.inline,
        content_id=f"part{number}@zylker.example" if case.inline else None,
    )


def mail_with(blobs: InMemoryBlobStore, attachments: list[Attachment]) -> MailParsed:
    return MailParsed(
        mail_id="mail-table",
        helpdesk="default",
        source=SourceRef(mailbox="support", ref="table"),
        raw_blob="raw",
        mail=ParsedMail(
            message_id="<table@zylker.example>",
            from_=Address(email="heather@zylker.example"),
            attachments=attachments,
        ),
    )


def verdicts(sniffer: LibmagicSniffer, cases: list[Case]) -> dict[str, str]:
    blobs = InMemoryBlobStore()
    msg = mail_with(blobs, [attachment(blobs, c, n) for n, c in enumerate(cases)])
    [out] = validate(msg, policy=POLICY, notices=NO_NOTICES, blobs=blobs, sniff=sniffer)
    found = {a.filename: KEPT for a in out.mail.attachments}
    return found | {s.filename: s.reason for s in out.stripped}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_case_alone(sniffer, case):
    assert verdicts(sniffer, [case]) == {case.filename: case.verdict}


def test_all_cases_in_one_mail(sniffer):
    blobs = InMemoryBlobStore()
    cases = list(CASES.values())
    msg = mail_with(blobs, [attachment(blobs, c, n) for n, c in enumerate(cases)])
    [out] = validate(msg, policy=POLICY, notices=NO_NOTICES, blobs=blobs, sniff=sniffer)

    assert [a.filename for a in out.mail.attachments] == [
        c.filename for c in cases if c.verdict == KEPT
    ]
    assert [(s.filename, s.reason) for s in out.stripped] == [
        (c.filename, c.verdict) for c in cases if c.verdict != KEPT
    ]
    [inline] = [a for a in out.mail.attachments if a.inline]
    assert (inline.filename, inline.content_id) == (
        "image001.png",
        f"part{len(cases) - 2}@zylker.example",
    )


def test_every_message_is_a_sentence_that_names_the_file(sniffer):
    blobs = InMemoryBlobStore()
    cases = [c for c in CASES.values() if c.verdict != KEPT]
    msg = mail_with(blobs, [attachment(blobs, c, n) for n, c in enumerate(cases)])
    [out] = validate(msg, policy=POLICY, notices=NO_NOTICES, blobs=blobs, sniff=sniffer)

    for stripped in out.stripped:
        assert " was removed because " in stripped.message
        assert stripped.message.endswith(".")
        assert "\u202e" not in stripped.message
    by_name = {s.filename: s.message for s in out.stripped}
    assert by_name["photo.txt"] == (
        "photo.txt was removed because its content is a PNG image, not plain text as its .txt"
        " extension says."
    )
    assert by_name["setup"] == (
        "setup was removed because it has no file extension and its content is a Windows"
        " program (.exe), a type that is not accepted."
    )
    assert by_name["manual.pdf"] == (
        "manual.pdf was removed because it is 1.01 MB, more than the limit of 1 MB."
    )


# --- a real mail through the parser ---------------------------------------------------------


def mail_with_pictures() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Heather Lee <heather@zylker.example>"
    msg["To"] = "support@demo.example"
    msg["Subject"] = "Printer on fire"
    msg["Message-ID"] = "<pictures@zylker.example>"
    msg.set_content("See the pictures below.\n")
    msg.add_alternative(
        '<p>Our logo: <img src="cid:logo@zylker.example"></p>'
        '<p>The printer: <img src="cid:printer@zylker.example"></p>',
        subtype="html",
    )
    html = msg.get_payload()[1]
    pictures = [
        (samples.png(), "png", "logo@zylker.example", "logo.png"),
        (samples.pe_executable(), "jpeg", "printer@zylker.example", "printer.jpg"),
    ]
    for data, subtype, cid, name in pictures:
        html.add_related(
            data, "image", subtype, cid=f"<{cid}>", filename=name, disposition="inline"
        )
    msg.add_attachment(samples.pdf(), "application", "pdf", filename="invoice.pdf")
    return msg.as_bytes()


def test_parsed_mail_keeps_its_inline_picture_and_drops_the_disguised_program(sniffer):
    blobs = InMemoryBlobStore()
    raw = mail_with_pictures()
    fetched = MailFetched(
        mail_id=mail_id("support", "pictures"),
        helpdesk="default",
        source=SourceRef(mailbox="support", ref="pictures"),
        raw_blob=blobs.put(raw),
        size=len(raw),
    )
    [parsed] = parse(fetched, blobs=blobs)
    [out] = validate(parsed, policy=POLICY, notices=NO_NOTICES, blobs=blobs, sniff=sniffer)

    kept = {a.filename: (a.inline, a.content_id) for a in out.mail.attachments}
    assert kept == {"logo.png": (True, "logo@zylker.example"), "invoice.pdf": (False, None)}
    assert [(s.filename, s.reason) for s in out.stripped] == [("printer.jpg", "content_mismatch")]
