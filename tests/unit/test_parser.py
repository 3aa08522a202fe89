"""The parser stage: raw mail bytes in, MailParsed plus body and attachment blobs out."""

from __future__ import annotations

import base64
import hashlib
import textwrap
from datetime import UTC, datetime, timedelta, timezone

import pytest

from contracts.mail import Address, MailFetched, MailParsed, SourceRef
from services.parser.handler import parse
from services.parser.html_text import html_to_text
from services.runtime.errors import MailError
from services.runtime.testing import InMemoryBlobStore


def eml(text: str) -> bytes:
    """A literal mail written with LF line ends, sent as CRLF like on the wire."""
    return textwrap.dedent(text).lstrip("\n").replace("\n", "\r\n").encode("utf-8")


def fetched(raw: bytes, blobs: InMemoryBlobStore) -> MailFetched:
    return MailFetched(
        mail_id="m-1",
        helpdesk="default",
        source=SourceRef(mailbox="support", ref="42"),
        raw_blob=blobs.put(raw),
        size=len(raw),
    )


def parse_raw(raw: bytes) -> tuple[MailParsed, InMemoryBlobStore]:
    blobs = InMemoryBlobStore()
    [out] = parse(fetched(raw, blobs), blobs=blobs)
    assert isinstance(out, MailParsed)
    return out, blobs


def body_text(out: MailParsed, blobs: InMemoryBlobStore) -> str:
    assert out.mail.body_text_blob is not None
    return blobs.get(out.mail.body_text_blob).decode("utf-8")


PLAIN = eml(
    """
    From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.com>
    To: Help Desk <help@example.com>, other@example.com
    Cc: "Smith, Ann" <ann@example.org>
    Reply-To: replies@example.com
    Subject: =?utf-8?b?UHJpbnRlciBrYXB1dHQ=?=   on
     floor 3
    Date: Tue, 3 Mar 2026 09:15:00 +0100
    Message-ID:  <abc.123@mail.example.com>
    In-Reply-To: <parent@example.com>
    References: <root@example.com>
     <parent@example.com> not-an-id
    MIME-Version: 1.0
    Content-Type: text/plain; charset=utf-8

    The printer on floor 3 is broken.
    """
)


def test_a_plain_mail_keeps_its_envelope_and_claim_check() -> None:
    blobs = InMemoryBlobStore()
    msg = fetched(PLAIN, blobs)

    [out] = parse(msg, blobs=blobs)

    assert isinstance(out, MailParsed)
    assert (out.mail_id, out.helpdesk, out.source, out.raw_blob) == (
        "m-1",
        "default",
        msg.source,
        msg.raw_blob,
    )


def test_a_plain_mail_gives_decoded_headers_and_body() -> None:
    out, blobs = parse_raw(PLAIN)
    mail = out.mail

    assert mail.message_id == "<abc.123@mail.example.com>"
    assert mail.message_id_synthetic is False
    assert mail.from_ == Address(name="Jörg Müller", email="joerg@example.com")
    assert mail.to == [
        Address(name="Help Desk", email="help@example.com"),
        Address(name="", email="other@example.com"),
    ]
    assert mail.cc == [Address(name="Smith, Ann", email="ann@example.org")]
    assert mail.reply_to == [Address(name="", email="replies@example.com")]
    assert mail.subject == "Printer kaputt on floor 3"
    assert mail.date == datetime(2026, 3, 3, 9, 15, tzinfo=timezone(timedelta(hours=1)))
    assert mail.in_reply_to == ["<parent@example.com>"]
    assert mail.references == ["<root@example.com>", "<parent@example.com>"]
    assert mail.auto_reply is False
    assert mail.attachments == []
    assert mail.body_html_blob is None
    assert body_text(out, blobs) == "The printer on floor 3 is broken.\n"


def test_parsing_the_same_mail_twice_gives_the_same_mail() -> None:
    first, _ = parse_raw(PLAIN)
    second, _ = parse_raw(PLAIN)

    assert first.mail == second.mail
    assert first.message_id != second.message_id


def test_a_mail_without_message_id_gets_a_stable_synthetic_one() -> None:
    raw = eml(
        """
        From: a@example.com
        Subject: no id

        hello
        """
    )

    first, _ = parse_raw(raw)
    second, _ = parse_raw(raw)

    expected = f"<{hashlib.sha256(raw).hexdigest()[:32]}@mailroom.invalid>"
    assert first.mail.message_id == second.mail.message_id == expected
    assert first.mail.message_id_synthetic is True


