"""A POP server that refuses a command about one mail fails that mail, not the mailbox."""

from __future__ import annotations

import poplib

import pytest

from services.poller.sources.base import NotMarked
from services.poller.sources.net import Endpoint
from services.poller.sources.pop import PopSource
from services.poller.testing import InMemorySourceState

MAILS = {1: b"Subject: one\r\n\r\n1\r\n", 2: b"Subject: two\r\n\r\n2\r\n"}


class RefusingPop:
    """Speaks like ``PopClient``; answers ``-ERR`` to RETR and DELE of mail 1."""

    def __init__(self) -> None:
        self.deleted: list[int] = []
        self.quit_sent = False

    def user(self, _name: str) -> bytes:
        return b"+OK"

    def pass_(self, _password: str) -> bytes:
        return b"+OK"

    def uidl(self) -> tuple[bytes, list[bytes], int]:
        return b"+OK", [b"1 uid-one", b"2 uid-two"], 0

    def list(self) -> tuple[bytes, list[bytes], int]:
        return b"+OK", [f"{n} {len(raw)}".encode() for n, raw in MAILS.items()], 0

    def retr_bytes(self, number: int) -> bytes:
        if number == 1:
            raise poplib.error_proto(b"-ERR [SYS/PERM] Message is damaged")
        return MAILS[number]

    def dele(self, number: int) -> bytes:
        if number == 1:
            raise poplib.error_proto(b"-ERR [SYS/PERM] Cannot delete")
        self.deleted.append(number)
        return b"+OK"

    def quit(self) -> bytes:
        self.quit_sent = True
        return b"+OK"

    def close(self) -> None:
        pass


@pytest.fixture
def server() -> RefusingPop:
    return RefusingPop()


@pytest.fixture
def source(server: RefusingPop) -> PopSource:
    return PopSource(
        Endpoint("box", "pop.example.com", 110, 5.0, None),
        username="u",
        password="p",
        state=InMemorySourceState(),
        client_factory=lambda _endpoint, _tls, _trace: server,  # type: ignore[arg-type,return-value]
    )


def test_a_mail_the_server_refuses_to_send_is_skipped_with_why_and_the_next_is_read(source):
    items = list(source.fetch_many(source.list_new(10)))

    assert [(i.ref, i.raw, i.error_class) for i in items] == [
        ("uid-one", None, "MailUnreadable"),
        ("uid-two", MAILS[2], "MailTooLarge"),  # the default: unused when raw is set
    ]
    assert "Message is damaged" in (items[0].skipped or "")


def test_a_deletion_the_server_refuses_leaves_the_others_deleted_and_committed(source, server):
    with pytest.raises(NotMarked) as caught:
        source.mark_handed_off(["uid-one", "uid-two"])

    assert list(caught.value.failures) == ["uid-one"]
    assert "Cannot delete" in caught.value.failures["uid-one"]
    assert server.deleted == [2] and server.quit_sent, "the other deletion was committed"


def test_a_leftover_the_server_refuses_to_delete_is_remembered_not_fetched_again(server):
    # Given a mail handed off in a session that ended before QUIT, whose DELE is refused
    state = InMemorySourceState()
    state.mark_taken([("uid-one", None)], "handed_off")
    source = PopSource(
        Endpoint("box", "pop.example.com", 110, 5.0, None),
        username="u",
        password="p",
        state=state,
        client_factory=lambda _endpoint, _tls, _trace: server,  # type: ignore[arg-type,return-value]
    )

    # When two rounds list the mailbox
    first, second = source.list_new(10), source.list_new(10)

    # Then it is not new in either, and stays remembered while the server keeps it
    assert first == second == ["uid-two"]
    assert state.taken_reasons() == {"uid-one": "unmarked"}
