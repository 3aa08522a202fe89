"""The parser on real-world mail: broken encodings, wrong charsets, Outlook and S/MIME quirks.

Each test reads either a file of the shared corpus (public test mails of other mail
projects) or, where the corpus has no such mail, a sample in ``tests/unit/mails/`` written to
look like what the named mail program sends; each docstring says which.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

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


# 12. Raw 8-bit headers in legacy charsets


def test_raw_gbk_headers_are_read_in_the_charset_the_body_declares() -> None:
    """Sample: a Chinese webmail that writes From and Subject as raw GBK bytes and declares
    gb2312 only on the body."""
    out, blobs = parsed(SAMPLES / "header-gbk-raw.eml")

    assert out.mail.subject == "打印机无法连接网络"
    assert out.mail.from_ == Address(name="王芳", email="wangfang@example.cn")
    assert text(out, blobs) == "您好，三楼的打印机从昨天开始无法连接网络。\n"
    assert "header Subject: raw 8-bit bytes that are not UTF-8; read as gb18030" in (
        out.mail.defects
    )


def test_a_raw_big5_subject_without_any_declared_charset_is_detected() -> None:
    """Sample: a Taiwanese mail with a raw Big5 Subject and no charset anywhere; some of its
    second bytes are ASCII letters."""
    out, _ = parsed(SAMPLES / "header-big5-raw-undeclared.eml")

    assert out.mail.subject == "印表機壞了，請幫忙"


def test_a_raw_shift_jis_header_is_not_read_in_the_bodys_7bit_charset() -> None:
    """Sample: a Japanese mail program that writes raw Shift_JIS headers over an ISO-2022-JP
    body (which cannot hold 8-bit bytes, so the headers are detected)."""
    out, blobs = parsed(SAMPLES / "header-sjis-raw-body-iso2022jp.eml")

    assert out.mail.subject == "請求書について"
    assert out.mail.from_ == Address(name="山田太郎", email="yamada@example.jp")
    assert text(out, blobs) == "お世話になっております。請求書が届いていません。\n"


# 13. Mislabelled and unknown charsets


def test_an_iso_2022_jp_body_declared_as_utf8_is_read_as_iso_2022_jp() -> None:
    """Sample: a gateway that relabelled a 7-bit ISO-2022-JP body as UTF-8 (its escape
    sequences are valid ASCII)."""
    out, blobs = parsed(SAMPLES / "body-iso2022jp-declared-utf8.eml")

    assert out.mail.subject == "パスワードの再設定"
    assert text(out, blobs) == "パスワードを再設定できません。\nよろしくお願いします。\n"
    assert "charset: text/plain declared 'utf-8' but decoded as 'iso2022_jp_2'" in (
        out.mail.defects
    )


@pytest.mark.parametrize(
    ("label", "codec", "words"),
    [
        ("iso-gb2312", "gbk", "发票还没有收到"),
        ("x-gbk", "gbk", "发票还没有收到"),
        ("ks_c_5601-1987", "cp949", "송장을 받지 못했습니다"),
        ("windows-874", "cp874", "ใบแจ้งหนี้ยังไม่มา"),
        ("unicode-1-1-utf-7", "utf-7", "Rechnung für März"),
        ("utf8", "utf-8", "Rechnung für März"),
        ("x-sjis", "cp932", "請求書が届きません"),
        ("cp-1251", "cp1251", "Счёт не пришёл"),
    ],
)
def test_charset_aliases_mail_programs_write_are_known(label: str, codec: str, words: str) -> None:
    """Inline: the labels Outlook, Lotus Notes and old webmails write for common charsets,
    on the Subject (an encoded word) and on the body."""
    encoded = base64.b64encode(words.encode(codec)).decode()
    raw = (
        f"From: a@example.com\r\nSubject: =?{label}?B?{encoded}?=\r\n"
        f"Content-Type: text/plain; charset={label}\r\n\r\n"
    ).encode() + words.encode(codec)

    out, blobs = parsed_bytes(raw)

    assert out.mail.subject == words
    assert text(out, blobs) == words
    assert not any("charset" in d for d in out.mail.defects)


# 14. Broken header blocks and addresses


def test_unindented_continuation_lines_do_not_end_the_header_block() -> None:
    """Sample: a relay that rewrapped a long Thread-Topic without indenting the continuation
    lines; From, Subject and the rest follow them."""
    out, blobs = parsed(SAMPLES / "header-lost-indentation.eml")

    assert out.mail.from_ == Address(name="Anna Berg", email="anna.berg@example.de")
    assert out.mail.subject == "Drucker im dritten Stock"
    assert text(out, blobs) == "Der Drucker druckt nur leere Seiten.\n"


def test_a_line_pasted_above_the_header_block_does_not_hide_it() -> None:
    """Sample: a contact form relay that put "---- Original message ----" above the header,
    whose Received and X-Spam-Status continuations also lost their indentation."""
    out, blobs = parsed(SAMPLES / "header-after-pasted-line.eml")

    assert out.mail.from_ == Address(name="", email="form@example.cz")
    assert out.mail.subject == "Contact form: broken gate"
    assert text(out, blobs) == "The gate at the car park does not open.\n"
    assert "header block: 1 line(s) before the first field dropped" in out.mail.defects


def test_a_garbage_first_from_is_passed_over_for_the_one_with_an_address() -> None:
    """Sample: a spam relay that put ``From: [......]`` before the real From."""
    out, _ = parsed(SAMPLES / "from-garbage-first.eml")

    assert out.mail.from_ == Address(name="Li Wei", email="li.wei@example.cn")
    assert "header From: the first address is not one; li.wei@example.cn is used" in (
        out.mail.defects
    )


def test_a_domain_ending_in_a_dot_is_read_without_it() -> None:
    """Sample: addresses written with the DNS root dot (``<a@yahoo.com.>``)."""
    out, _ = parsed(SAMPLES / "from-trailing-dot-domain.eml")

    assert out.mail.from_ == Address(name="Clara.Wu", email="Clara.Wu@yahoo.com")
    assert out.mail.to == [Address(name="", email="support@example.com")]
    assert out.mail.subject == "Passwort zurücksetzen"


def test_without_an_address_in_from_the_sender_is_read_from_reply_to() -> None:
    """Inline: a bulk mailer that writes ``From: "name" <>`` and a Reply-To."""
    raw = b'From: "=?utf-8?Q?Shop?=" <>\r\nReply-To: <orders@example.com>\r\nSubject: x\r\n\r\nhi'

    out, _ = parsed_bytes(raw)

    assert out.mail.from_ == Address(name="", email="orders@example.com")
    assert "header From: holds no address; the sender is read from Reply-To" in out.mail.defects


# 15. Broken encoded words


def test_an_encoded_word_folded_in_its_middle_is_joined_and_its_end_mark_dropped() -> None:
    """Sample: a mailer that folded the Subject inside an encoded word; the display name has
    an encoded word inside a quoted string."""
    out, _ = parsed(SAMPLES / "subject-broken-words.eml")

    assert out.mail.subject == "Personaländerung zum 1. April"
    assert out.mail.from_ == Address(name="Müller, Jens", email="jens.mueller@example.de")


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("=?UTF-8?Q? Personal=C3=A4nderung?=", "Personaländerung"),
        ("Re: =?utf-8?Q?Gr=C3=BC=C3=9Fe aus Wien?=", "Re: Grüße aus Wien"),
        ("=?iso-8859-1?Q?Frage?_Antwort?=", "Frage? Antwort"),
        ("=?utf-8?Q?Rechnung_M=C3=A4rz?= bezahlt?=", "Rechnung März bezahlt"),
        ("=?utf-8?B?UmVjaG51bmcg?==?utf-8?B?TcOkcno=?=", "Rechnung März"),
    ],
)
def test_broken_encoded_words_are_decoded(subject: str, expected: str) -> None:
    """Inline: literal spaces and "?" inside Q words, a stray end mark, words without the
    space between them."""
    out, _ = parsed_bytes(f"From: a@example.com\r\nSubject: {subject}\r\n\r\nhi".encode())

    assert out.mail.subject == expected


# 16. Which part is the body


def test_html_pieces_after_a_picture_all_stay_in_the_body() -> None:
    """Sample: Apple Mail's HTML-only mail with a picture between two pieces of HTML."""
    out, blobs = parsed(SAMPLES / "html-pieces-after-picture.eml")

    assert text(out, blobs) == "The app shows this error:\nIt started after the update."
    assert [a.filename for a in out.mail.attachments] == ["error.png"]


