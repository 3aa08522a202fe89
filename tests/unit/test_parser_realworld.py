"""The parser on real-world mail: broken encodings, wrong charsets, Outlook and S/MIME quirks.

Each test reads either a file of the shared corpus (public test mails of other mail
projects) or, where the corpus has no such mail, a sample in ``tests/unit/mails/`` written to
look like what the named mail program sends; each docstring says which.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from contracts.mail import Address, Attachment, MailFetched, MailParsed, SourceRef
from services.parser.handler import parse
from services.runtime.testing import InMemoryBlobStore

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
SAMPLES = Path(__file__).resolve().parent / "mails"


def parsed(path: Path) -> tuple[MailParsed, InMemoryBlobStore]:
    return parsed_bytes(path.read_bytes())


def parsed_bytes(raw: bytes) -> tuple[MailParsed, InMemoryBlobStore]:
    blobs = InMemoryBlobStore()
    msg = MailFetched(
        mail_id="m-1",
        helpdesk="default",
        source=SourceRef(mailbox="support", ref="1"),
        raw_blob=blobs.put(raw),
        size=len(raw),
    )
    [out] = parse(msg, blobs=blobs)
    assert isinstance(out, MailParsed)
    return out, blobs


def text(out: MailParsed, blobs: InMemoryBlobStore) -> str:
    assert out.mail.body_text_blob is not None
    return blobs.get(out.mail.body_text_blob).decode("utf-8")


def named(out: MailParsed) -> dict[str, Attachment]:
    return {a.filename: a for a in out.mail.attachments}


# 1. RFC 2047 encoded words and RFC 2231 parameters


def test_a_character_split_across_two_encoded_words_comes_out_whole() -> None:
    """Sample: a PHP mailer that cuts base64 words every few bytes, mid-character; its From
    name is in an encoded word with the charset label ``unknown-8bit``, as sendmail writes."""
    out, _ = parsed(SAMPLES / "subject-split-word.eml")

    assert out.mail.subject == "Принтер на третьем этаже"
    assert out.mail.from_ == Address(name="José García", email="jose@example.com")


def test_an_encoded_word_without_its_closing_mark_is_still_decoded() -> None:
    """Sample: a webmail that truncated the Subject and display name after the encoded text."""
    out, _ = parsed(SAMPLES / "subject-unterminated-word.eml")

    assert out.mail.subject == "Réunion annulée demain"
    assert out.mail.from_ == Address(name="Zürich Helpdesk", email="zh@example.com")


def test_an_encoded_word_in_a_charset_that_does_not_exist_is_read_and_recorded() -> None:
    """Corpus: ``=?none?Q?...?=`` in the Subject."""
    out, _ = parsed(CORPUS / "mikel-mail/error_emails/bad_encoded_subject.eml")

    assert out.mail.subject == "TEST"
    assert "header Subject: text in unknown or wrong charset 'none'; read leniently" in (
        out.mail.defects
    )


def test_a_subject_in_many_padded_base64_words_is_joined() -> None:
    """Corpus: a Subject folded over several base64 words, each padded on its own."""
    out, _ = parsed(CORPUS / "mikel-mail/error_emails/bad_subject.eml")

    assert out.mail.subject == "MySurvey.com: You have a survey waiting! 91123105"


def test_rfc2231_file_names_with_charset_language_and_continuations() -> None:
    """Sample: Thunderbird's long non-ASCII file name (``filename*0*=UTF-8''...`` sections,
    ``name`` as RFC 2047 words) and a file name with a language (``iso-8859-1'de'``)."""
    out, blobs = parsed(SAMPLES / "filename-rfc2231.eml")

    pdf, txt = out.mail.attachments
    assert pdf.filename == "Übersicht der Rechnungen für das Jahr 2025 – Teil 1.pdf"
    assert blobs.get(pdf.sha256) == b"%PDF-1.4 invoices"
    assert txt.filename == "Grüße.txt"


def test_rfc2231_continued_japanese_file_name() -> None:
    """Corpus: Apple Mail's continued UTF-8 file name."""
    out, _ = parsed(CORPUS / "mikel-mail/multi_charset/japanese_attachment_long_name.eml")

    assert [a.filename for a in out.mail.attachments] == [
        "かきくけこかきくけこかきくけこかきくけこかきくけこ.txt"
    ]


