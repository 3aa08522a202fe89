"""SmtpSender against a real SMTP server (aiosmtpd) on a free loopback port."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from servers import free_port

from contracts.settings import OutgoingSettings
from services.notifier.adapters import SmtpSender
from services.runtime.errors import InfraError


def body_of(mail: EmailMessage) -> str:
    """The body as text; SMTP carries CRLF line ends."""
    return mail.get_content().replace("\r\n", "\n")


def sender_for(port: int, **fields) -> SmtpSender:
    return SmtpSender(OutgoingSettings(host="127.0.0.1", port=port, **fields), timeout=10)


def test_a_notification_arrives_with_its_headers_and_body(smtp_server):
    # Given a help desk whose outgoing server is a real SMTP server
    collector, port = smtp_server
    sender = sender_for(port, from_address="helpdesk@example.com")

    # When a reply notification is sent
    sender.send(
        ["ann@example.org", "lead@example.org"],
        "[Request #7] Attachment removed",
        "invoice.exe was removed: files of type exe are not accepted.\n",
        "<m1@example.org>",
    )

    # Then the server received exactly that mail, for both recipients
    [envelope] = collector.envelopes
    assert envelope.mail_from == "helpdesk@example.com"
    assert envelope.rcpt_tos == ["ann@example.org", "lead@example.org"]
    [mail] = collector.mails()
    assert mail["From"] == "helpdesk@example.com"
    assert mail["To"] == "ann@example.org, lead@example.org"
    assert mail["Subject"] == "[Request #7] Attachment removed"
    assert mail["In-Reply-To"] == "<m1@example.org>"
    assert mail["References"] == "<m1@example.org>"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Message-ID"]
    assert mail["Date"]
    assert body_of(mail) == "invoice.exe was removed: files of type exe are not accepted.\n"


def test_a_notification_that_answers_nothing_has_no_threading_headers(smtp_server):
    collector, port = smtp_server

    sender_for(port).send(["reps@example.com"], "Mailbox unreachable", "Check the password.", None)

    [mail] = collector.mails()
    assert mail["From"] == "mailroom@localhost"
    assert mail["In-Reply-To"] is None
    assert mail["References"] is None
    assert mail["Auto-Submitted"] == "auto-generated"


def test_a_non_ascii_subject_and_body_arrive_intact(smtp_server):
    collector, port = smtp_server

    sender_for(port).send(["joerg@example.de"], "Drucker kaputt – Jörg", "Grüße aus Köln\n", None)

    [mail] = collector.mails()
    assert mail["Subject"] == "Drucker kaputt – Jörg"
    assert body_of(mail) == "Grüße aus Köln\n"


def test_a_closed_port_is_an_infra_error_naming_the_server():
    # Given an outgoing server setting pointing at a port nobody listens on
    port = free_port()
    sender = sender_for(port)

    # When a mail is sent, Then the failure says which server did not take it
    with pytest.raises(InfraError, match=f"127.0.0.1:{port}"):
        sender.send(["reps@example.com"], "subject", "body", None)
