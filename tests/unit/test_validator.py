"""The validator's policy and checks, with an in-memory blob store and a tiny sniffer.

The fakes here are shared with ``test_validator_handler.py``.
"""

from __future__ import annotations

import pytest

from contracts.mail import Address, Attachment, MailParsed, MailValidated, ParsedMail, SourceRef
from contracts.notify import Notify
from contracts.settings import AttachmentSettings, NotificationSettings, parse_settings
from services.runtime.addresses import AddressSet
from services.runtime.testing import InMemoryBlobStore
from services.validator import checks
from services.validator.content_types import extension_of_type, last_extension
from services.validator.handler import validate
from services.validator.policy import AttachmentPolicy, StripNotices

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PDF = b"%PDF-1.4\n%%EOF\n"
EXE = b"MZ" + b"\x00" * 62
ZIP = b"PK\x03\x04" + b"\x00" * 26
OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 24
TEXT = b"Hello, please find the notes below.\n"

SIGNATURES = {PNG[:4]: "image/png", PDF[:4]: "application/pdf", ZIP[:4]: "application/zip"}
SIGNATURES |= {EXE[:2]: "application/x-dosexec", OLE[:4]: "application/x-ole-storage"}


def fake_sniff(data: bytes) -> str:
    """Magic bytes first, then text if it decodes, else the generic type."""
    for signature, mime in SIGNATURES.items():
        if data.startswith(signature):
            return mime
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain"


POLICY = AttachmentPolicy.from_settings(
    AttachmentSettings(max_size_mb=1, restricted_extensions=["exe", ".BAT", "js"])
)
NOTICES = StripNotices(enabled=True, support_reps=("reps@example.com", "lead@example.com"))


@pytest.fixture
def blobs() -> InMemoryBlobStore:
    return InMemoryBlobStore()


def attachment(
    blobs: InMemoryBlobStore, filename: str, data: bytes, content_type: str = "", **extra
) -> Attachment:
    sha = blobs.put(data)
    return Attachment(
        filename=filename, content_type=content_type, size=len(data), sha256=sha, **extra
    )


def parsed(*attachments: Attachment, **mail_fields) -> MailParsed:
    fields = {
        "message_id": "<m1@example.com>",
        "from_": Address(name="Heather", email="heather@zylker.com"),
        "subject": "Printer on fire",
        **mail_fields,
    }
    return MailParsed(
        mail_id="mail-1",
        helpdesk="default",
        source=SourceRef(mailbox="support", ref="42"),
        raw_blob="raw-sha",
        mail=ParsedMail(attachments=list(attachments), **fields),
    )


def run(msg: MailParsed, blobs: InMemoryBlobStore, **kw) -> list[MailValidated | Notify]:
    kw.setdefault("policy", POLICY)
    kw.setdefault("notices", NOTICES)
    return validate(msg, blobs=blobs, sniff=fake_sniff, **kw)


def failure(blobs, filename, data, content_type="", policy=POLICY):
    att = attachment(blobs, filename, data, content_type)
    read = lambda: blobs.get(att.sha256)  # noqa: E731
    return checks.first_failure(att, policy=policy, read_head=read, sniff=fake_sniff)


def reason(blobs, filename, data, content_type="", policy=POLICY) -> str | None:
    found = failure(blobs, filename, data, content_type, policy)
    return None if found is None else found.reason


# --- policy ---------------------------------------------------------------------------------


def test_policy_normalises_extensions_and_converts_megabytes():
    policy = AttachmentPolicy.from_settings(
        AttachmentSettings(
            max_size_mb=2.5, restricted_extensions=[".EXE", "Bat"], allowed_extensions=[".Pdf"]
        )
    )
    assert policy.max_size_bytes == int(2.5 * 1024 * 1024)
    assert policy.restricted_extensions == frozenset({"exe", "bat"})
    assert policy.allowed_extensions == frozenset({"pdf"})


def test_strip_notices_follow_notification_settings():
    notices = StripNotices.from_settings(
        NotificationSettings(support_reps=["reps@example.com"], attachment_stripped=False)
    )
    assert notices == StripNotices(enabled=False, support_reps=("reps@example.com",))