# 2. Wrong, missing or unknown charsets


def test_utf8_declared_over_cp1252_text_is_repaired_and_recorded() -> None:
    """Sample: an old Outlook mail relayed by a list that relabelled it as UTF-8."""
    out, blobs = parsed(SAMPLES / "charset-utf8-declared-cp1252.eml")

    body = text(out, blobs)
    assert "Können Sie bitte jemanden schicken?" in body
    assert body.endswith("Mit freundlichen Grüßen\nJürgen Müller\n")
    assert out.mail.defects == ["charset: text/plain declared 'utf-8' but decoded as 'cp1252'"]


def test_us_ascii_declared_over_cp1251_text_is_repaired_and_recorded() -> None:
    """Sample: a Russian mail whose client declared us-ascii over windows-1251 bytes."""
    out, blobs = parsed(SAMPLES / "charset-ascii-declared-cp1251.eml")

    assert text(out, blobs).startswith("Здравствуйте!\n\nПринтер на третьем этаже не работает.")
    assert out.mail.defects == ["charset: text/plain declared 'us-ascii' but decoded as 'cp1251'"]


def test_an_unknown_charset_is_detected_and_recorded() -> None:
    """Corpus: ``charset=x-unknown`` from a mobile text-message gateway."""
    out, blobs = parsed(CORPUS / "mikel-mail/plain_emails/raw_email10.eml")

    assert "Envoyé par le service de messagerie texte de Bell Mobilité." in text(out, blobs)
    assert out.mail.defects == [
        "charset: text/plain declared unknown charset 'x-unknown'; decoded as 'utf-8'"
    ]


def test_a_repaired_mail_keeps_its_original_bytes_in_the_raw_blob() -> None:
    """Sample: as above; the claim check of the raw mail still names the bytes as sent."""
    path = SAMPLES / "charset-utf8-declared-cp1252.eml"
    out, blobs = parsed(path)

    assert blobs.get(out.raw_blob) == path.read_bytes()


# 3. Raw 8-bit bytes in headers


def test_raw_latin1_bytes_in_the_subject_are_read_and_recorded() -> None:
    """Corpus: a Portuguese newsletter with an unencoded ISO-8859-1 Subject."""
    out, _ = parsed(CORPUS / "mikel-mail/error_emails/invalid_subject_characters.eml")

    subject = "Formação FrenetikPolis: Mega Campanha Final Verão | Cursos de Setembro"
    assert out.mail.subject == subject
    assert "header Subject: raw 8-bit bytes that are not UTF-8; read as cp1252" in (
        out.mail.defects
    )


def test_raw_utf8_headers_are_read_as_rfc_6532_allows() -> None:
    """Corpus: RFC 6532 UTF-8 headers, addresses included."""
    out, _ = parsed(CORPUS / "mikel-mail/rfc6532/utf8_headers.eml")

    assert out.mail.subject == "Säying Hello"
    assert out.mail.from_ is not None and out.mail.from_.email == "jdöe@mächine.example"
    assert not any(d.startswith("header Subject: raw 8-bit") for d in out.mail.defects)


# 4. Forwarded mail


def test_a_forwarded_mail_is_an_eml_attachment() -> None:
    """Corpus: a mail with an attached message/rfc822."""
    out, blobs = parsed(CORPUS / "mikel-mail/attachment_emails/attachment_message_rfc822.eml")

    [forwarded] = out.mail.attachments
    assert (forwarded.filename, forwarded.content_type) == (
        "ForwardedMessage.eml",
        "message/rfc822",
    )
    assert b"\r\nSubject: " in blobs.get(forwarded.sha256)


# 5. Inline pictures


def test_a_picture_the_html_shows_is_inline_without_a_disposition() -> None:
    """Sample: PHPMailer's multipart/related picture with a Content-ID and no
    Content-Disposition; its PDF carries a Content-ID too (as Outlook's do) but is not
    shown by the HTML, so it stays a plain attachment."""
    out, _ = parsed(SAMPLES / "inline-image-no-disposition.eml")

    logo, terms = named(out)["logo.png"], named(out)["terms.pdf"]
    assert (logo.inline, logo.content_id) == (True, "logo.png@shop.example.com")
    assert (terms.inline, terms.content_id) == (False, "terms.pdf@shop.example.com")


