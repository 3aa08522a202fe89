"""The validator's checks and handler, with an in-memory blob store and a tiny sniffer."""

from __future__ import annotations

import pytest

from contracts.mail import Address, Attachment, MailParsed, MailValidated, ParsedMail, SourceRef
from contracts.notify import Notify
from contracts.settings import AttachmentSettings, NotificationSettings
from services.runtime.errors import MailError
from services.runtime.testing import InMemoryBlobStore
from services.validator import checks
from services.validator.handler import reply_subject, validate
from services.validator.policy import AttachmentPolicy, StripNotices

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PDF = b"%PDF-1.4\n%%EOF\n"
EXE = b"MZ" + b"\x00" * 62
ZIP = b"PK\x03\x04" + b"\x00" * 26
OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 24
TEXT = b"Hello, please find the notes below.\n"

SIGNATURES = {PNG[:4]: "image/png", PDF[:4]: "application/pdf", ZIP[:4]: "application/zip"}
SIGNATURES |= {EXE[:2]: "application/x-dosexec", OLE[:4]: "application/x-ole-storage"}
SENDER_KEY = "mail-1:attachment_stripped:email:sender"
BELL_KEY = "mail-1:attachment_stripped:bell"
REPS_KEY = "mail-1:attachment_stripped:email:reps"


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


# --- 1. file name ---------------------------------------------------------------------------


UNSAFE_NAMES = [
    *("", "..", "../etc/passwd", "folder/report.pdf", "folder\\report.pdf"),
    *("bell\x07.pdf", "del\x7f.pdf", "c1\x85.pdf"),
    *("invoice\u202egpj.exe.pdf", "isolate\u2066.pdf", "mark\u200f.pdf", "arabic\u061c.pdf"),
    *("CON", "con.txt", "Aux.tar.gz", "nul .pdf", "COM1.pdf", "lpt9", "com\u00b9.pdf"),
    *("what?.pdf", "a<b>.pdf", 'say "hi".pdf', "c:report.pdf", "pipe|.pdf", "star*.pdf"),
    *("report.pdf.", "report.pdf ", "a" * 252 + ".pdf", "\u00e9" * 126 + ".pdf"),
]
KEPT_NAMES = ["Résumé final.pdf", "Übersicht (Entwurf).pdf", "コンサート.pdf"]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_unsafe_file_names_are_invalid(blobs, name):
    assert reason(blobs, name, PDF, "application/pdf") == "invalid_name"


@pytest.mark.parametrize("name", [*KEPT_NAMES, "console.pdf", "COM10.pdf"])
def test_names_with_spaces_accents_and_lookalikes_are_kept(blobs, name):
    assert failure(blobs, name, PDF, "application/pdf") is None


def test_name_at_255_utf8_bytes_is_kept(blobs):
    assert reason(blobs, "a" * 251 + ".pdf", PDF, "application/pdf") is None


def test_invalid_name_message_hides_direction_overrides(blobs):
    found = failure(blobs, "invoice\u202egpj.exe", PDF)
    assert "\u202e" not in found.message
    assert found.message.endswith(".")


def test_missing_name_has_a_readable_message(blobs):
    assert failure(blobs, "", PDF).message == "An attachment without a file name was removed."


# --- 2. extension ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["setup.exe", "RUN.BAT", "invoice.pdf.exe", "invoice.exe.pdf"])
def test_restricted_extensions_anywhere_in_the_name(blobs, name):
    assert reason(blobs, name, PDF, "application/pdf") == "restricted_extension"


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
    found = failure(blobs, "README", TEXT, policy=policy)
    assert found.message == (
        "README was removed because it has no file extension, which is not accepted;"
        " accepted types: .pdf, .png."
    )


def test_empty_allowlist_accepts_any_unrestricted_extension(blobs):
    assert reason(blobs, "notes.md", TEXT) is None
    assert reason(blobs, "photo.heic", PNG) is None


# --- 3. empty and 4. size -------------------------------------------------------------------


def test_empty_file_is_dropped(blobs):
    assert reason(blobs, "blank.pdf", b"", "application/pdf") == "empty"


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
    [out] = run(parsed(big, empty), unread, notices=StripNotices(False, ()))
    assert [s.reason for s in out.stripped] == ["too_large", "empty"]


def test_name_is_checked_before_size(blobs):
    assert reason(blobs, "big.exe", EXE + b"0" * (2 * 1024 * 1024)) == "restricted_extension"


# --- 5. declared type against content -------------------------------------------------------


def test_text_file_holding_png_is_a_mismatch(blobs):
    found = failure(blobs, "photo.txt", PNG, "text/plain")
    assert found.reason == "content_mismatch"
    assert found.message == (
        "photo.txt claims text/plain but its content is image/png, so it was removed."
    )
    assert (found.content_type, found.size) == ("text/plain", len(PNG))


def test_pdf_holding_an_executable_is_a_mismatch(blobs):
    assert reason(blobs, "report.pdf", EXE, "application/pdf") == "content_mismatch"


def test_declared_type_alone_can_mismatch(blobs):
    assert reason(blobs, "scan", PNG, "application/pdf") == "content_mismatch"