def test_an_empty_message_id_counts_as_missing() -> None:
    out, _ = parse_raw(eml("From: a@example.com\nMessage-ID:   \n\nhello\n"))

    assert out.mail.message_id_synthetic is True
    assert out.mail.message_id.endswith("@mailroom.invalid>")


def test_a_message_id_with_a_comment_keeps_only_the_id() -> None:
    out, _ = parse_raw(eml("From: a@example.com\nMessage-ID: <x@y> (sent by Foo)\n\nhi\n"))

    assert out.mail.message_id == "<x@y>"


def test_an_unparseable_date_is_none_and_recorded() -> None:
    out, _ = parse_raw(eml("From: a@example.com\nDate: Pn, 29 paX 2007 21:13:00\n\nhi\n"))

    assert out.mail.date is None
    assert any("InvalidDateDefect" in d for d in out.mail.defects)


def test_a_date_without_known_zone_is_read_as_utc() -> None:
    out, _ = parse_raw(eml("From: a@example.com\nDate: Tue, 3 Mar 2026 09:15:00 -0000\n\nhi\n"))

    assert out.mail.date == datetime(2026, 3, 3, 9, 15, tzinfo=UTC)


def test_only_the_first_from_address_is_the_sender() -> None:
    out, _ = parse_raw(eml("From: a@example.com, b@example.com\nFrom: c@example.com\n\nhi\n"))

    assert out.mail.from_ == Address(name="", email="a@example.com")


def test_an_address_header_the_stdlib_cannot_parse_is_read_leniently() -> None:
    # This group syntax raises AttributeError inside the stdlib's header parser.
    raw = eml("From: a@example.com\nTo: x:; (c), Ann <ann@example.com>\n\nhi\n")

    out, _ = parse_raw(raw)

    assert out.mail.to == [Address(name="Ann", email="ann@example.com")]
    assert "header To: unparseable (AttributeError); read leniently" in out.mail.defects


def test_raw_utf8_headers_are_decoded() -> None:
    raw = "From: Jöhn <john@example.com>\r\nSubject: Säying Hello\r\n\r\nbody\r\n"

    out, _ = parse_raw(raw.encode("utf-8"))

    assert out.mail.subject == "Säying Hello"
    assert out.mail.from_ == Address(name="Jöhn", email="john@example.com")


def test_raw_latin1_header_bytes_do_not_break_the_mail() -> None:
    raw = "From: a@example.com\r\nSubject: Caf\xe9\r\n\r\nbody\r\n".encode("latin-1")

    out, _ = parse_raw(raw)

    assert out.mail.subject == "Café"
    out.model_dump_json()  # every string is valid Unicode


def test_an_mbox_from_line_and_a_byte_order_mark_are_not_headers() -> None:
    mbox = b"From a@example.com Tue May 10 11:28:07 2005\r\n" + PLAIN
    bom = b"\xef\xbb\xbf" + PLAIN

    assert parse_raw(mbox)[0].mail.subject == "Printer kaputt on floor 3"
    assert parse_raw(bom)[0].mail.subject == "Printer kaputt on floor 3"


def test_damaged_header_lines_do_not_end_the_header_block() -> None:
    raw = eml(
        """
        Received: from a by b;
        lost indentation here
        Subject  : Obsolete spacing
        From: a@example.com

        body
        """
    )

    out, blobs = parse_raw(raw)

    assert out.mail.subject == "Obsolete spacing"
    assert out.mail.from_ == Address(name="", email="a@example.com")
    assert body_text(out, blobs) == "body\n"
    assert "header block: space before ':'" in out.mail.defects


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Auto-Submitted: auto-replied", True),
        ("Auto-Submitted: auto-generated; owner-email=x@example.com", True),
        ("Auto-Submitted: no", False),
        ("X-Autoreply: yes", True),
        ("X-Autorespond: Out of office", True),
        ("Precedence: bulk", True),
        ("Precedence: junk", True),
        ("Precedence: auto_reply", True),
        ("Precedence: list", False),
        ("X-Auto-Response-Suppress: All", False),
        ("Return-Path: <>", True),
        ("Return-Path: < >", True),
        ("Return-Path: <ann@example.com>", False),
    ],
)
def test_auto_reply_signals(header: str, expected: bool) -> None:
    out, _ = parse_raw(eml(f"From: a@example.com\n{header}\nSubject: Re: x\n\nhi\n"))

    assert out.mail.auto_reply is expected