def test_a_gmail_inline_picture_is_inline() -> None:
    """Corpus: Gmail's inline picture in a multipart/related HTML body."""
    out, _ = parsed(CORPUS / "mimekit/dkim/related.msg")

    [picture] = out.mail.attachments
    assert (picture.inline, picture.content_id) == (True, "ii_15071bf7ff349334")


# 6. TNEF (winmail.dat)


def test_winmail_dat_is_unpacked_into_its_files() -> None:
    """Corpus: Outlook rich text with a picture, a task and a meeting inside winmail.dat."""
    out, blobs = parsed(CORPUS / "mimekit/tnef/rich-text.eml")

    files = named(out)
    assert list(files) == [
        "kitten-playing-with-a-christmas-tree.jpg",
        "Build a train table.txt",
        "Christmas Celebration!.txt",
    ]
    picture = files["kitten-playing-with-a-christmas-tree.jpg"]
    assert (picture.content_type, picture.size) == ("image/jpeg", 375081)
    assert blobs.get(picture.sha256).startswith(b"\xff\xd8\xff")
    task = blobs.get(files["Build a train table.txt"].sha256).decode()
    assert task.startswith("Build my nephew an HO-scale train table for Christmas.")
    assert "tnef: winmail.dat unpacked into 3 file(s)" in out.mail.defects


def test_winmail_dat_that_holds_only_the_text_is_dropped_and_recorded() -> None:
    """Corpus: an Exchange mail whose winmail.dat repeats the text body, with no files."""
    out, blobs = parsed(CORPUS / "mimekit/tnef/ukr.eml")

    assert out.mail.attachments == []
    assert text(out, blobs).strip()
    assert "tnef: winmail.dat holds no files, only Outlook's copy of the text; dropped" in (
        out.mail.defects
    )


def test_damaged_winmail_dat_is_kept_as_it_came() -> None:
    """Sample: an Outlook mail whose winmail.dat was cut short in transit."""
    out, _ = parsed(SAMPLES / "winmail-damaged.eml")

    [kept] = out.mail.attachments
    assert (kept.filename, kept.content_type, kept.size) == (
        "winmail.dat",
        "application/ms-tnef",
        199,
    )
    assert "tnef: winmail.dat could not be unpacked; kept as it came" in out.mail.defects


# 7. uuencode


def test_a_uuencoded_block_in_the_text_becomes_an_attachment() -> None:
    """Sample: Outlook Express with "uuencode" chosen for attachments."""
    out, blobs = parsed(SAMPLES / "uuencoded-in-text.eml")

    [log] = out.mail.attachments
    assert log.filename == "error.log.gz"
    assert blobs.get(log.sha256) == bytes(range(256)) * 2
    body = text(out, blobs)
    assert body.startswith("Here is the error log from the server.")
    assert body.rstrip().endswith("Thanks, Bob")
    assert "begin 644" not in body and "\nend\n" not in body


def test_an_x_uuencode_part_is_decoded() -> None:
    """Sample: Eudora on a Mac, ``Content-Transfer-Encoding: x-uuencode``."""
    out, blobs = parsed(SAMPLES / "x-uuencode-part.eml")

    [sheet] = out.mail.attachments
    assert (sheet.filename, blobs.get(sheet.sha256)) == ("budget.xls", b"BUDGET" * 30)


def test_an_empty_x_uuencode_part_is_kept_and_recorded() -> None:
    """Corpus: an x-uuencode part whose data a list server removed."""
    out, _ = parsed(CORPUS / "mikel-mail/error_emails/content_transfer_encoding_x_uuencode.eml")

    [doc] = out.mail.attachments
    assert (doc.filename, doc.size) == ("PGP_Cmts_on_12-14-01_Pkg.doc", 0)
    assert (
        "uuencode: PGP_Cmts_on_12-14-01_Pkg.doc holds no complete uuencoded file;"
        " kept as it came" in out.mail.defects
    )


