"""SmtpSender against a real SMTP server (aiosmtpd) on a free loopback port."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from certificates import ServerCertificates
from outgoing_scenario import REPS, SENDER, emails, settings, write_mail_with_an_exe
from servers import free_port
from smtp_servers import RefusingRecipients, SmtpServer

from bench.room import Room, mailroom
from contracts.settings import OutgoingSettings
from services.notifier.message import OutgoingMail, message_id_for
from services.notifier.smtp import SmtpSender
from services.runtime.errors import ConfigError, InfraError, MailError

MADE_AT = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)

# Test servers that take a login on a plain connection make aiosmtpd warn, rightly.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def body_of(mail: EmailMessage) -> str:
    """The body as text; SMTP carries CRLF line ends."""
    return mail.get_content().replace("\r\n", "\n")


def sender_for(port: int, host: str = "127.0.0.1", **fields) -> SmtpSender:
    return SmtpSender(OutgoingSettings(host=host, port=port, **fields), timeout=10)


def outgoing(
    to=("reps@example.com",),
    subject="Mailbox unreachable",
    body="Check the password.",
    in_reply_to=None,
    key="mailbox-support:connectivity:email",
) -> OutgoingMail:
    return OutgoingMail(
        key=key,
        to=tuple(to),
        subject=subject,
        body=body,
        in_reply_to=in_reply_to,
        message_id=message_id_for(key, "example.com"),
        date=MADE_AT,
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> ServerCertificates:
    return ServerCertificates.make(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def servers() -> Iterator[list[SmtpServer]]:
    """Servers a test starts; each is stopped after it."""
    started: list[SmtpServer] = []
    yield started
    for server in started:
        server.stop()


def start(servers: list[SmtpServer], **options) -> SmtpServer:
    server = SmtpServer(free_port(), **options)
    server.start()
    servers.append(server)
    return server


def test_a_notification_arrives_with_its_headers_and_body(smtp_server):
    # Given a help desk whose outgoing server is a real SMTP server
    collector, port = smtp_server
    sender = sender_for(port, from_address="helpdesk@example.com")
    mail = outgoing(
        to=["ann@example.org", "lead@example.org"],
        subject="[Request #7] Attachment removed",
        body="invoice.exe was removed: files of type exe are not accepted.\n",
        in_reply_to="<m1@example.org>",
        key="m1:attachment_stripped:email:sender",
    )

    # When a reply notification is sent
    sender.send(mail)

    # Then the server received exactly that mail, for both recipients
    [envelope] = collector.envelopes
    assert envelope.mail_from == "helpdesk@example.com"
    assert envelope.rcpt_tos == ["ann@example.org", "lead@example.org"]
    [received] = collector.mails()
    assert received["From"] == "helpdesk@example.com"
    assert received["To"] == "ann@example.org, lead@example.org"
    assert received["Subject"] == "[Request #7] Attachment removed"
    assert received["In-Reply-To"] == "<m1@example.org>"
    assert received["References"] == "<m1@example.org>"
    assert received["Auto-Submitted"] == "auto-generated"
    assert received["Message-ID"] == mail.message_id
    assert received["X-Mailroom-Notification"] == "m1:attachment_stripped:email:sender"
    assert parsedate_to_datetime(received["Date"]) == MADE_AT
    assert body_of(received) == "invoice.exe was removed: files of type exe are not accepted.\n"


def test_sending_again_sends_the_same_mail(smtp_server):
    collector, port = smtp_server
    sender = sender_for(port)

    sender.send(outgoing())
    sender.send(outgoing())

    first, second = collector.mails()
    for header in ("Message-ID", "Date", "Subject", "X-Mailroom-Notification"):
        assert first[header] == second[header]


def test_a_notification_that_answers_nothing_has_no_threading_headers(smtp_server):
    collector, port = smtp_server

    sender_for(port).send(outgoing())

    [mail] = collector.mails()
    assert mail["From"] == "mailroom@localhost"
    assert mail["In-Reply-To"] is None
    assert mail["References"] is None
    assert mail["Auto-Submitted"] == "auto-generated"


def test_a_non_ascii_subject_and_body_arrive_intact(smtp_server):
    collector, port = smtp_server

    sender_for(port).send(
        outgoing(to=["joerg@example.de"], subject="Drucker kaputt – Jörg", body="Grüße aus Köln\n")
    )

    [mail] = collector.mails()
    assert mail["Subject"] == "Drucker kaputt – Jörg"
    assert body_of(mail) == "Grüße aus Köln\n"


def test_a_subject_with_a_line_break_goes_out_on_one_line(smtp_server):
    collector, port = smtp_server

    sender_for(port).send(outgoing(subject="Re: Printer\r\n jams again"))

    [mail] = collector.mails()
    assert mail["Subject"] == "Re: Printer jams again"


def test_a_closed_port_is_an_infra_error_naming_the_server():
    # Given an outgoing server setting pointing at a port nobody listens on
    port = free_port()
    sender = sender_for(port)

    # When a mail is sent, Then the failure says which server did not take it
    with pytest.raises(InfraError, match=f"127.0.0.1:{port}"):
        sender.send(outgoing())


# -- authentication and TLS ------------------------------------------------------------------


def test_a_login_on_a_plain_connection_is_accepted(servers):
    server = start(servers, login=("helpdesk", "s3cret"), login_without_tls=True)

    sender_for(server.port, username="helpdesk", password="s3cret").send(outgoing())

    assert len(server.collector.mails()) == 1


def test_a_non_ascii_password_logs_in_as_utf8(servers):
    server = start(servers, login=("helpdesk", "Grüße-Ü1"), login_without_tls=True)

    sender_for(server.port, username="helpdesk", password="Grüße-Ü1").send(outgoing())

    assert len(server.collector.mails()) == 1


def test_a_refused_non_ascii_password_shows_no_part_of_it(servers):
    server = start(servers, login=("helpdesk", "s3cret"), login_without_tls=True)
    sender = sender_for(server.port, username="helpdesk", password="Grüße-Ü1")

    with pytest.raises(ConfigError, match="check outgoing.username and outgoing.password") as e:
        sender.send(outgoing())
    for leak in ("Ü", "ü", "ß", "position", "codec"):
        assert leak not in str(e.value)


def test_a_wrong_password_says_which_settings_to_check(servers):
    server = start(servers, login=("helpdesk", "s3cret"), login_without_tls=True)
    sender = sender_for(server.port, username="helpdesk", password="wrong")

    with pytest.raises(ConfigError, match="check outgoing.username and outgoing.password"):
        sender.send(outgoing())
    assert server.collector.mails() == []


def test_a_server_requiring_a_login_refuses_a_mail_without_one(servers):
    server = start(servers, login=("helpdesk", "s3cret"), login_without_tls=True)

    with pytest.raises(ConfigError, match="requires a login.*set outgoing.username"):
        sender_for(server.port).send(outgoing())
    assert server.collector.mails() == []


def test_starttls_with_a_private_ca_and_a_login(servers, certs):
    # Given a server that offers AUTH only after STARTTLS, with a certificate of our own CA
    server = start(servers, tls_context=certs.server_context(), login=("helpdesk", "s3cret"))
    sender = sender_for(
        server.port,
        host="localhost",
        security="starttls",
        tls={"ca_file": str(certs.ca_file)},
        username="helpdesk",
        password="s3cret",
    )

    # When a mail is sent, Then it arrives
    sender.send(outgoing())
    assert len(server.collector.mails()) == 1


def test_ssl_with_a_private_ca(servers, certs):
    server = start(servers, ssl_context=certs.server_context())
    sender = sender_for(
        server.port, security="ssl", tls={"verify": True, "ca_file": str(certs.ca_file)}
    )

    sender.send(outgoing())

    assert len(server.collector.mails()) == 1


def test_an_unknown_certificate_authority_says_to_set_the_ca_file(servers, certs):
    server = start(servers, ssl_context=certs.server_context())
    sender = sender_for(server.port, security="ssl")

    with pytest.raises(ConfigError, match="set outgoing.tls.ca_file"):
        sender.send(outgoing())
    assert server.collector.mails() == []


def test_tls_verification_may_be_switched_off_explicitly(servers, certs):
    server = start(servers, tls_context=certs.server_context())

    sender_for(server.port, security="starttls", tls={"verify": False}).send(outgoing())

    assert len(server.collector.mails()) == 1


def test_a_ca_file_that_cannot_be_read_is_named(tmp_path: Path, servers, certs):
    server = start(servers, ssl_context=certs.server_context())
    missing = tmp_path / "nowhere.pem"
    sender = sender_for(server.port, security="ssl", tls={"ca_file": str(missing)})

    with pytest.raises(ConfigError, match=f"cannot read tls.ca_file {missing}"):
        sender.send(outgoing())


# -- refusals --------------------------------------------------------------------------------


def test_a_permanent_refusal_of_the_recipients_is_a_mail_error(servers):
    server = start(servers, collector=RefusingRecipients("550 5.1.1 no such user"))

    with pytest.raises(MailError, match="refused every recipient"):
        sender_for(server.port).send(outgoing())


def test_a_temporary_refusal_of_the_recipients_may_pass(servers):
    server = start(servers, collector=RefusingRecipients("451 4.3.0 try again later"))

    with pytest.raises(InfraError, match="it may take it later"):
        sender_for(server.port).send(outgoing())


# -- the notifier with its server down, then back (`mailroom run --once`) ---------------------


@pytest.fixture
def room(tmp_path: Path) -> Room:
    """An embedded deployment (in-process broker, SQLite) driven through ``mailroom``."""
    return Room(tmp_path, "memory://", f"sqlite:///{tmp_path / 'var' / 'mailroom.db'}")


def cli(room: Room, *args: str) -> str:
    done = subprocess.run(
        mailroom(*args), env=room.env, cwd=room.workdir, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"mailroom {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def listed(room: Room) -> list[dict]:
    return json.loads(cli(room, "notifications", "list", "--json"))


def test_emails_kept_while_the_server_was_down_go_out_once_at_a_later_run(room, servers):
    # Given a mail whose attachment is stripped, and an outgoing server that is down
    port = free_port()
    write_mail_with_an_exe(room.maildir)
    room.apply(settings(room.maildir, port, first_retry_s=2))

    # When the pipeline runs once
    cli(room, "run", "--once")

    # Then both notices are kept with the server's error, one attempt, and a retry time
    kept = emails(listed(room))
    assert set(kept) == {SENDER, REPS}
    for entry in kept.values():
        assert entry["sent_at"] is None
        assert f"127.0.0.1:{port}" in entry["error"]
        assert entry["attempts"] >= 1
        assert entry["next_attempt_at"]
        assert entry["message_id"].endswith("@example.com>")
        assert entry["suppressed_reason"] is None

    # When the server is back and the pipeline runs again once their retry time has come
    server = SmtpServer(port)
    server.start()
    servers.append(server)
    wait_until_due(kept.values())
    cli(room, "run", "--once")
    cli(room, "run", "--once")

    # Then each notice arrived exactly once, as the mail its entry names
    received = {m["Message-ID"]: m for m in server.collector.mails()}
    assert len(server.collector.mails()) == 2
    assert set(received) == {e["message_id"] for e in kept.values()}
    assert received[kept[SENDER]["message_id"]]["To"] == SENDER
    after = emails(listed(room))
    for who, entry in after.items():
        assert entry["sent_at"] is not None
        assert entry["error"] is None
        assert entry["attempts"] == kept[who]["attempts"] + 1
        assert entry["message_id"] == kept[who]["message_id"]


def wait_until_due(entries) -> None:
    """Sleeps until the latest ``next_attempt_at`` has passed (a wait, not a check)."""
    latest = max(datetime.fromisoformat(e["next_attempt_at"]) for e in entries)
    time.sleep(max(0.0, (latest - datetime.now(UTC)).total_seconds()) + 0.1)


# -- every kind of notice goes out through the outgoing server --------------------------------

DEMO_MAILDIR = Path(__file__).resolve().parents[2] / "demo" / "Maildir"


def test_stripped_attachments_error_mails_and_connectivity_alerts_are_all_mailed(room, smtp_server):
    # Given the demo mailbox (stripped attachments, one broken mail), a mailbox that cannot
    # be reached with an alert after one failure, and a running SMTP server
    collector, port = smtp_server
    shutil.copytree(DEMO_MAILDIR, room.maildir)
    desk = settings(
        room.maildir,
        port,
        notifications={
            "support_reps": [REPS],
            "admins": ["admin@example.com"],
            "connectivity": {"consecutive_retry_threshold": 1},
        },
    )["helpdesks"][0]
    desk["attachments"] = {"max_size_mb": 1}
    desk["mailboxes"].append(
        {"name": "gone", "protocol": "maildir", "path": str(room.workdir / "nowhere")}
    )
    room.apply({"helpdesks": [desk]})

    # When the pipeline runs once
    cli(room, "run", "--once")

    # Then every email notice reached the server, each with the Message-ID of its entry
    kept = [n for n in listed(room) if n["channel"] == "email"]
    kinds = {n["kind"] for n in kept}
    assert {"attachment_stripped", "mail_error", "connectivity"} <= kinds
    assert all(n["sent_at"] and n["error"] is None for n in kept)
    received = collector.mails()
    assert sorted(m["Message-ID"] for m in received) == sorted(n["message_id"] for n in kept)
    assert all(m["Auto-Submitted"] == "auto-generated" for m in received)
    # (stripped: Python's parser keeps the space of a header folded right after its name)
    subjects = [m["Subject"].strip() for m in received]
    assert "Mailbox gone cannot be reached" in subjects
    assert any(s.startswith("Mail could not be processed") for s in subjects)
    assert any(s.startswith('1 attachment removed from "Installer') for s in subjects)


def test_notices_over_the_rate_limit_are_listed_as_suppressed_and_not_mailed(room, smtp_server):
    # Given a help desk that mails one address at most once an hour, and two mails from Ann
    collector, port = smtp_server
    write_mail_with_an_exe(room.maildir, "exe-1")
    write_mail_with_an_exe(room.maildir, "exe-2")
    limit = {"per_address": 1, "per_minutes": 60}
    room.apply(
        settings(room.maildir, port, notifications={"support_reps": [REPS], "rate_limit": limit})
    )

    # When both are processed
    cli(room, "run", "--once")

    # Then Ann and the reps got one email each; the second ones are kept, marked, not sent
    assert sorted(e.rcpt_tos[0] for e in collector.envelopes) == [SENDER, REPS]
    kept = [n for n in listed(room) if n["channel"] == "email"]
    suppressed = [n for n in kept if n["suppressed_reason"]]
    assert sorted(n["suppressed_reason"] for n in suppressed) == [
        f"rate limit: 1 email to {SENDER} in 60 minutes",
        f"rate limit: 1 email to {REPS} in 60 minutes",
    ]
    assert all(n["sent_at"] is None and n["attempts"] == 0 for n in suppressed)
    bells = [n for n in listed(room) if n["channel"] == "bell"]
    assert len(bells) == 2 and all(n["sent_at"] for n in bells)