def test_a_named_text_part_beside_an_html_body_is_an_attachment_not_the_body() -> None:
    """Sample: a crash.log sent as ``text/plain; name=...`` without a disposition."""
    out, blobs = parsed(SAMPLES / "readme-beside-html-body.eml")

    assert text(out, blobs) == "The crash log is attached."
    [log] = out.mail.attachments
    assert log.filename == "crash.log"
    assert blobs.get(log.sha256) == b"Traceback: NullPointerException at line 42"


@pytest.mark.parametrize("charset", ["utf-16", "utf-32-be", "iso-2022-jp", "idna"])
def test_a_file_name_in_a_charset_the_stdlib_cannot_read_does_not_break_the_mail(
    charset: str,
) -> None:
    """Inline: RFC 2231 file names whose charset makes the stdlib's header parser raise on
    every later look at the part (its content type, whether it is the body)."""
    raw = (
        "From: a@example.com\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
        f"--b\r\nContent-Type: application/pdf; name*={charset}''%1B%41\r\n"
        f"Content-Disposition: attachment; filename*={charset}''%1B%41\r\n\r\nPDF\r\n--b--\r\n"
    ).encode()

    out, blobs = parsed_bytes(raw)

    assert text(out, blobs) == "body"
    [pdf] = out.mail.attachments
    assert (pdf.content_type, blobs.get(pdf.sha256)) == ("application/pdf", b"PDF")