@pytest.mark.parametrize(
    ("name", "data", "declared"),
    [
        ("photo.png", PNG, "image/png"),
        ("photo.jpg", PNG, "image/jpeg"),  # same major type: a mislabelled image is harmless
        ("report.pdf", PDF, "application/pdf; name=report.pdf"),
        ("report.pdf", PDF, "application/octet-stream"),
        ("data.csv", TEXT, "text/csv"),
        ("data.json", TEXT, "application/json"),
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


def test_only_the_first_8_kib_are_sniffed(blobs):
    seen: list[int] = []

    def sniff(data: bytes) -> str:
        seen.append(len(data))
        return "application/pdf"

    att = attachment(blobs, "long.pdf", PDF + b"0" * 20_000, "application/pdf")
    assert checks.check_content(att, blobs.get(att.sha256), sniff) is None
    assert seen == [checks.SNIFF_BYTES]


# --- handler --------------------------------------------------------------------------------


def test_mail_without_attachments_passes_through_unchanged(blobs):
    msg = parsed()
    [out] = run(msg, blobs)
    assert isinstance(out, MailValidated)
    assert out.mail == msg.mail
    assert out.stripped == []
    envelope = ("mail_id", "helpdesk", "source", "raw_blob")
    assert [getattr(out, f) for f in envelope] == [getattr(msg, f) for f in envelope]


def test_good_attachments_are_kept_and_bad_ones_stripped(blobs):
    good = attachment(blobs, "Résumé final.pdf", PDF, "application/pdf")
    bad = attachment(blobs, "photo.txt", PNG, "text/plain")
    out = run(parsed(good, bad), blobs)[0]
    assert out.mail.attachments == [good]
    assert [(s.filename, s.reason) for s in out.stripped] == [("photo.txt", "content_mismatch")]
    assert out.mail.subject == "Printer on fire"


def test_inline_attachments_are_checked_too(blobs):
    logo = attachment(blobs, "logo.png", EXE, "image/png", inline=True, content_id="<logo@x>")
    out = run(parsed(logo), blobs)[0]
    assert out.mail.attachments == []
    assert out.stripped[0].reason == "content_mismatch"


def test_missing_blob_is_a_mail_error(blobs):
    ghost = Attachment(filename="a.pdf", content_type="application/pdf", size=10, sha256="0" * 64)
    with pytest.raises(MailError):
        run(parsed(ghost), blobs)


def notices_of(outputs) -> dict[str, Notify]:
    return {n.key: n for n in outputs if isinstance(n, Notify)}


def test_stripping_tells_sender_and_support_reps(blobs):
    bad = attachment(blobs, "photo.txt", PNG, "text/plain")
    sent = notices_of(run(parsed(bad), blobs))
    assert set(sent) == {SENDER_KEY, BELL_KEY, REPS_KEY}
    sender = sent[SENDER_KEY]
    assert (sender.channel, sender.to) == ("email", ["heather@zylker.com"])
    assert sender.topic == "attachment_stripped"
    assert sender.subject == "Re: Printer on fire"
    assert sender.in_reply_to == "<m1@example.com>"
    assert "photo.txt claims text/plain but its content is image/png" in sender.body
    for n in sent.values():
        assert (n.mail_id, n.helpdesk) == ("mail-1", "default")


def test_support_reps_get_a_bell_and_an_email_naming_sender_subject_and_files(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    sent = notices_of(run(parsed(bad), blobs))
    bell = sent[BELL_KEY]
    mail = sent[REPS_KEY]
    assert (bell.channel, mail.channel) == ("bell", "email")
    for n in (bell, mail):
        assert n.to == ["reps@example.com", "lead@example.com"]
        assert "heather@zylker.com" in n.subject
        assert "Printer on fire" in n.subject
        assert "setup.exe" in n.body


def test_sender_notice_goes_to_reply_to_first(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    msg = parsed(bad, reply_to=[Address(email="desk@zylker.com"), Address(email="x@zylker.com")])
    sender = notices_of(run(msg, blobs))[SENDER_KEY]
    assert sender.to == ["desk@zylker.com"]


def test_auto_reply_sender_is_never_answered(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    sent = notices_of(run(parsed(bad, auto_reply=True), blobs))
    assert set(sent) == {BELL_KEY, REPS_KEY}


def test_mail_without_sender_only_tells_the_reps(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    sent = notices_of(run(parsed(bad, from_=None), blobs))
    assert SENDER_KEY not in sent
    assert "an unknown sender" in sent[BELL_KEY].subject


def test_no_support_reps_means_only_the_sender_is_told(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    sent = notices_of(run(parsed(bad), blobs, notices=StripNotices(True, ())))
    assert set(sent) == {SENDER_KEY}


def test_disabled_notices_send_nothing_but_still_strip(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    out = run(parsed(bad), blobs, notices=StripNotices(False, ("reps@example.com",)))
    assert len(out) == 1
    assert out[0].stripped[0].reason == "restricted_extension"


def test_nothing_stripped_means_no_notices(blobs):
    good = attachment(blobs, "report.pdf", PDF, "application/pdf")
    assert len(run(parsed(good), blobs)) == 1


def test_same_input_gives_the_same_outputs(blobs):
    bad = attachment(blobs, "photo.txt", PNG, "text/plain")
    msg = parsed(bad, attachment(blobs, "ok.pdf", PDF, "application/pdf"))
    volatile = {"message_id", "occurred_at"}
    first, second = run(msg, blobs), run(msg, blobs)
    assert [m.model_dump(exclude=volatile) for m in first] == [
        m.model_dump(exclude=volatile) for m in second
    ]


def test_reply_subject_never_doubles_re():
    assert reply_subject("Printer on fire") == "Re: Printer on fire"
    assert reply_subject("Re: Printer on fire") == "Re: Printer on fire"
    assert reply_subject("RE: Printer") == "RE: Printer"
    assert reply_subject("") == "Re: (no subject)"
