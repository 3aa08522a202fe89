"""The parser on delivery status notifications (bounces) and on the fields routing reads.

Each bounce is a file of the shared corpus: reports written by Postfix, sendmail, exim, a
1996 Netscape-era MTA, a carrier's gateway, and a Proofpoint-relayed Postfix bounce whose
status block was re-encoded in base64.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.mail import Address, DeliveryStatus
from services.parser.mime import parse_mime

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
REPORTS = CORPUS / "mikel-mail" / "multipart_report_emails"
MIMEKIT = CORPUS / "mimekit" / "messages"


def report_of(path: Path):
    report = parse_mime(path.read_bytes()).mail.delivery_report
    assert report is not None
    return report


@pytest.mark.parametrize(
    ("path", "original", "first"),
    [
        (
            REPORTS / "report_530.eml",
            "<200712232303.lBNN3jDq002941@mail12.rrrr.com.au>",
            DeliveryStatus(
                address="edwin@zzzzzzz.com",
                action="failed",
                status="5.3.0",
                diagnostic="SMTP; 553 5.3.0 <edwin@zzzzzzz.com>... Unknown E-Mail Address",
            ),
        ),
        (
            REPORTS / "report_422.eml",
            "<15655788.13.1200472642578.JavaMail.Administrator@mail.ttttt.com.au>",
            DeliveryStatus(
                address="fraser@oooooooo.com.au",
                action="delayed",
                status="4.2.2",
                diagnostic="SMTP; 452 4.2.2 <fraser@oooooooo.com.au>... Mailbox full",
            ),
        ),
        (
            REPORTS / "multipart_report_multiple_status.eml",
            "<4c2a146147ac8_61ff157c4ec1652df@s.h.c.mail>",
            DeliveryStatus(address="u@ci.com", action="failed", status="5.3.0"),
        ),
        (
            MIMEKIT / "delivery-status.txt",
            "<31FC7EB4.41C6@netscape.com>",
            DeliveryStatus(
                address="newsletter-request@imusic.com",
                action="failed",
                diagnostic="X-LOCAL; 500 (err.nosuchuser)",
            ),
        ),
        (
            MIMEKIT / "bounce.txt",
            "<44565655.JitbitHelpdesk.13439.691a0afc-a0a0-457c-8208-f20b7c4a4cb1@jitbit.com>",
            DeliveryStatus(
                address="netec.test@netecgc.com",
                action="failed",
                status="5.1.1",
                diagnostic="smtp; 550 5.1.1 <netec.test@netecgc.com>: Recipient address "
                "rejected: User unknown",
            ),
        ),
        (
            MIMEKIT / "delivery-status2.txt",
            None,
            DeliveryStatus(address="source@domain.com", action="failed", status="5.0.0"),
        ),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else "",
)
def test_a_bounce_names_the_returned_mail_and_each_recipient_that_failed(path, original, first):
    report = report_of(path)

    assert report.original_message_id == original
    assert report.recipients[0] == first


def test_every_recipient_of_a_multi_recipient_bounce_is_listed():
    report = report_of(REPORTS / "multi_address_bounce1.eml")

    assert [r.address for r in report.recipients] == [
        "bbbbvhvbbvkjbhfbvbvjhb@gmail.com",
        "bscdbcjhasbcjhbdscbhbsdhcbj@gmail.com",
        "egyfefsdvsfvvhjsd@gmail.com",
        "kfhejkfbsjkjsbhds@gmail.com",
        "qfvhgsvhgsduiohncdhcvhsdfvsfygusd@gmail.com",
    ]
    assert all(r.status == "5.1.1" for r in report.recipients)
    # The folded Diagnostic-Code comes out as one line.
    assert report.recipients[0].diagnostic.startswith(
        "smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try"
    )


def test_a_recipient_named_only_by_original_recipient_is_listed():
    report = report_of(MIMEKIT / "delivery-status-multiple-blank-lines.txt")

    assert report.recipients == [
        DeliveryStatus(
            address="orig_recip@customer.com",
            status="5.5.0",
            diagnostic="smtp;550 Requested action not taken",
        )
    ]


def test_the_original_envelope_id_is_kept():
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\r\nTo: desk@example.com\r\nSubject: Bounce\r\n"
        b"Message-ID: <dsn-1@mx.example.net>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nYour mail was not delivered.\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.net\r\nOriginal-Envelope-Id: notify.1@desk.example\r\n"
        b"\r\nFinal-Recipient: rfc822; ann@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"--b--\r\n"
    )

    report = parse_mime(raw).mail.delivery_report

    assert report is not None
    assert report.envelope_id == "notify.1@desk.example"
    assert report.original_message_id is None


def test_a_mail_that_is_no_delivery_report_has_none():
    raw = b"From: ann@example.org\r\nSubject: Re: Undelivered Mail\r\n\r\nIt bounced.\r\n"

    assert parse_mime(raw).mail.delivery_report is None


def test_the_sender_header_is_read():
    raw = b"From: Ann Example\r\nSender: Heather Lee <heather@zylker.com>\r\nSubject: x\r\n\r\nx"

    mail = parse_mime(raw).mail

    assert mail.sender == Address(name="Heather Lee", email="heather@zylker.com")


@pytest.mark.parametrize(
    ("headers", "ours"),
    [
        (b"Auto-Submitted: auto-generated\r\nX-Mailroom-Notification: k1\r\n", True),
        (b"auto-submitted: Auto-Generated\r\nx-mailroom-anything: 1\r\n", True),
        (b"Auto-Submitted: auto-replied\r\nX-Mailroom-Notification: k1\r\n", False),
        (b"X-Mailroom-Notification: k1\r\n", False),
        (b"Auto-Submitted: auto-generated\r\n", False),
    ],
)
def test_mailrooms_own_notifications_are_known_by_auto_submitted_and_their_header(headers, ours):
    raw = b"From: mailroom@desk.example\r\nSubject: Re: x\r\n" + headers + b"\r\nbody\r\n"

    assert parse_mime(raw).mail.sent_by_mailroom is ours
