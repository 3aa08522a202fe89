"""The POP3/POP3S source against a real Dovecot, directly and through real proxies.

Refs are checked against what Dovecot says over IMAP (``pop3_uidl_format = %08Xu%08Xv``:
UID then UIDVALIDITY), so these tests do not trust the adapter to name its own mails.
"""

from __future__ import annotations

import logging
import socket
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from contract.test_mail_source import MAILS, MailSourceContract, SourceWith, raw_mail
from faults import FaultyRelay, drop_after, garble_first
from mailservers import Dovecot
from servers import free_port

from contracts.settings import MailboxSettings
from services.poller.adapters import SqlSourceState
from services.poller.sources import open_source
from services.poller.sources.base import MailSource, NotMarked
from services.poller.sources.net import Endpoint
from services.poller.sources.pop import PopClient, PopSource, parse_pairs, unstuff
from services.runtime.clock import SystemClock
from services.runtime.errors import ConfigError, InfraError
from services.runtime.store import Store

pytestmark = pytest.mark.infra

PASSWORD = "pw"
Box = Callable[..., PopSource]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'mailroom.db'}")
    store.migrate()
    return store


@pytest.fixture
def user(dovecot: Dovecot) -> str:
    name = f"p{uuid.uuid4().hex[:10]}"
    dovecot.add_user(name, PASSWORD)
    return name


def settings(dovecot: Dovecot, user: str, **changes: object) -> MailboxSettings:
    """POP3S to ``localhost`` trusting the test CA, unless ``changes`` say otherwise."""
    fields: dict[str, object] = {
        "name": "box",
        "protocol": "pops",
        "host": "localhost",
        "port": dovecot.pop3s_port,
        "username": user,
        "password": PASSWORD,
        "timeout_seconds": 5,
        "import_existing": "all",
        "tls": {"verify": True, "ca_file": str(dovecot.ca_file)},
    }
    return MailboxSettings.model_validate(fields | changes)


@pytest.fixture
def box(dovecot: Dovecot, user: str, store: Store) -> Iterator[Box]:
    """Opens sources through the SOURCES table, on the real store; closes them afterwards."""
    opened: list[MailSource] = []

    def make(**changes: object) -> PopSource:
        mailbox = settings(dovecot, user, **changes)
        source = open_source(mailbox, SqlSourceState(store, mailbox.name, SystemClock()))
        assert isinstance(source, PopSource)
        opened.append(source)
        return source

    yield make
    for source in opened:
        source.close()


def server_refs(dovecot: Dovecot, user: str) -> list[str]:
    validity = dovecot.uidvalidity(user)
    return [f"{uid:08x}{validity:08x}" for uid in dovecot.imap_uids(user)]