def test_a_multipart_mail_with_nothing_after_its_header_is_read_without_a_body() -> None:
    """Inline: a spam filter's copy that kept only the header of a multipart mail."""
    raw = (
        b"From: Ann <ann@example.com>\r\nSubject: only a header\r\n"
        b'Content-Type: multipart/mixed; boundary="gone"\r\n'
    )

    out, _ = parsed_bytes(raw)

    assert (out.mail.from_, out.mail.subject) == (
        Address(name="Ann", email="ann@example.com"),
        "only a header",
    )
    assert out.mail.body_text_blob is None
    assert out.mail.attachments == []


def test_the_space_between_two_encoded_words_of_a_name_is_dropped() -> None:
    """Inline: a name in two encoded words of different charsets (RFC 2047 §6.2)."""
    raw = (
        b"From: =?windows-1252?Q?Hans_B=C4KO?= =?iso-8859-15?q?Sch=F6nland?= <me@example.de>\r\n"
        b"Subject: x\r\n\r\nhi"
    )

    out, _ = parsed_bytes(raw)

    assert out.mail.from_ == Address(name="Hans BÄKOSchönland", email="me@example.de")
    assert not any("encoded-word" in d for d in out.mail.defects)


# 17. Text and HTML parts shown one after the other


def mixed_mail(*parts: tuple[str, str]) -> bytes:
    """A multipart/mixed mail whose parts are inline text of the given subtypes."""
    head = (
        "From: ann@example.com\r\nSubject: signature\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    )
    body = "".join(
        f"--b\r\nContent-Type: text/{kind}; charset=utf-8\r\n\r\n{content}\r\n"
        for kind, content in parts
    )
    return (head + body + "--b--\r\n").encode()


@pytest.mark.parametrize(
    ("parts", "shown"),
    [
        (
            [("plain", "The printer is jammed."), ("html", "<p><b>Ann</b> – Facilities</p>")],
            ["The printer is jammed.", "Ann – Facilities"],
        ),
        (
            [("html", "<h1>The printer is jammed.</h1>"), ("plain", "-- \nAnn, Facilities")],
            ["The printer is jammed.", "Ann, Facilities"],
        ),
        (
            [("html", "<p>Hello</p>"), ("plain", "the text"), ("html", "<p>Signature</p>")],
            ["Hello", "the text", "Signature"],
        ),
    ],
)
def test_text_and_html_parts_one_after_the_other_are_all_body_in_order(
    parts: list[tuple[str, str]], shown: list[str]
) -> None:
    """Inline: a text mail to which a gateway added an HTML signature, an HTML mail with a
    text footer, as multipart/mixed (no alternatives), as mail programs show them."""
    out, blobs = parsed_bytes(mixed_mail(*parts))

    body = text(out, blobs)
    positions = [body.find(piece) for piece in shown]
    assert -1 not in positions, body
    assert positions == sorted(positions)
    assert "<" not in body


def test_an_alternative_beside_an_html_footer_shows_its_text_then_the_footer() -> None:
    """Inline: a list server that appends an HTML footer after a text/HTML alternative."""
    raw = (
        b"From: ann@example.com\r\nSubject: x\r\n"
        b'Content-Type: multipart/mixed; boundary="out"\r\n\r\n'
        b'--out\r\nContent-Type: multipart/alternative; boundary="alt"\r\n\r\n'
        b"--alt\r\nContent-Type: text/plain\r\n\r\nplain version\r\n"
        b"--alt\r\nContent-Type: text/html\r\n\r\n<p>html version</p>\r\n--alt--\r\n"
        b"--out\r\nContent-Type: text/html\r\n\r\n<p>list footer</p>\r\n--out--\r\n"
    )

    out, blobs = parsed_bytes(raw)

    body = text(out, blobs)
    assert "plain version" in body and "list footer" in body
    assert "html version" not in body


# 18. A multipart that is no multipart


def test_a_mail_declared_multipart_that_holds_only_text_is_read_as_that_text() -> None:
    """Inline: an old Apple Mail message declared multipart/mixed whose boundary never
    occurs: its body is quoted-printable Latin-1 text, without charset."""
    raw = (
        b"From: Martin <martin@example.com>\r\nSubject: =?iso-8859-1?Q?Gr=FC=DFe?=\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b'Content-Type: multipart/mixed; boundary="----_=_NextPart_000_03BED81D"\r\n\r\n'
        b"=E4=F6=FC=DF ad asd\r\n\r\n-Martin\r\n\r\n--\r\nOld programmers never die.\r\n"
    )

    out, blobs = parsed_bytes(raw)

    assert (out.mail.from_, out.mail.subject) == (
        Address(name="Martin", email="martin@example.com"),
        "Grüße",
    )
    assert text(out, blobs).startswith("äöüß ad asd\n\n-Martin")
    assert any("holds no parts" in d for d in out.mail.defects)


def test_a_few_latin1_letters_without_charset_are_read_as_letters() -> None:
    """Inline: a short note in Latin-1 that declares no charset, and nothing else in the mail
    names one; detection alone reads such few bytes as hanzi or as Mac Roman symbols."""
    raw = b"From: a@example.com\r\nSubject: x\r\n\r\n\xe4\xf6\xfc\xdf ad asd\r\n\r\n-Martin\r\n"

    out, blobs = parsed_bytes(raw)

    assert text(out, blobs).startswith("äöüß ad asd")


def test_a_part_without_charset_is_read_in_the_charset_its_sibling_declares() -> None:
    """Inline: a Hebrew mail whose HTML part declares windows-1255 and whose text part
    declares nothing; a few Hebrew bytes alone are too little to detect."""
    words = "שלום, דוד".encode("cp1255")
    raw = (
        b"From: a@example.com\r\nSubject: x\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\n" + words + b"\r\n"
        b"--b\r\nContent-Type: text/html; charset=windows-1255\r\n\r\n<p>" + words + b"</p>\r\n"
        b"--b--\r\n"
    )

    out, blobs = parsed_bytes(raw)

    assert text(out, blobs).startswith("שלום, דוד")


# 19. Names of attachments that have none


def test_unnamed_report_parts_are_named_by_their_description_or_their_kind() -> None:
    """Inline: a Postfix bounce (its parts carry Content-Description) and a Gmail delay
    notice (they carry none)."""
    status = b"Reporting-MTA: dns; mx.example.com\r\n\r\nFinal-Recipient: rfc822; a@example.org\r\n"
    raw = (
        b"From: MAILER-DAEMON <postmaster@example.com>\r\nSubject: Undelivered Mail\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        b"--r\r\nContent-Type: text/plain\r\n\r\nYour mail could not be delivered.\r\n"
        b"--r\r\nContent-Description: Delivery report\r\n"
        b"Content-Type: message/delivery-status\r\n\r\n" + status + b"--r\r\n"
        b"Content-Type: message/delivery-status\r\n\r\n" + status + b"--r--\r\n"
    )

    out, _ = parsed_bytes(raw)

    assert [a.filename for a in out.mail.attachments] == [
        "Delivery report.txt",
        "delivery-status.txt",
    ]


# 20. Addresses without angle brackets


@pytest.mark.parametrize(
    ("value", "sender"),
    [
        ("Test test@example.com", Address(name="Test", email="test@example.com")),
        ("Ann Lee ann.lee@example.com", Address(name="Ann Lee", email="ann.lee@example.com")),
        ("=?utf-8?Q?J=C3=B6rg?= joerg@example.de", Address(name="Jörg", email="joerg@example.de")),
        ("plain@example.com", Address(name="", email="plain@example.com")),
        ('"Lee, Ann" ann.lee@example.com', Address(name="Lee, Ann", email="ann.lee@example.com")),
        (
            "MAILER-DAEMON@example.com (Mail Delivery System)",
            Address(name="Mail Delivery System", email="MAILER-DAEMON@example.com"),
        ),
        ("jörg@example.de (Jörg)", Address(name="Jörg", email="jörg@example.de")),
    ],
)
def test_a_name_beside_an_address_without_brackets_is_the_name(value: str, sender: Address) -> None:
    """Inline: a fax gateway that writes ``From: Name address`` without angle brackets, and
    a bounce from an old MTA that writes the name as a comment after the address."""
    out, _ = parsed_bytes(f"From: {value}\r\nSubject: fax\r\n\r\nhi".encode())

    assert out.mail.from_ == sender


# 21. ISO-2022-JP with Windows characters


def windows_iso2022jp(text: str) -> bytes:
    """``text`` written as Outlook writes ISO-2022-JP: cp932 pairs turned into JIS pairs."""
    out = bytearray(b"\x1b$B")
    for char in text:
        lead, trail = char.encode("cp932")
        first = (lead - (0x70 if lead <= 0x9F else 0xB0)) * 2 - 1
        if trail >= 0x9F:
            first, second = first + 1, trail - 0x7E
        else:
            second = trail - (0x20 if trail >= 0x80 else 0x1F)
        out += bytes((first, second))
    return bytes(out + b"\x1b(B")


def test_iso2022jp_with_windows_characters_is_read_in_full() -> None:
    """Inline: a Japanese Outlook mail with a circled number and a company sign (①, ㈱) in
    its ISO-2022-JP subject and text, which the standard charset does not hold."""
    words = "①株式会社㈱の件"
    subject = base64.b64encode(windows_iso2022jp(words)).decode()
    raw = (
        (
            f"From: a@example.jp\r\nSubject: =?ISO-2022-JP?B?{subject}?=\r\n"
            "Content-Type: text/plain; charset=ISO-2022-JP\r\n\r\n"
        ).encode()
        + windows_iso2022jp(words)
        + b"\r\n"
    )

    out, blobs = parsed_bytes(raw)

    assert out.mail.subject == words
    assert text(out, blobs).startswith(words)


def test_raw_gbk_headers_over_a_latin1_text_part_are_read_as_gbk() -> None:
    """Inline: SpamAssassin's report on a Chinese spam: its own text part is Latin-1, the
    headers it kept are raw GBK; the attached original declares gb2312 later."""
    raw = (
        'From: "武兰成" <sender@example.com>\r\nSubject: 转发：整体提升企业服务水平\r\n'
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nSpam erkannt.\r\n"
        "--b\r\nContent-Type: message/rfc822\r\n\r\n"
        "Subject: x\r\nContent-Type: text/plain; charset=gb2312\r\n\r\nx\r\n--b--\r\n"
    ).encode("gbk")

    out, _ = parsed_bytes(raw)

    assert out.mail.subject == "转发：整体提升企业服务水平"
    assert out.mail.from_ == Address(name="武兰成", email="sender@example.com")


def test_an_x_uuencode_part_without_begin_and_end_lines_is_decoded() -> None:
    """Inline: Eudora's x-uuencode part as a list server passed it on: only the encoded
    lines, the header saying the rest."""
    raw = (
        b'From: a@example.com\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nAttached.\r\n--b\r\n"
        b'Content-Type: application/msword; name="notes.txt"\r\n'
        b"Content-Transfer-Encoding: x-uuencode\r\n\r\n,0G5D9V5T(#(P,#(N\r\n`\r\n--b--\r\n"
    )

    out, blobs = parsed_bytes(raw)

    [notes] = out.mail.attachments
    assert (notes.filename, blobs.get(notes.sha256)) == ("notes.txt", b"Budget 2002.")


@pytest.mark.parametrize(
    ("value", "sender"),
    [
        ('"john smith"@example.com', Address(name="", email='"john smith"@example.com')),
        ('John <"john smith"@example.com>', Address(name="John", email='"john smith"@example.com')),
    ],
)
def test_a_quoted_local_part_with_a_space_is_the_sender(value: str, sender: Address) -> None:
    """Inline: an address whose local part is a quoted string with a space (RFC 5322
    §3.4.1), in a mail that also has a Reply-To."""
    raw = f"From: {value}\r\nReply-To: other@example.com\r\nSubject: x\r\n\r\nhi".encode()

    out, _ = parsed_bytes(raw)

    assert out.mail.from_ == sender
