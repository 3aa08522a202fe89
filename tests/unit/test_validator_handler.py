"""The validator's handler: what is kept (inline parts too), what is stripped, who is told."""

from __future__ import annotations

import pytest
from test_validator import (
    EXE,
    NOTICES,
    PDF,
    PNG,
    POLICY,
    attachment,
    fake_sniff,
    parsed,
    run,
)

from contracts.mail import Address, Attachment, MailValidated
from contracts.notify import Notify
from contracts.settings import AttachmentSettings, NotificationSettings
from services.runtime.addresses import AddressSet
from services.runtime.errors import MailError
from services.runtime.testing import InMemoryBlobStore
from services.validator import checks
from services.validator.handler import validate
from services.validator.notices import is_automated, reply_subject, sender_to_tell
from services.validator.policy import AttachmentPolicy, StripNotices

SENDER_KEY = "mail-1:attachment_stripped:email:sender"
BELL_KEY = "mail-1:attachment_stripped:bell"
REPS_KEY = "mail-1:attachment_stripped:email:reps"


@pytest.fixture
def blobs() -> InMemoryBlobStore:
    return InMemoryBlobStore()


def notices_of(outputs) -> dict[str, Notify]:
    return {n.key: n for n in outputs if isinstance(n, Notify)}


# --- kept and stripped ----------------------------------------------------------------------


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


def test_missing_blob_is_a_mail_error(blobs):
    ghost = Attachment(filename="a.pdf", content_type="application/pdf", size=10, sha256="0" * 64)
    with pytest.raises(MailError):
        run(parsed(ghost), blobs)


# --- inline parts ---------------------------------------------------------------------------


def test_fine_inline_image_stays_inline_and_is_not_counted(blobs):
    logo = attachment(blobs, "image001.png", PNG, "image/png", inline=True, content_id="logo@x")
    report = attachment(blobs, "report.pdf", PDF, "application/pdf")
    outputs = run(parsed(logo, report), blobs)
    [out] = outputs  # no notices either
    assert out.mail.attachments == [logo, report]
    assert out.mail.attachments[0].inline
    assert out.mail.attachments[0].content_id == "logo@x"
    assert out.stripped == []


def test_inline_image_that_is_really_a_program_is_stripped(blobs):
    logo = attachment(blobs, "logo.png", EXE, "image/png", inline=True, content_id="logo@x")
    outputs = run(parsed(logo), blobs)
    out = outputs[0]
    assert out.mail.attachments == []
    [stripped] = out.stripped
    assert stripped.reason == "content_mismatch"
    assert stripped.message == (
        "logo.png was removed because its content is a Windows program, not a PNG image as its"
        " .png extension says."
    )
    assert set(notices_of(outputs)) == {SENDER_KEY, BELL_KEY, REPS_KEY}


def test_inline_parts_take_the_allowlist_like_any_attachment(blobs):
    policy = AttachmentPolicy.from_settings(AttachmentSettings(allowed_extensions=["pdf"]))
    logo = attachment(blobs, "image001.png", PNG, "image/png", inline=True, content_id="l@x")
    out = run(parsed(logo), blobs, policy=policy)[0]
    assert [s.reason for s in out.stripped] == ["extension_not_allowed"]


# --- reading only the head of a blob --------------------------------------------------------


class NoWholeBlobs(InMemoryBlobStore):
    """A blob store that refuses to hand out whole blobs."""

    def get(self, sha256: str) -> bytes:
        raise AssertionError("the whole blob was read")