def test_strip_notices_keep_own_addresses_lower_case():
    notices = StripNotices.from_settings(
        NotificationSettings(), own_addresses=[" Support@Example.com", "help@example.com"]
    )
    assert notices.enabled
    assert notices.own_addresses == AddressSet.of({"support@example.com", "help@example.com"})


# --- 1. file name ---------------------------------------------------------------------------


UNSAFE_NAMES = [
    *("", "..", "../etc/passwd", "folder/report.pdf", "folder\\report.pdf", "..\\..\\boot.ini"),
    *("bell\x07.pdf", "del\x7f.pdf", "c1\x85.pdf", "tab\there.pdf", "line\nbreak.pdf"),
    *("invoice\u202egpj.exe.pdf", "isolate\u2066.pdf", "mark\u200f.pdf", "arabic\u061c.pdf"),
    *("CON", "con.txt", "Aux.tar.gz", "nul .pdf", "COM1.pdf", "lpt9", "com\u00b9.pdf"),
    *("COM0.pdf", "CONIN$.txt", "conout$"),
    *("what?.pdf", "a<b>.pdf", 'say "hi".pdf', "c:report.pdf", "pipe|.pdf", "star*.pdf"),
    *("report.pdf.", "report.pdf ", "a" * 252 + ".pdf", "\u00e9" * 126 + ".pdf"),
]
KEPT_NAMES = [
    "Résumé final.pdf",
    "Re\u0301sume\u0301 final.pdf",  # the same name as macOS sends it (decomposed accents)
    "Übersicht (Entwurf).pdf",
    "コンサート.pdf",
    "Q3 report #2 & notes; v1 [draft] 100% 'final'.pdf",
    "\U0001f4ce scan.pdf",
    " leading space.pdf",
]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_unsafe_file_names_are_invalid(blobs, name):
    assert reason(blobs, name, PDF, "application/pdf") == "invalid_name"


@pytest.mark.parametrize("name", [*KEPT_NAMES, "console.pdf", "COM10.pdf", "nullify.pdf"])
def test_names_with_spaces_accents_and_lookalikes_are_kept(blobs, name):
    assert failure(blobs, name, PDF, "application/pdf") is None


def test_name_at_255_utf8_bytes_is_kept(blobs):
    assert reason(blobs, "a" * 251 + ".pdf", PDF, "application/pdf") is None


def test_invalid_name_message_hides_direction_overrides(blobs):
    found = failure(blobs, "invoice\u202egpj.exe", PDF)
    assert found.message == (
        "invoice\ufffdgpj.exe was removed because its file name contains invisible"
        " text-direction characters that can disguise its real type."
    )


def test_long_name_is_shortened_in_the_message(blobs):
    found = failure(blobs, "a" * 300 + ".pdf", PDF)
    assert found.message == (
        f"{'a' * 79}\u2026 was removed because its file name is too long (more than 255 bytes)."
    )


def test_missing_name_has_a_readable_message(blobs):
    assert failure(blobs, "", PDF).message == "An attachment without a file name was removed."


# --- 2. extension ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("setup.exe", "exe"),
        ("RUN.BAT", "bat"),
        ("invoice.pdf.exe", "exe"),
        ("Invoice.PDF.Exe", "exe"),
        ("report.example.com.pdf", "pdf"),
        ("invoice.exe.pdf", "pdf"),
        ("archive.tar.gz", "gz"),
        (".profile", "profile"),
        ("README", None),
        ("notes.", None),
    ],
)
def test_the_last_extension_decides(name, expected):
    assert last_extension(name) == expected


@pytest.mark.parametrize("name", ["setup.exe", "RUN.BAT", "invoice.pdf.exe", "Invoice.PDF.Exe"])
def test_restricted_last_extension_is_dropped(blobs, name):
    assert reason(blobs, name, PDF, "application/pdf") == "restricted_extension"


@pytest.mark.parametrize("name", ["invoice.exe.pdf", "report.example.com.pdf", "v1.js.pdf"])
def test_restricted_extension_before_the_last_one_does_not_count(blobs, name):
    policy = AttachmentPolicy.from_settings(
        AttachmentSettings(restricted_extensions=["exe", "com", "js"])
    )
    assert failure(blobs, name, PDF, "application/pdf", policy) is None


