"""``mailroom mailbox test NAME`` against a real Dovecot: a sample mail, or one sentence to fix."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Mailroom
from servers import free_port

SAMPLE = (
    b"From: Heather Lee <heather@zylker.example>\r\nTo: support@example.test\r\n"
    b"Subject: Printer jam\r\nDate: Mon, 02 Nov 2026 09:00:00 +0100\r\n"
    b"Message-ID: <sample@zylker.example>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
    b"It jams.\r\n--b\r\nContent-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="jam.pdf"\r\n\r\n%PDF-1.4\r\n--b--\r\n'
)


@pytest.fixture
def room(tmp_path: Path) -> Mailroom:
    return Mailroom.on_sqlite(tmp_path)


@pytest.fixture
def user(dovecot) -> str:  # type: ignore[no-untyped-def]
    name = f"t{uuid.uuid4().hex[:8]}@example.test"
    dovecot.add_user(name, "secret")
    dovecot.deliver(name, SAMPLE)
    return name


def configure(room: Mailroom, **fields: object) -> None:
    lines = "\n".join(f"        {k}: {v}" for k, v in fields.items())
    room.apply_settings(
        "helpdesks:\n  - id: default\n    mailboxes:\n      - name: box\n" + lines + "\n"
    )


def imaps(dovecot, user: str, **changes: object) -> dict[str, object]:  # type: ignore[no-untyped-def]
    fields: dict[str, object] = {
        "protocol": "imaps",
        "host": "localhost",
        "port": dovecot.imaps_port,
        "username": user,
        "password": "secret",
        "timeout_seconds": 3,
        "tls": f"{{verify: true, ca_file: {dovecot.ca_file}}}",
    }
    return fields | changes


def failure(room: Mailroom) -> str:
    done = room.cli("mailbox", "test", "box", check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0
    return done.stderr


def test_the_oldest_mail_is_shown_and_left_unread(room: Mailroom, dovecot, user: str) -> None:  # type: ignore[no-untyped-def]
    configure(room, **imaps(dovecot, user))

    sample = room.json("mailbox", "test", "box")

    assert sample["subject"] == "Printer jam"
    assert sample["from"] == "Heather Lee <heather@zylker.example>"
    assert sample["attachments"] == ["jam.pdf"]
    assert sample["size"] == len(SAMPLE)
    assert all("\\Seen" not in flags for flags in dovecot.imap_flags(user).values())


def test_pop3s_sample_leaves_the_mail_on_the_server(room: Mailroom, dovecot, user: str) -> None:  # type: ignore[no-untyped-def]
    configure(room, **imaps(dovecot, user, protocol="pops", port=dovecot.pop3s_port))

    assert room.json("mailbox", "test", "box")["subject"] == "Printer jam"
    assert len(dovecot.imap_uids(user)) == 1


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", free_port()))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def filtered_port() -> Iterator[int]:
    """A port whose SYNs go unanswered: its accept queue is full and never drained."""
    server = socket.socket()
    server.bind(("127.0.0.1", free_port()))
    server.listen(0)
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(server.getsockname())
        fillers.append(s)
    yield server.getsockname()[1]
    for s in fillers:
        s.close()
    server.close()


CASES = {
    "wrong password": (lambda d, u, p: {"password": "wrong"}, "refused username"),
    "unknown host": (lambda d, u, p: {"host": "no-such-host.invalid"}, "unknown host"),
    "refused port": (lambda d, u, p: {"port": free_port()}, "refused the connection"),
    "self-signed": (lambda d, u, p: {"tls": "{verify: true}"}, "self-signed or from an unknown"),
    "wrong host name": (lambda d, u, p: {"host": "127.0.0.1"}, "not valid for the name"),
    "missing folder": (lambda d, u, p: {"folder": "Nowhere"}, "Nowhere"),
    "dead proxy": (lambda d, u, p: {"proxy": f"http://127.0.0.1:{free_port()}"}, "proxy"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_failure_says_what_to_fix(room: Mailroom, dovecot, user: str, case: str) -> None:  # type: ignore[no-untyped-def]
    change, expected = CASES[case]
    configure(room, **imaps(dovecot, user, **change(dovecot, user, None)))

    assert expected in failure(room)


def test_a_server_that_never_answers_is_a_timeout(
    room: Mailroom, dovecot, user: str, silent_port: int
) -> None:  # type: ignore[no-untyped-def]
    configure(room, **imaps(dovecot, user, protocol="imap", port=silent_port, tls="{verify: true}"))

    assert "stopped answering" in failure(room)


def test_a_filtered_port_is_a_connect_timeout(
    room: Mailroom, dovecot, user: str, filtered_port: int
) -> None:  # type: ignore[no-untyped-def]
    configure(room, **imaps(dovecot, user, protocol="imap", port=filtered_port))

    assert "may be filtered by a firewall" in failure(room)