def test_head_reader_is_used_instead_of_whole_blobs():
    store = NoWholeBlobs()
    asked: list[tuple[str, int]] = []

    def read_head(sha256: str, n: int) -> bytes:
        asked.append((sha256, n))
        return store.blobs[sha256][:n]

    big = attachment(store, "big.pdf", PDF + b"0" * 100_000, "application/pdf")
    bad = attachment(store, "photo.txt", PNG, "text/plain")
    out = validate(
        parsed(big, bad),
        policy=POLICY,
        notices=NOTICES,
        blobs=store,
        sniff=fake_sniff,
        read_head=read_head,
    )[0]
    assert [a.filename for a in out.mail.attachments] == ["big.pdf"]
    assert [s.reason for s in out.stripped] == ["content_mismatch"]
    assert asked == [(big.sha256, checks.SNIFF_BYTES), (bad.sha256, checks.SNIFF_BYTES)]


def test_a_file_that_claims_no_type_is_neither_read_nor_sniffed():
    store = NoWholeBlobs()
    asked: list[str] = []

    def read_head(sha256: str, n: int) -> bytes:
        asked.append(sha256)
        return store.blobs[sha256][:n]

    def sniff(data: bytes) -> str:
        raise AssertionError("sniffed")

    # An extension that names no type, and the vague type mail programs send it with.
    capture = attachment(store, "run.pcapng42", PDF, "application/octet-stream")
    out = validate(
        parsed(capture),
        policy=POLICY,
        notices=NOTICES,
        blobs=store,
        sniff=sniff,
        read_head=read_head,
    )[0]
    assert out.mail.attachments == [capture]
    assert asked == []


def test_missing_blob_from_the_head_reader_is_a_mail_error(blobs):
    ghost = Attachment(filename="a.pdf", content_type="application/pdf", size=10, sha256="0" * 64)

    def read_head(sha256: str, n: int) -> bytes:
        raise KeyError(sha256)

    with pytest.raises(MailError, match="missing from the store"):
        validate(
            parsed(ghost),
            policy=POLICY,
            notices=NOTICES,
            blobs=blobs,
            sniff=fake_sniff,
            read_head=read_head,
        )


# --- notices --------------------------------------------------------------------------------


def test_stripping_tells_sender_and_support_reps(blobs):
    bad = attachment(blobs, "photo.txt", PNG, "text/plain")
    sent = notices_of(run(parsed(bad), blobs))
    assert set(sent) == {SENDER_KEY, BELL_KEY, REPS_KEY}
    sender = sent[SENDER_KEY]
    assert (sender.channel, sender.to) == ("email", ["heather@zylker.com"])
    assert sender.topic == "attachment_stripped"
    assert sender.subject == "Re: Printer on fire"
    assert sender.in_reply_to == "<m1@example.com>"
    for n in sent.values():
        assert (n.mail_id, n.helpdesk) == ("mail-1", "default")


def test_notices_name_each_dropped_file_and_why(blobs):
    bad = attachment(blobs, "photo.txt", PNG, "text/plain")
    exe = attachment(blobs, "setup.exe", EXE)
    sender = notices_of(run(parsed(bad, exe), blobs))[SENDER_KEY]
    assert sender.body == (
        "Hello,\n\n"
        'We received your mail "Printer on fire", but removed these attachments from it:\n\n'
        "- photo.txt was removed because its content is a PNG image, not plain text as its"
        " .txt extension says.\n"
        "- setup.exe was removed because files of type .exe are not accepted.\n\n"
        "The rest of your mail reached the help desk. If the files are needed, please send"
        " them again in a form the help desk accepts.\n"
    )