def big_mail(size: int) -> bytes:
    line = b"0123456789" * 7 + b"\r\n"
    return b"Subject: big\r\nMessage-ID: <big@example.org>\r\n\r\n" + line * (size // len(line))


# -- contract ---------------------------------------------------------------------------------


class TestPopSource(MailSourceContract):
    @pytest.fixture
    def source_with(self, dovecot: Dovecot, user: str, box: Box) -> Iterator[SourceWith]:
        def make(mails: list[bytes]) -> tuple[MailSource, list[str]]:
            dovecot.deliver_many(user, mails)
            return box(), server_refs(dovecot, user)

        yield make


# -- connecting -------------------------------------------------------------------------------


def test_pop3s_with_a_ca_file_lists_and_fetches_exact_bytes(dovecot, user, box) -> None:
    dovecot.deliver_many(user, MAILS)
    source = box()

    refs = source.list_new(10)

    assert refs == server_refs(dovecot, user)
    assert [f.raw for f in source.fetch_many(refs)] == MAILS


def test_plain_pop3_lists_and_fetches(dovecot, user, box) -> None:
    dovecot.deliver(user, MAILS[0])
    source = box(protocol="pop", port=dovecot.pop3_port, host="127.0.0.1")

    [ref] = source.list_new(10)

    assert source.fetch_raw(ref) == MAILS[0]


def test_pop3_with_stls_upgrades_before_logging_in(dovecot, user, box, caplog) -> None:
    dovecot.deliver(user, MAILS[0])
    source = box(protocol="pop", port=dovecot.pop3_port, starttls=True, debug=True)

    with caplog.at_level(logging.INFO, logger="mailroom.maildebug"):
        [ref] = source.list_new(10)
        assert source.fetch_raw(ref) == MAILS[0]

    commands = [m.split(" > ")[1] for m in caplog.messages if " > " in m]
    assert commands.index("STLS") < commands.index(f"USER {user}")


def test_stls_missing_on_the_server_refuses_to_log_in(dovecot, user, box) -> None:
    relay = FaultyRelay(dovecot.pop3_port, garble_first(b"\r\nSTLS\r\n", b"\r\nXTLS\r\n"))
    try:
        source = box(protocol="pop", host="127.0.0.1", port=relay.port, starttls=True)
        with pytest.raises(ConfigError, match="does not offer STLS"):
            source.list_new(10)
    finally:
        relay.close()


@pytest.mark.parametrize("proxy", ["http_proxy", "socks_proxy"])
def test_through_a_proxy(proxy: str, request, dovecot, user, box) -> None:
    url = request.getfixturevalue(proxy).url
    dovecot.deliver(user, MAILS[1])
    source = box(proxy=url)

    [ref] = source.list_new(10)

    assert source.fetch_raw(ref) == MAILS[1]


# -- identity, hand-off and deletion ------------------------------------------------------------


def test_uidls_are_stable_refs_across_sessions(dovecot, user, box) -> None:
    dovecot.deliver_many(user, MAILS)
    first = box().list_new(10)
    dovecot.deliver(user, raw_mail(9))

    again = box().list_new(10)

    assert again[:3] == first == server_refs(dovecot, user)[:3]


def test_a_handed_off_mail_is_deleted_on_the_server(dovecot, user, box) -> None:
    dovecot.deliver_many(user, MAILS)
    source = box()
    refs = source.list_new(10)
    list(source.fetch_many(refs[:2]))

    source.mark_handed_off(refs[:2])

    assert server_refs(dovecot, user) == refs[2:]
    assert box().list_new(10) == refs[2:], "a second session sees the same"
    source.close()  # after QUIT: harmless


def test_the_same_source_reconnects_after_handing_off(dovecot, user, box) -> None:
    dovecot.deliver_many(user, MAILS)
    source = box()
    refs = source.list_new(10)
    source.mark_handed_off(refs[:1])

    assert source.fetch_raw(refs[1]) == MAILS[1]
    with pytest.raises(InfraError, match="no longer on the server"):
        source.fetch_raw(refs[0])


def test_a_session_that_fetched_without_handing_off_deletes_nothing(dovecot, user, box) -> None:
    dovecot.deliver_many(user, MAILS)
    source = box()
    refs = source.list_new(10)
    list(source.fetch_many(refs))

    source.close()

    assert server_refs(dovecot, user) == refs


def test_deletions_without_quit_are_rolled_back_by_the_server(dovecot, user) -> None:
    # What a crash between DELE and QUIT leaves: the source relies on this.
    dovecot.deliver_many(user, MAILS)
    refs = server_refs(dovecot, user)
    client = PopClient(Endpoint("box", "127.0.0.1", dovecot.pop3_port, timeout=5))
    client.user(user)
    client.pass_(PASSWORD)
    client.dele(1)

    client.close()  # no QUIT

    assert server_refs(dovecot, user) == refs


def test_refs_taken_and_gone_from_the_server_are_forgotten(dovecot, user, box, store) -> None:
    dovecot.deliver_many(user, MAILS)
    source = box()
    refs = source.list_new(10)
    state = SqlSourceState(store, "box", SystemClock())
    state.mark_taken([(refs[0], None)], "handed_off")
    source.mark_handed_off(refs[:1])

    assert source.list_new(10) == refs[1:]
    assert state.taken_refs() == set()


def test_refs_deleted_by_another_client_are_forgotten(dovecot, user, box, store) -> None:
    # Given three mails kept out by import_existing: none, so remembered as taken
    dovecot.deliver_many(user, MAILS)
    assert box(import_existing="none").list_new(10) == []
    state = SqlSourceState(store, "box", SystemClock())
    kept = server_refs(dovecot, user)

    # When a person deletes two of them in another client
    with dovecot.imap(user) as client:
        client.select("INBOX")
        client.store("1:2", "+FLAGS.SILENT", "(\\Deleted)")
        client.expunge()

    # Then the store keeps only the one the server still lists
    assert box(import_existing="none").list_new(10) == []
    assert state.taken_refs() == set(kept[2:])


def test_a_round_reads_the_store_as_often_whatever_it_keeps(dovecot, store) -> None:
    def reads_per_listing(mails: int) -> list[str]:
        user = f"p{uuid.uuid4().hex[:10]}"
        dovecot.add_user(user, PASSWORD)
        dovecot.deliver_many(user, [raw_mail(n) for n in range(mails)])
        mailbox = settings(dovecot, user, name=user, import_existing="none")
        source = open_source(mailbox, SqlSourceState(store, user, SystemClock()))
        source.list_new(10)  # the first connection remembers every mail
        statements: list[str] = []

        def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
            statements.append(statement)

        sa.event.listen(store.engine, "before_cursor_execute", count)
        try:
            assert source.list_new(10) == []
        finally:
            sa.event.remove(store.engine, "before_cursor_execute", count)
            source.close()
        return statements

    many, few = reads_per_listing(40), reads_per_listing(2)
    assert len(many) == len(few)
    assert len([s for s in many if "taken_refs" in s]) == 1, "one read of what it keeps"


# -- import_existing --------------------------------------------------------------------------


def test_import_existing_none_takes_only_mail_that_arrives_later(dovecot, user, box, store) -> None:
    dovecot.deliver_many(user, MAILS)

    assert box(import_existing="none").list_new(10) == []
    dovecot.deliver(user, raw_mail(7))

    later = box(import_existing="none").list_new(10)
    assert later == server_refs(dovecot, user)[3:]
    assert SqlSourceState(store, "box", SystemClock()).cursor() is not None


@pytest.mark.parametrize("setting", ["all", "unread"])
def test_import_existing_all_and_unread_take_every_mail(setting, dovecot, user, box) -> None:
    dovecot.deliver_many(user, MAILS)

    assert box(import_existing=setting).list_new(10) == server_refs(dovecot, user)


def test_a_sample_fetch_writes_nothing_to_the_store(dovecot, user, box, store) -> None:
    dovecot.deliver_many(user, MAILS)

    assert box(import_existing="none").fetch_oldest_unmarked() == MAILS[0]

    state = SqlSourceState(store, "box", SystemClock())
    assert state.cursor() is None and state.taken_refs() == set()
    assert len(server_refs(dovecot, user)) == 3


# -- size limit -------------------------------------------------------------------------------


def test_a_mail_over_the_limit_is_skipped_without_download(dovecot, user, box, caplog) -> None:
    dovecot.deliver_many(user, [MAILS[0], big_mail(120_000)])
    source = box(max_mail_mb=0.05, debug=True)

    with caplog.at_level(logging.INFO, logger="mailroom.maildebug"):
        small, big = source.fetch_many(source.list_new(10))

    assert small.raw == MAILS[0] and small.skipped is None
    assert big.raw is None
    assert big.skipped == "the mail is 0.1 MB, over this mailbox's limit of 0.05 MB (max_mail_mb)"
    assert any(m.endswith("> RETR 1") for m in caplog.messages)
    assert not any(m.endswith("> RETR 2") for m in caplog.messages)


def test_a_big_mail_under_the_limit_arrives_whole(dovecot, user, box) -> None:
    raw = big_mail(3_000_000) + b".starts with a dot\r\n..and two\r\n.\r\n"
    dovecot.deliver(user, raw)
    source = box()

    assert source.fetch_raw(source.list_new(1)[0]) == raw


def test_refs_no_longer_on_the_server_are_left_out(dovecot, user, box) -> None:
    dovecot.deliver_many(user, MAILS)
    source = box()
    refs = source.list_new(10)

    assert [f.ref for f in source.fetch_many(["gone", refs[1]])] == [refs[1]]


# -- errors: one sentence each ----------------------------------------------------------------


def failure(source: PopSource) -> str:
    with pytest.raises((ConfigError, InfraError)) as caught:
        source.list_new(10)
    return str(caught.value)


def test_each_setting_mistake_has_its_own_sentence(dovecot, user, box) -> None:
    wrong_password = failure(box(password="wrong"))
    unknown_host = failure(box(host="no-such-host.invalid"))
    refused_port = failure(box(port=free_port()))
    name_mismatch = failure(box(host="127.0.0.1"))
    self_signed = failure(box(tls={"verify": True}))

    assert wrong_password == (
        f"mailbox 'box': the server refused username '{user}' and its password: "
        "check `username` and `password`"
    )
    assert "unknown host 'no-such-host.invalid'" in unknown_host
    assert "refused the connection" in refused_port
    # The certificate names DNS:localhost only; an IP address is checked as an IP address.
    assert "not valid for" in name_mismatch and "'127.0.0.1'" in name_mismatch
    assert "self-signed or from an unknown authority" in self_signed
    everything = [wrong_password, unknown_host, refused_port, name_mismatch, self_signed]
    assert len(set(everything)) == 5
    assert all(m.count(". ") == 0 and "\n" not in m for m in everything), "one sentence each"


def test_wrong_password_is_a_config_error(box) -> None:
    with pytest.raises(ConfigError):
        box(password="wrong").fetch_oldest_unmarked()


def test_a_silent_server_is_an_infra_error_after_the_timeout(box) -> None:
    with socket.create_server(("127.0.0.1", free_port())) as silent:
        source = box(host="127.0.0.1", port=silent.getsockname()[1], timeout_seconds=0.5)
        with pytest.raises(InfraError, match="within 0.5 s"):
            source.list_new(10)


def test_a_connection_dropped_during_retr_is_an_infra_error_and_deletes_nothing(
    dovecot, user, box
) -> None:
    dovecot.deliver_many(user, [MAILS[0], big_mail(400_000)])
    relay = FaultyRelay(dovecot.pop3_port, drop_after(100_000))
    try:
        source = box(protocol="pop", host="127.0.0.1", port=relay.port)
        refs = source.list_new(10)
        fetched = source.fetch_many(refs)
        assert next(fetched).raw == MAILS[0]
        with pytest.raises(InfraError) as caught:
            next(fetched)
    finally:
        relay.close()

    assert str(caught.value) == (
        f"mailbox 'box': 127.0.0.1:{relay.port} dropped the connection during RETR; what was "
        "handed off stays handed off, the rest is fetched next round"
    )
    assert server_refs(dovecot, user) == refs


# -- debug trace and what POP does not have ---------------------------------------------------


def test_the_debug_trace_shows_commands_headers_and_structure_never_the_password(
    dovecot, user, box, caplog
) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    dovecot.add_user(user, secret)
    dovecot.deliver(user, MAILS[0])
    source = box(password=secret, debug=True)

    with caplog.at_level(logging.INFO, logger="mailroom.maildebug"):
        source.fetch_raw(source.list_new(1)[0])

    trace = "\n".join(caplog.messages)
    assert f"> USER {user}" in trace and "> PASS ***" in trace
    assert "> UIDL" in trace and "< +OK" in trace
    assert "Subject: mail 0" in trace and "text/plain" in trace
    assert secret not in trace
    assert "Body 0" not in trace, "bodies stay out of the log"


def test_no_trace_without_debug(dovecot, user, box, caplog) -> None:
    dovecot.deliver(user, MAILS[0])

    with caplog.at_level(logging.DEBUG, logger="mailroom.maildebug"):
        box().list_new(1)

    assert caplog.records == []


def test_error_folder_methods_refuse_clearly(dovecot, user, box) -> None:
    dovecot.deliver(user, MAILS[0])
    source = box()
    [ref] = source.list_new(1)

    assert source.supports_error_folder is False
    assert source.error_folder_refs() == []
    for move in (source.move_to_error_folder, source.move_to_inbox):
        with pytest.raises(ConfigError, match="POP has no folders"):
            move([ref])
    assert server_refs(dovecot, user) == [ref]


# -- pure helpers -----------------------------------------------------------------------------


def test_dot_stuffing_is_removed_from_every_line() -> None:
    assert unstuff(b"..a\r\nb\r\n...c\r\nd.\r\n") == b".a\r\nb\r\n..c\r\nd.\r\n"


def test_listing_lines_parse_into_numbers_and_values() -> None:
    assert parse_pairs([b"1 000000016b09d393", b"2 120"]) == [(1, "000000016b09d393"), (2, "120")]


def test_mail_handed_off_before_a_crash_is_deleted_in_the_next_round(
    dovecot, user, box, store
) -> None:
    # Given mail the poller handed off and recorded, whose session died before QUIT
    dovecot.deliver_many(user, MAILS)
    refs = box().list_new(10)
    SqlSourceState(store, "box", SystemClock()).mark_taken([(refs[0], None)], "handed_off")

    # When the next round lists the mailbox
    listed = box().list_new(10)

    # Then that mail is deleted on the server and the rest is new
    assert listed == refs[1:]
    assert server_refs(dovecot, user) == refs[1:]


@pytest.mark.parametrize("protocol", ["pops", "pop"])
def test_a_non_ascii_password_logs_in_as_utf8(dovecot, store, protocol) -> None:
    user, password = f"p{uuid.uuid4().hex[:10]}", "Grüße-Ü1"
    dovecot.add_user(user, password)
    port = {"pops": dovecot.pop3s_port, "pop": dovecot.pop3_port}[protocol]
    mailbox = settings(dovecot, user, password=password, protocol=protocol, port=port)
    source = open_source(mailbox, SqlSourceState(store, mailbox.name, SystemClock()))
    try:
        assert source.list_new(10) == []
    finally:
        source.close()


def test_a_refused_non_ascii_password_shows_no_part_of_it(box) -> None:
    message = failure(box(password="Grüße-Ü1"))

    assert "refused" in message and "check `username` and `password`" in message
    for leak in ("Ü", "ü", "ß", "position", "codec"):
        assert leak not in message


def test_a_library_error_during_login_never_quotes_the_password(box, monkeypatch) -> None:
    def echoing_pass(self, password: str) -> bytes:
        raise ValueError(f"cannot send {password!r}")

    monkeypatch.setattr(PopClient, "pass_", echoing_pass)

    with pytest.raises(InfraError) as caught:
        box(password="Secret-Value-42").list_new(10)

    logged = "".join(traceback.format_exception_only(caught.value))
    # and what a log with exc_info shows of the exceptions it came from
    shown = caught.value
    while shown is not None:
        logged += f"{shown!r}"
        shown = shown.__cause__ or (None if shown.__suppress_context__ else shown.__context__)
    assert "Secret-Value-42" not in logged
    assert "check `username` and `password`" in str(caught.value)


def test_a_deletion_the_server_refuses_fails_that_mail_only(dovecot, user, box) -> None:
    dovecot.deliver_many(user, MAILS)
    refusal = garble_first(b"+OK Marked to be deleted", b"-ERR [SYS/PERM] Cannot delete")
    relay = FaultyRelay(dovecot.pop3_port, refusal)
    try:
        source = box(protocol="pop", host="127.0.0.1", port=relay.port)
        refs = source.list_new(10)
        with pytest.raises(NotMarked) as caught:
            source.mark_handed_off(refs[:2])
    finally:
        relay.close()

    assert list(caught.value.failures) == [refs[0]]
    assert "Cannot delete" in caught.value.failures[refs[0]]
    # The session went on: the next mail's deletion was asked for and committed by QUIT
    left = server_refs(dovecot, user)
    assert refs[1] not in left and left[-1] == refs[-1]