def test_restricted_message_names_the_file_and_type(blobs):
    found = failure(blobs, "invoice.pdf.exe", EXE)
    assert found.message == (
        "invoice.pdf.exe was removed because files of type .exe are not accepted."
    )


def test_allowlist_keeps_listed_and_drops_the_rest(blobs):
    policy = AttachmentPolicy.from_settings(
        AttachmentSettings(restricted_extensions=["exe"], allowed_extensions=["pdf", "png"])
    )
    assert reason(blobs, "scan.PNG", PNG, "image/png", policy) is None
    assert reason(blobs, "notes.txt", TEXT, "text/plain", policy) == "extension_not_allowed"
    assert reason(blobs, "README", TEXT, "text/plain", policy) == "extension_not_allowed"
    assert reason(blobs, "virus.exe", EXE, "", policy) == "restricted_extension"


def test_allowlist_message_lists_the_accepted_types(blobs):
    policy = AttachmentPolicy.from_settings(AttachmentSettings(allowed_extensions=["png", "pdf"]))
    found = failure(blobs, "notes.TXT", TEXT, policy=policy)
    assert found.message == (
        "notes.TXT was removed because its type .txt is not accepted; accepted types: .pdf, .png."
    )


def test_empty_allowlist_accepts_any_unrestricted_extension(blobs):
    assert reason(blobs, "notes.md", TEXT) is None
    assert reason(blobs, "photo.heic", PNG) is None


def test_extensions_written_as_patterns_in_the_settings_file_take_effect(blobs):
    text = (
        "helpdesks:\n  - id: d\n    attachments:\n"
        "      restricted_extensions: ['*.vbs', '.EXE']\n      allowed_extensions: ['*.txt']\n"
    )
    desk = parse_settings(text, env={}).helpdesks[0]
    policy = AttachmentPolicy.from_settings(desk.attachments)

    assert reason(blobs, "d.vbs", TEXT, "text/plain", policy) == "restricted_extension"
    assert reason(blobs, "e.exe", TEXT, "text/plain", policy) == "restricted_extension"
    assert reason(blobs, "notes.txt", TEXT, "text/plain", policy) is None
    assert reason(blobs, "scan.pdf", PDF, "application/pdf", policy) == "extension_not_allowed"


# --- 2b. a name without extension is judged by its content ----------------------------------


def test_program_without_extension_counts_as_exe(blobs):
    found = failure(blobs, "setup", EXE, "application/octet-stream")
    assert found.reason == "restricted_extension"
    assert found.message == (
        "setup was removed because it has no file extension and its content is a Windows"
        " program (.exe), a type that is not accepted."
    )


def test_text_without_extension_is_kept_when_txt_is_not_restricted(blobs):
    assert failure(blobs, "README", TEXT) is None


def test_allowlist_judges_a_name_without_extension_by_content(blobs):
    policy = AttachmentPolicy.from_settings(AttachmentSettings(allowed_extensions=["pdf", "png"]))
    assert reason(blobs, "scan", PDF, "", policy) is None
    found = failure(blobs, "README", TEXT, policy=policy)
    assert found.reason == "extension_not_allowed"
    assert found.message == (
        "README was removed because it has no file extension and its content is of type .txt,"
        " which is not accepted; accepted types: .pdf, .png."
    )


def test_allowlist_refuses_unknown_content_without_extension(blobs):
    policy = AttachmentPolicy.from_settings(AttachmentSettings(allowed_extensions=["png", "pdf"]))
    found = failure(blobs, "blob", b"\xff\xfe\x00\x81", policy=policy)
    assert found.message == (
        "blob was removed because it has no file extension, which is not accepted;"
        " accepted types: .pdf, .png."
    )


@pytest.mark.parametrize(
    ("sniffed", "extension"),
    [
        ("application/vnd.microsoft.portable-executable", "exe"),
        ("application/x-dosexec", "exe"),
        ("application/x-msi", "msi"),
        ("text/x-shellscript", "sh"),
        ("text/x-msdos-batch", "bat"),
        ("application/pdf", "pdf"),
        ("image/jpeg", "jpg"),
        ("text/plain", "txt"),
        ("message/rfc822", "eml"),
        ("application/octet-stream", None),
        ("application/x-never-heard-of", None),
    ],
)
def test_sniffed_types_map_to_extensions(sniffed, extension):
    assert extension_of_type(sniffed) == extension