def report(report_type: str) -> bytes:
    return eml(
        f"""
        From: MAILER-DAEMON@example.com
        Subject: Undelivered Mail Returned to Sender
        Content-Type: multipart/report; report-type={report_type}; boundary="b"

        --b
        Content-Type: text/plain

        Your mail could not be delivered.
        --b
        Content-Type: message/delivery-status

        Reporting-MTA: dns; mx.example.com

        Final-Recipient: rfc822; gone@example.com
        Action: failed
        Status: 5.1.1
        --b--
        """
    )


def test_a_delivery_status_report_is_an_auto_reply() -> None:
    out, blobs = parse_raw(report("delivery-status"))

    assert out.mail.auto_reply is True
    assert body_text(out, blobs) == "Your mail could not be delivered."
    [status] = out.mail.attachments
    assert status.content_type == "message/delivery-status"
    assert b"Status: 5.1.1" in blobs.get(status.sha256)


def test_a_read_receipt_report_is_not_a_bounce() -> None:
    out, _ = parse_raw(report("disposition-notification"))

    assert out.mail.auto_reply is False


WITH_ATTACHMENTS = eml(
    f"""
    From: a@example.com
    Subject: files
    Content-Type: multipart/mixed; boundary="outer"

    --outer
    Content-Type: multipart/related; boundary="inner"

    --inner
    Content-Type: text/html; charset=utf-8

    <p>See <img src="cid:logo@x"></p>
    --inner
    Content-Type: image/png
    Content-Disposition: inline
    Content-ID: <logo@x>
    Content-Transfer-Encoding: base64

    {base64.b64encode(b"PNGDATA").decode()}
    --inner--
    --outer
    Content-Type: application/pdf; name="=?utf-8?q?R=C3=A9sum=C3=A9=2Epdf?="
    Content-Disposition: attachment
    Content-Transfer-Encoding: base64

    {base64.b64encode(b"%PDF-1.4 fake").decode()}
    --outer
    Content-Type: text/plain; charset=utf-8
    Content-Disposition: attachment; filename*=utf-8''na%C3%AFve%20notes.txt

    notes
    --outer
    Content-Type: application/octet-stream
    Content-Transfer-Encoding: base64

    {base64.b64encode(bytes(range(10))).decode()}
    --outer--
    """
)


def test_attachments_are_stored_with_decoded_names_and_bytes() -> None:
    out, blobs = parse_raw(WITH_ATTACHMENTS)

    named = {a.filename: a for a in out.mail.attachments}
    assert list(named) == ["image-1.png", "Résumé.pdf", "naïve notes.txt", "attachment-4.bin"]
    pdf = named["Résumé.pdf"]
    assert (pdf.content_type, pdf.size, pdf.inline, pdf.content_id) == (
        "application/pdf",
        13,
        False,
        None,
    )
    assert pdf.sha256 == hashlib.sha256(b"%PDF-1.4 fake").hexdigest()
    assert blobs.get(pdf.sha256) == b"%PDF-1.4 fake"
    assert blobs.get(named["attachment-4.bin"].sha256) == bytes(range(10))
    assert named["naïve notes.txt"].content_type == "text/plain"


def test_an_inline_image_with_content_id_is_marked_inline() -> None:
    out, blobs = parse_raw(WITH_ATTACHMENTS)

    image = out.mail.attachments[0]
    assert (image.inline, image.content_id, image.size) == (True, "logo@x", 7)
    assert blobs.get(image.sha256) == b"PNGDATA"


def test_an_html_only_body_is_also_rendered_as_text() -> None:
    out, blobs = parse_raw(WITH_ATTACHMENTS)

    assert out.mail.body_html_blob is not None
    assert blobs.get(out.mail.body_html_blob).startswith(b"<p>See <img")
    assert body_text(out, blobs) == "See"


def test_an_html_only_mail_reads_as_text_with_list_items_and_links() -> None:
    raw = eml(
        """
        From: a@example.com
        Subject: html
        Content-Type: text/html; charset=utf-8

        <html><head><style>p {color: red}</style><script>alert(1)</script></head>
        <body><p>Hello&nbsp;team &amp; friends,</p>
        <ul><li>first&#33;</li><li>second</li></ul>
        <p>Read <a href="https://example.com/kb/1">the guide</a>.<br>Thanks</p>
        </body></html>
        """
    )

    out, blobs = parse_raw(raw)

    text = body_text(out, blobs)
    assert text == "Hello team & friends,\n\n  * first!\n  * second\n\nRead the guide.\nThanks"