def test_support_reps_get_a_bell_and_an_email_naming_sender_subject_and_files(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    sent = notices_of(run(parsed(bad), blobs))
    bell = sent[BELL_KEY]
    mail = sent[REPS_KEY]
    assert (bell.channel, mail.channel) == ("bell", "email")
    for n in (bell, mail):
        assert n.to == ["reps@example.com", "lead@example.com"]
        assert (
            n.subject
            == '1 attachment removed from "Printer on fire" from Heather <heather@zylker.com>'
        )
        assert "setup.exe was removed because files of type .exe are not accepted." in n.body


def test_sender_notice_goes_to_reply_to_first(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    msg = parsed(bad, reply_to=[Address(email="desk@zylker.com"), Address(email="x@zylker.com")])
    sender = notices_of(run(msg, blobs))[SENDER_KEY]
    assert sender.to == ["desk@zylker.com"]


def test_auto_reply_sender_is_never_answered(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    sent = notices_of(run(parsed(bad, auto_reply=True), blobs))
    assert set(sent) == {BELL_KEY, REPS_KEY}


def test_mailing_list_mail_is_never_answered(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    sent = notices_of(run(parsed(bad, mailing_list=True), blobs))
    assert set(sent) == {BELL_KEY, REPS_KEY}


@pytest.mark.parametrize(
    "address",
    [
        "MAILER-DAEMON@mx.zylker.com",
        "mailer-daemon@zylker.com",
        "postmaster@zylker.com",
        "noreply@zylker.com",
        "no-reply+billing@zylker.com",
        "DoNotReply@zylker.com",
        "do-not-reply@zylker.com",
    ],
)
def test_mail_systems_and_no_reply_senders_are_not_answered(blobs, address):
    bad = attachment(blobs, "setup.exe", EXE)
    sent = notices_of(run(parsed(bad, from_=Address(name="Mail System", email=address)), blobs))
    assert set(sent) == {BELL_KEY, REPS_KEY}


def test_bounce_with_a_reply_to_is_not_answered_either(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    msg = parsed(
        bad,
        from_=Address(email="MAILER-DAEMON@mx.zylker.com"),
        reply_to=[Address(email="heather@zylker.com")],
    )
    assert SENDER_KEY not in notices_of(run(msg, blobs))


@pytest.mark.parametrize(
    ("address", "automated"),
    [
        ("mailer-daemon@x.com", True),
        ("MAILER-DAEMON", True),
        ("Postmaster@x.com", True),
        ("", True),
        ("heather@zylker.com", False),
        ("mailer@x.com", False),
        ("replies@x.com", False),
        ("noreplyhere@x.com", False),
    ],
)
def test_is_automated(address, automated):
    assert is_automated(address) is automated


def test_mail_without_sender_only_tells_the_reps(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    sent = notices_of(run(parsed(bad, from_=None), blobs))
    assert SENDER_KEY not in sent
    assert "an unknown sender" in sent[BELL_KEY].subject


def test_empty_sender_address_only_tells_the_reps(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    sent = notices_of(run(parsed(bad, from_=Address(email="")), blobs))
    assert set(sent) == {BELL_KEY, REPS_KEY}


def test_own_mailbox_address_is_never_told(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    notices = StripNotices.from_settings(
        NotificationSettings(support_reps=["reps@example.com"]),
        own_addresses=["support@example.com", "Help@Example.com"],
    )
    msg = parsed(bad, reply_to=[Address(email="help@example.com")])
    sent = notices_of(run(msg, blobs, notices=notices))
    assert set(sent) == {BELL_KEY, REPS_KEY}


def test_sender_to_tell_checks_the_reply_address_against_own_addresses():
    msg = parsed(from_=Address(email="SUPPORT@example.com"))
    assert sender_to_tell(msg, AddressSet.of(["support@example.com"])) is None
    assert sender_to_tell(msg) == "SUPPORT@example.com"


def test_no_support_reps_means_only_the_sender_is_told(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    sent = notices_of(run(parsed(bad), blobs, notices=StripNotices(True, ())))
    assert set(sent) == {SENDER_KEY}


def test_disabled_notices_send_nothing_but_still_strip(blobs):
    bad = attachment(blobs, "setup.exe", EXE)
    out = run(parsed(bad), blobs, notices=StripNotices(False, ("reps@example.com",)))
    assert len(out) == 1
    assert out[0].stripped[0].reason == "restricted_extension"


def test_notices_are_on_by_default():
    assert StripNotices.from_settings(NotificationSettings()).enabled


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