# --- 3. empty and 4. size -------------------------------------------------------------------


def test_empty_file_is_dropped(blobs):
    found = failure(blobs, "blank.pdf", b"", "application/pdf")
    assert found.reason == "empty"
    assert found.message == "blank.pdf was removed because it is empty (0 bytes)."


def test_file_over_the_limit_is_too_large(blobs):
    found = failure(blobs, "big.pdf", PDF + b"0" * (1024 * 1024), "application/pdf")
    assert found.reason == "too_large"
    assert (
        found.message == "big.pdf was removed because it is 1.01 MB, more than the limit of 1 MB."
    )


def test_file_at_the_limit_is_kept(blobs):
    data = PDF + b"0" * (1024 * 1024 - len(PDF))
    assert reason(blobs, "full.pdf", data, "application/pdf") is None


def test_size_and_emptiness_are_decided_without_reading_the_bytes():
    unread = InMemoryBlobStore()  # the blobs are not there: reading them would fail
    big = Attachment(filename="big.pdf", content_type="", size=2 * 1024 * 1024, sha256="x")
    empty = Attachment(filename="e.pdf", content_type="", size=0, sha256="y")
    nameless_empty = Attachment(filename="blank", content_type="", size=0, sha256="z")
    [out] = run(parsed(big, empty, nameless_empty), unread, notices=StripNotices(False, ()))
    assert [s.reason for s in out.stripped] == ["too_large", "empty", "empty"]


def test_name_is_checked_before_size(blobs):
    assert reason(blobs, "big.exe", EXE + b"0" * (2 * 1024 * 1024)) == "restricted_extension"


# --- 5. declared type against content -------------------------------------------------------


def test_text_file_holding_png_is_a_mismatch(blobs):
    found = failure(blobs, "photo.txt", PNG, "text/plain")
    assert found.reason == "content_mismatch"
    assert found.message == (
        "photo.txt was removed because its content is a PNG image, not plain text as its .txt"
        " extension says."
    )
    assert (found.content_type, found.size) == ("text/plain", len(PNG))


def test_the_extension_outweighs_a_declared_type_that_fits_the_content(blobs):
    assert reason(blobs, "photo.txt", PNG, "image/png") == "content_mismatch"


def test_pdf_holding_an_executable_is_a_mismatch(blobs):
    found = failure(blobs, "report.pdf", EXE, "application/pdf")
    assert found.reason == "content_mismatch"
    assert "its content is a Windows program, not a PDF document" in found.message


def test_declared_type_alone_can_mismatch(blobs):
    found = failure(blobs, "scan", PNG, "application/pdf")
    assert found.reason == "content_mismatch"
    assert found.message == (
        "scan was removed because its content is a PNG image, not a PDF document as the mail"
        " declares."
    )


def test_unknown_extension_falls_back_to_the_declared_type(blobs):
    assert reason(blobs, "scan.zz9", EXE, "application/pdf") == "content_mismatch"
    assert reason(blobs, "scan.zz9", PDF, "application/pdf") is None


def test_same_words_for_both_types_are_told_apart_by_their_mime_types():
    att = Attachment(filename="photo.jpg", content_type="", size=10, sha256="x")
    found = checks.content_failure(att, "application/vnd.microsoft.portable-executable")
    assert found.message.startswith("photo.jpg was removed because its content is a Windows")
    found = checks.content_failure(
        Attachment(filename="a.exe", content_type="", size=10, sha256="x"), "image/png"
    )
    assert "not a Windows program as its .exe extension says" in found.message


@pytest.mark.parametrize(
    ("name", "data", "declared"),
    [
        ("photo.png", PNG, "image/png"),
        ("photo.jpg", PNG, "image/jpeg"),  # same major type: a mislabelled image is harmless
        ("report.pdf", PDF, "application/pdf; name=report.pdf"),
        ("report.pdf", PDF, "application/octet-stream"),
        ("data.csv", TEXT, "text/csv"),
        ("data.csv", TEXT, "application/vnd.ms-excel"),  # how Outlook declares a .csv
        ("data.json", TEXT, "application/json"),
        ("server.log", TEXT, "text/x-log"),
        ("letter.docx", ZIP, "application/octet-stream"),
        ("sheet.xlsx", ZIP, ""),
        ("book.epub", ZIP, "application/epub+zip"),
        ("archive.zip", ZIP, "application/x-zip-compressed"),
        ("old.doc", OLE, "application/msword"),
        ("old.xls", OLE, "application/vnd.ms-excel"),
        ("mail.msg", OLE, "application/vnd.ms-outlook"),
        ("blob.bin", b"\xff\xfe\x00\x81", "image/png"),  # sniffer knows nothing: generic
        ("unnamed", PNG, "application/octet-stream"),  # nothing claimed, nothing to contradict
    ],
)
def test_content_that_fits_the_claim_is_kept(blobs, name, data, declared):
    assert failure(blobs, name, data, declared) is None