def test_html_rendering_keeps_table_columns_and_nested_numbered_lists() -> None:
    html = (
        "<p>Order failed:</p><table><tr><th>Item</th><th>Qty</th></tr>"
        "<tr><td>Toner black</td><td>2</td></tr><tr><td>Paper</td><td>10</td></tr></table>"
        "<ul><li>check<ol><li>first</li><li>second</li></ol></li></ul>"
    )

    assert html_to_text(html) == (
        "Order failed:\n\n"
        "Item         Qty\n"
        "Toner black  2\n"
        "Paper        10\n\n"
        "  * check\n"
        "     1. first\n"
        "     2. second"
    )


def test_html_nested_deeper_than_the_renderer_follows_still_gives_its_text() -> None:
    deep = "<div>" * 5000 + "deep text" + "</div>" * 5000 + "<p>after</p>"

    assert html_to_text(deep) == "deep text\n\nafter"


def test_html_rendering_collapses_blank_lines_and_keeps_preformatted_text() -> None:
    html = "<div>a</div><div></div><p></p><p></p><div>b</div><pre>x  =  1\ny</pre>"

    assert html_to_text(html) == "a\n\nb\nx  =  1\ny"


def test_html_rendering_survives_broken_markup() -> None:
    assert html_to_text("<p>one<b>two</p><td>three<style>") == "onetwo\n\nthree"


def test_an_attached_mail_is_one_eml_attachment_and_is_not_walked_into() -> None:
    inner = (
        "From: b@example.com\r\nSubject: Original: question\r\n"
        'Content-Type: multipart/mixed; boundary="in"\r\n\r\n'
        "--in\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        "--in\r\nContent-Type: image/gif\r\n\r\nGIF\r\n--in--\r\n"
    )
    raw = (
        eml(
            """
        From: a@example.com
        Subject: Fwd
        Content-Type: multipart/mixed; boundary="out"

        --out
        Content-Type: text/plain

        see below
        --out
        Content-Type: message/rfc822

        """
        )
        + inner.encode()
        + b"--out--\r\n"
    )

    out, blobs = parse_raw(raw)

    [attached] = out.mail.attachments
    assert (attached.filename, attached.content_type) == (
        "Original_ question.eml",
        "message/rfc822",
    )
    stored = blobs.get(attached.sha256)
    assert stored.startswith(b"From: b@example.com\r\nSubject: Original: question\r\n")
    assert b"--in\r\nContent-Type: image/gif" in stored
    assert attached.size == len(stored)
    assert body_text(out, blobs) == "see below"


def test_an_attached_mail_without_subject_is_named_forwarded() -> None:
    raw = eml(
        """
        From: a@example.com
        Content-Type: multipart/mixed; boundary="out"

        --out
        Content-Type: message/rfc822

        From: b@example.com

        hi
        --out--
        """
    )

    out, _ = parse_raw(raw)

    assert [a.filename for a in out.mail.attachments] == ["forwarded.eml"]


def test_text_after_a_picture_stays_in_the_body() -> None:
    raw = eml(
        """
        From: a@example.com
        Content-Type: multipart/mixed; boundary="b"

        --b
        Content-Type: text/plain

        Look at this:
        --b
        Content-Type: image/jpeg
        Content-Disposition: inline

        JPEG
        --b
        Content-Type: text/plain

        What is wrong?
        --b--
        """
    )

    out, blobs = parse_raw(raw)

    assert body_text(out, blobs) == "Look at this:\nWhat is wrong?"
    assert [a.filename for a in out.mail.attachments] == ["image-1.jpg"]


def test_alternative_bodies_prefer_plain_text_and_keep_the_html() -> None:
    raw = eml(
        """
        From: a@example.com
        Content-Type: multipart/alternative; boundary="b"

        --b
        Content-Type: text/plain; charset=iso-8859-1
        Content-Transfer-Encoding: quoted-printable

        Gr=FC=DFe
        --b
        Content-Type: text/html; charset=utf-8

        <b>Grüße</b>
        --b--
        """
    )

    out, blobs = parse_raw(raw)

    assert body_text(out, blobs) == "Grüße"
    assert out.mail.body_html_blob is not None
    assert blobs.get(out.mail.body_html_blob).decode() == "<b>Grüße</b>"
    assert out.mail.attachments == []


def test_a_mail_with_no_text_at_all_has_no_body_blob() -> None:
    raw = eml(
        """
        From: a@example.com
        Content-Type: application/pdf
        Content-Disposition: attachment; filename=scan.pdf

        %PDF
        """
    )

    out, _ = parse_raw(raw)

    assert out.mail.body_text_blob is None
    assert [a.filename for a in out.mail.attachments] == ["scan.pdf"]