# 8. Calendar invitations


def test_a_calendar_alternative_is_an_ics_attachment_never_the_body() -> None:
    """Sample: a Google Calendar invitation (text, HTML and text/calendar alternatives, plus
    invite.ics)."""
    out, blobs = parsed(SAMPLES / "calendar-invite.eml")

    body = text(out, blobs)
    assert body.startswith("You have been invited to the following event.")
    assert "BEGIN:VCALENDAR" not in body
    assert out.mail.body_html_blob is not None
    assert b"VCALENDAR" not in blobs.get(out.mail.body_html_blob)
    files = named(out)
    assert list(files) == ["calendar-1.ics", "invite.ics"]
    assert files["calendar-1.ics"].content_type == "text/calendar"
    assert blobs.get(files["calendar-1.ics"].sha256).startswith(b"BEGIN:VCALENDAR")


# 9. HTML-only mail


def test_an_html_only_mail_gets_a_text_rendering() -> None:
    """Corpus: MimeKit's HTML body with attachments and no text part."""
    out, blobs = parsed(CORPUS / "mimekit/messages/body.4.txt")

    assert text(out, blobs) == "This is an html body."


# 10. S/MIME


def test_a_signed_mail_keeps_its_content_and_drops_the_signature() -> None:
    """Corpus: Thunderbird S/MIME multipart/signed with a picture. The signature is dropped
    with a defect: it is not something the customer attached, and the raw mail keeps it for
    anyone who wants to verify it."""
    out, blobs = parsed(CORPUS / "mimekit/smime/thunderbird-signed.txt")

    assert text(out, blobs).startswith("This message is being generated and signed by")
    assert [a.filename for a in out.mail.attachments] == ["signed.jpg"]
    assert (
        "signature: smime.p7s (application/pkcs7-signature) of a signed mail dropped;"
        " the signed content is read as usual and the raw mail keeps it" in out.mail.defects
    )


def test_an_encrypted_mail_says_so_and_keeps_the_encrypted_part() -> None:
    """Sample: S/MIME enveloped-data as Outlook and Thunderbird send it (a real PKCS #7
    envelope for a throw-away certificate)."""
    out, blobs = parsed(SAMPLES / "smime-encrypted.eml")

    [p7m] = out.mail.attachments
    assert (p7m.filename, p7m.content_type) == ("smime.p7m", "application/pkcs7-mime")
    assert blobs.get(p7m.sha256).startswith(b"\x30\x82")  # DER: the PKCS #7 ContentInfo
    assert "encrypted" in text(out, blobs) and "smime.p7m" in text(out, blobs)
    assert "smime: the mail is encrypted; its content cannot be read (smime.p7m)" in (
        out.mail.defects
    )


def test_opaque_signed_content_is_kept_and_recorded() -> None:
    """Literal sample: S/MIME signed-data as Outlook sends with "opaque" signing."""
    raw = (
        b"From: a@example.com\r\nSubject: signed\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"\r\n'
        b'Content-Disposition: attachment; filename="smime.p7m"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n"
    )
    out, _ = parsed_bytes(raw)

    assert [a.filename for a in out.mail.attachments] == ["smime.p7m"]
    assert out.mail.body_text_blob is None
    assert "smime: smime.p7m holds opaque-signed content, not unpacked" in out.mail.defects


# 11. Message-ID


def test_a_second_message_id_is_ignored_and_recorded() -> None:
    """Sample: a mail that went through a list server which added its own Message-ID."""
    out, _ = parsed(SAMPLES / "duplicate-message-id.eml")

    assert out.mail.message_id == "<original@mail.example.com>"
    assert out.mail.message_id_synthetic is False
    assert "header Message-ID: appears 2 times; the first one is used" in out.mail.defects


def test_every_sample_parses_the_same_way_twice() -> None:
    """Samples and corpus mails above: parsing is deterministic."""
    for path in sorted(SAMPLES.glob("*.eml")):
        first, _ = parsed(path)
        second, _ = parsed(path)
        assert first.mail == second.mail, path.name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == first.raw_blob