@pytest.mark.parametrize(
    ("name", "declared", "sniffed"),
    [
        ("letter.docx", "", "application/zip"),
        (
            "letter.docx",
            "",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        ("sheet.ods", "", "application/zip"),
        ("letter.odt", "", "application/vnd.oasis.opendocument.text"),
        ("notes.txt", "", "text/csv"),
        ("table.csv", "text/csv", "text/plain"),
        ("server.log", "text/plain", "text/plain"),
        ("forwarded.eml", "message/rfc822", "message/rfc822"),
        ("forwarded.eml", "message/rfc822", "text/plain"),
        ("notes.txt", "text/plain", "message/rfc822"),
        ("winmail.dat", "application/ms-tnef", "application/vnd.ms-tnef"),
        ("parts.rar", "application/x-rar-compressed", "application/x-rar"),
        ("locked.xlsx", "", "application/encrypted"),  # password-protected Office file
        ("drawing.svg", "image/svg+xml", "image/svg+xml"),
        ("drawing.svg", "image/svg+xml", "text/xml"),
        ("poster.ai", "application/postscript", "application/pdf"),
        ("old-poster.ai", "", "application/postscript"),
        ("plan.vsdx", "application/vnd.ms-visio.drawing", "application/zip"),
        ("notes.pages", "", "application/zip"),
        ("budget.pub", "application/x-mspublisher", "application/x-ole-storage"),
        ("voice.3gp", "", "video/3gpp"),  # named as audio, holds video: both are media
        ("photo.jpg", "image/jpeg", "image/png"),
    ],
)
def test_families_map_labels_of_the_same_content(name, declared, sniffed):
    att = Attachment(filename=name, content_type=declared, size=10, sha256="x")
    assert checks.content_failure(att, sniffed) is None


@pytest.mark.parametrize(
    ("name", "declared", "sniffed"),
    [
        ("photo.txt", "text/plain", "image/png"),
        ("letter.docx", "", "application/pdf"),
        ("letter.doc", "", "application/zip"),
        ("forwarded.eml", "message/rfc822", "image/gif"),
        ("table.csv", "", "application/vnd.microsoft.portable-executable"),
        ("logo.png", "image/png", "application/x-dosexec"),
        ("clip.mp4", "", "application/zip"),
        ("photo.png", "", "application/zip"),
        ("report.pdf", "", "application/x-ole-storage"),
        ("setup.exe", "", "application/zip"),
        ("notes.txt", "", "audio/mpeg"),
    ],
)
def test_different_content_is_a_mismatch(name, declared, sniffed):
    att = Attachment(filename=name, content_type=declared, size=10, sha256="x")
    assert checks.content_failure(att, sniffed).reason == "content_mismatch"


def test_only_the_first_8_kib_are_sniffed(blobs):
    seen: list[int] = []

    def sniff(data: bytes) -> str:
        seen.append(len(data))
        return "application/pdf"

    att = attachment(blobs, "long.pdf", PDF + b"0" * 20_000, "application/pdf")
    assert checks.check_content(att, blobs.get(att.sha256), sniff) is None
    assert seen == [checks.SNIFF_BYTES]


def test_content_is_sniffed_once_for_a_name_without_extension(blobs):
    seen: list[bytes] = []

    def sniff(data: bytes) -> str:
        seen.append(data)
        return "text/plain"

    att = attachment(blobs, "README", TEXT)
    read = lambda: blobs.get(att.sha256)  # noqa: E731
    assert checks.first_failure(att, policy=POLICY, read_head=read, sniff=sniff) is None
    assert seen == [TEXT]