def test_an_unknown_charset_over_nearly_utf8_bytes_is_read_as_utf8_and_recorded() -> None:
    raw = b"From: a@example.com\r\nContent-Type: text/plain; charset=x-foo\r\n\r\n"
    raw += b"caf\xc3\xa9 \xff\r\n"

    out, blobs = parse_raw(raw)

    assert body_text(out, blobs) == "café \ufffd\n"
    assert (
        "charset: text/plain declared unknown charset 'x-foo'; decoded as 'utf-8'"
        " (1 invalid byte replaced)" in out.mail.defects
    )


def test_bytes_that_fit_no_charset_are_replaced_and_recorded() -> None:
    raw = b"From: a@example.com\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    raw += b"ok \x00\xff\xfe\x00\x81\r\n"

    out, blobs = parse_raw(raw)

    assert body_text(out, blobs) == "ok \x00\ufffd\ufffd\x00\ufffd\n"
    assert any(
        d.startswith("charset: text/plain bytes are not valid utf-8") for d in out.mail.defects
    )


def test_defects_the_email_package_records_are_kept_not_rejected() -> None:
    raw = eml(
        """
        From: a@example.com
        Content-Type: multipart/mixed; boundary="b"

        --b
        Content-Type: text/plain

        no closing boundary follows
        """
    )

    out, blobs = parse_raw(raw)

    assert body_text(out, blobs).startswith("no closing boundary follows")
    assert any(
        d.startswith("CloseBoundaryNotFoundDefect in multipart/mixed part")
        for d in out.mail.defects
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "mail is empty"),
        (b"  \r\n\r\n", "mail is empty"),
        (b"just some text\r\nmore text\r\n\r\nbody\r\n", "mail has no header"),
        (b"\r\nSubject: after a blank line\r\n", "mail has no header"),
        (
            eml(
                'From: a@example.com\nContent-Type: multipart/mixed; boundary="x"\n\n'
                "--y\nContent-Type: text/plain\n\nwritten with another boundary\n--y--\n"
            ),
            "MIME structure is broken: multipart/mixed part declares boundary 'x' that never"
            " occurs (StartBoundaryNotFoundDefect)",
        ),
        (
            eml("From: a@example.com\nContent-Type: multipart/mixed\n\n--x\n\nhi\n--x--\n"),
            "MIME structure is broken: multipart/mixed part declares no boundary"
            " (NoBoundaryInMultipartDefect)",
        ),
    ],
)
def test_unusable_mail_is_rejected_with_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MailError) as caught:
        parse_raw(raw)

    assert str(caught.value).startswith(reason)


def test_a_broken_nested_multipart_rejects_the_mail() -> None:
    raw = eml(
        """
        From: a@example.com
        Content-Type: multipart/mixed; boundary="out"

        --out
        Content-Type: multipart/alternative; boundary="missing"

        --out--
        """
    )

    with pytest.raises(MailError, match="multipart/alternative part declares boundary 'missing'"):
        parse_raw(raw)


def test_parts_nested_too_deeply_reject_the_mail() -> None:
    depth = 1000
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    closing = b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth)))
    raw = b"From: a@example.com\r\n" + opening + b"\r\nhi\r\n" + closing

    with pytest.raises(MailError, match="nested too deeply"):
        parse_raw(raw)


def test_html_that_is_not_the_first_related_part_is_still_the_body() -> None:
    raw = eml(
        """
        From: a@example.com
        Content-Type: multipart/related; type="text/html"; boundary="b"

        --b
        Content-Type: image/png
        Content-Location: image1

        PNG
        --b
        Content-Type: text/html

        <p>The answer</p>
        --b--
        """
    )

    out, blobs = parse_raw(raw)

    assert body_text(out, blobs) == "The answer"
    assert [a.filename for a in out.mail.attachments] == ["image-1.png"]


def test_mailing_list_mail_is_marked_so_nothing_answers_it():
    from services.parser.mime import parse_mime

    raw = (
        b"From: list-member@example.org\r\nTo: support@example.com\r\nSubject: hi\r\n"
        b"List-Id: <users.lists.example.org>\r\nPrecedence: list\r\n\r\nhello\r\n"
    )

    mail = parse_mime(raw).mail

    assert mail.mailing_list and not mail.auto_reply


def test_a_quoted_boundary_holding_equals_signs_is_left_alone():
    from services.parser.mime import parse_mime

    raw = (
        b"From: a@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="==mailgen-boundary=="\r\n\r\n'
        b"--==mailgen-boundary==\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--==mailgen-boundary==--\r\n"
    )

    assert parse_mime(raw).mail.defects == []
