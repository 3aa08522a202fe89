"""The IMAP/IMAPS adapter against a real Dovecot, real proxies and the real store (SQLite).

Each test has a Dovecot user of its own; mail goes in over IMAP APPEND, so Dovecot assigns
UIDs as it does for mail that arrives while Mailroom polls.
"""

from __future__ import annotations

import base64
import logging
import re
import socket
import subprocess
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from contract.test_mail_source import (
    ErrorFolderContract,
    MailSourceContract,
    SourceWith,
)
from faults import FaultyRelay, garble_first
from mailservers import Dovecot
from servers import free_port

from contracts.settings import MailboxSettings
from services.poller.adapters import SqlSourceState
from services.poller.handler import message_id_of
from services.poller.sources import open_source
from services.poller.sources.base import MailSource, NotMarked
from services.poller.sources.debug import ProtocolTrace, redact_line
from services.poller.sources.imap import ImapSource
from services.poller.sources.tokens import StaticTokenProvider
from services.runtime.clock import SystemClock
from services.runtime.errors import ConfigError, InfraError
from services.runtime.store import Store

pytestmark = pytest.mark.infra

MAILDEBUG = "mailroom.maildebug"
Open = Callable[..., ImapSource]


def new_user(dovecot: Dovecot) -> tuple[str, str]:
    user, password = f"u{uuid.uuid4().hex[:10]}@example.test", uuid.uuid4().hex
    dovecot.add_user(user, password)
    return user, password


def mail(subject: str, body: str = "hello") -> bytes:
    return (
        f"From: customer@example.org\r\nTo: help@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.org>\r\n\r\n{body}\r\n"
    ).encode()


def settings(dovecot: Dovecot, user: str, password: str, /, **changes: object) -> MailboxSettings:
    """IMAPS to ``localhost`` (the name on Dovecot's certificate), trusting its CA."""
    fields: dict[str, object] = {
        "name": "support",
        "protocol": "imaps",
        "host": "localhost",
        "port": dovecot.imaps_port,
        "username": user,
        "password": password,
        "timeout_seconds": 20,
        "import_existing": "all",
        "tls": {"verify": True, "ca_file": str(dovecot.ca_file)},
    }
    return MailboxSettings.model_validate(fields | changes)


# auth: oauth needs an OAuth client in the settings; the token itself comes from a provider.
OAUTH = {
    "auth": "oauth",
    "client_id": "mailroom",
    "token_url": "https://127.0.0.1:9/common/oauth2/v2.0/token",
}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'mailroom.db'}")
    store.migrate()
    return store


def opener(dovecot: Dovecot, store: Store) -> tuple[Open, list[ImapSource], tuple[str, str]]:
    user, password = new_user(dovecot)
    opened: list[ImapSource] = []

    def make(tokens: StaticTokenProvider | None = None, **changes: object) -> ImapSource:
        box = settings(dovecot, user, password, **changes)
        source = ImapSource(box, SqlSourceState(store, box.name, SystemClock()), tokens=tokens)
        opened.append(source)
        return source

    return make, opened, (user, password)


@pytest.fixture
def account(dovecot: Dovecot, store: Store) -> Iterator[tuple[Open, str, str]]:
    """``(open, user, password)``: ``open(**settings)`` gives an ImapSource on the store."""
    make, opened, (user, password) = opener(dovecot, store)
    yield make, user, password
    for source in opened:
        source.close()


@pytest.fixture
def nomove_account(dovecot_nomove: Dovecot, store: Store) -> Iterator[tuple[Open, str, str]]:
    make, opened, (user, password) = opener(dovecot_nomove, store)
    yield make, user, password
    for source in opened:
        source.close()


def refs_of(dovecot: Dovecot, user: str, folder: str = "INBOX") -> list[str]:
    validity = dovecot.uidvalidity(user, folder)
    return [f"{validity}:{uid}" for uid in dovecot.imap_uids(user, folder)]


def bodies(source: ImapSource, refs: list[str]) -> list[bytes | None]:
    return [f.raw for f in source.fetch_many(refs)]


def hand_off(source: ImapSource, store: Store, refs: list[str]) -> None:
    """What the poller does after a confirmed publish: remember, then mark on the server."""
    state = SqlSourceState(store, "support", SystemClock())
    raws = dict(zip(refs, bodies(source, refs), strict=True))
    state.mark_taken([(ref, message_id_of(raw or b"")) for ref, raw in raws.items()], "handed_off")
    source.mark_handed_off(refs)


def trace_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == MAILDEBUG)


def kick(dovecot: Dovecot, user: str) -> None:
    """Make Dovecot drop every connection of ``user``, as a server restart would."""
    config = dovecot.workdir / "dovecot.conf"
    subprocess.run(["doveadm", "-c", str(config), "kick", user], check=True, capture_output=True)


# -- the shared contract ------------------------------------------------------------------------


class TestImapSource(MailSourceContract, ErrorFolderContract):
    """The shared contract, on a real Dovecot over IMAPS."""

    @pytest.fixture
    def source_with(self, dovecot: Dovecot, account) -> Iterator[SourceWith]:
        open_imap, user, _ = account

        def make(mails: list[bytes]) -> tuple[MailSource, list[str]]:
            if mails:
                dovecot.deliver_many(user, mails)
            return open_imap(), refs_of(dovecot, user)

        yield make


# -- connecting: IMAPS, IMAP, STARTTLS, proxies ------------------------------------------------


@pytest.mark.parametrize(
    "transport",
    [
        {},
        {"protocol": "imap", "host": "127.0.0.1", "port": "imap"},
        {"protocol": "imap", "port": "imap", "starttls": True},
    ],
    ids=["imaps", "imap", "imap+starttls"],
)
def test_lists_fetches_and_marks(dovecot, account, transport) -> None:
    open_imap, user, _ = account
    raws = [mail("one"), mail("two")]
    dovecot.deliver_many(user, raws)
    if transport.get("port") == "imap":
        transport = transport | {"port": dovecot.imap_port}
    source = open_imap(**transport)

    refs = source.list_new(10)

    assert refs == refs_of(dovecot, user)
    assert bodies(source, refs) == raws
    assert dovecot.imap_flags(user) == {1: set(), 2: set()}, "fetching marks nothing"
    source.mark_handed_off(refs[:1])
    assert dovecot.imap_flags(user) == {1: {"\\Seen"}, 2: set()}
    assert source.list_new(10) == refs[1:]


def test_handed_off_mail_is_not_listed_again_in_a_later_session(dovecot, account, store) -> None:
    open_imap, user, _ = account
    dovecot.deliver_many(user, [mail("one"), mail("two")])
    first = open_imap()
    refs = first.list_new(10)
    hand_off(first, store, refs[:1])
    first.close()

    assert open_imap().list_new(10) == refs[1:]


@pytest.mark.parametrize("proxy", ["http_proxy", "socks_proxy"])
def test_imap_through_a_proxy(dovecot, account, proxy, request) -> None:
    open_imap, user, _ = account
    raw = mail("through a proxy")
    dovecot.deliver(user, raw)
    url = request.getfixturevalue(proxy).url
    source = open_imap(protocol="imap", host="127.0.0.1", port=dovecot.imap_port, proxy=url)

    [ref] = source.list_new(10)

    assert bodies(source, [ref]) == [raw]


def test_imaps_through_a_socks_proxy_verifies_the_certificate(dovecot, account, socks_proxy):
    open_imap, user, _ = account
    dovecot.deliver(user, mail("one"))

    assert len(open_imap(proxy=socks_proxy.url).list_new(10)) == 1


# -- import_existing and tracking in the store ----------------------------------------------------


def test_mail_a_person_already_read_is_fetched_with_import_existing_all(dovecot, account):
    open_imap, user, _ = account
    dovecot.deliver(user, mail("read in another client"), seen=True)

    assert open_imap(import_existing="all").list_new(10) == refs_of(dovecot, user)


def test_mail_already_read_is_skipped_with_import_existing_unread(dovecot, account) -> None:
    open_imap, user, _ = account
    dovecot.deliver(user, mail("read"), seen=True)
    dovecot.deliver(user, mail("unread"))
    source = open_imap(import_existing="unread")

    assert source.list_new(10) == refs_of(dovecot, user)[1:]
    dovecot.deliver(user, mail("read after the first connection"), seen=True)
    assert source.list_new(10) == refs_of(dovecot, user)[1:]


def test_import_existing_none_takes_no_old_mail_but_takes_new_mail(dovecot, account) -> None:
    open_imap, user, _ = account
    dovecot.deliver_many(user, [mail("old"), mail("old too")])
    source = open_imap(import_existing="none")

    assert source.list_new(10) == []
    dovecot.deliver(user, mail("new"))
    assert source.list_new(10) == refs_of(dovecot, user)[2:]


def test_after_a_uidvalidity_change_nothing_taken_is_fetched_again(dovecot, account, store):
    # Given a person's read mail and a handed-off mail from before, and one still new
    open_imap, user, _ = account
    dovecot.deliver_many(user, [mail("read by a person")], seen=True)
    dovecot.deliver(user, mail("handed off"))
    time.sleep(1.1)  # INTERNALDATE has whole seconds: the first connection comes later
    first = open_imap(import_existing="unread")
    hand_off(first, store, first.list_new(10))
    still_new = mail("still new")
    dovecot.deliver(user, still_new)
    first.close()

    # When the server renumbers the folder, and more mail arrives
    old_validity = dovecot.uidvalidity(user)
    new_validity = dovecot.uidvalidity_change(user)
    newer = mail("after the change")
    dovecot.deliver(user, newer)

    # Then only the two mails never taken are new, under refs of the new UIDVALIDITY
    source = open_imap(import_existing="unread")
    refs = source.list_new(10)
    assert new_validity != old_validity
    assert [r.split(":")[0] for r in refs] == [str(new_validity)] * 2
    assert bodies(source, refs) == [still_new, newer]
    assert dovecot.imap_flags(user) == {1: {"\\Seen"}, 2: {"\\Seen"}, 3: set(), 4: set()}


def test_a_sample_fetch_records_nothing_and_skips_what_the_baseline_would(
    dovecot, account, store
) -> None:
    open_imap, user, _ = account
    read, unread = mail("read"), mail("unread")
    dovecot.deliver(user, read, seen=True)
    dovecot.deliver(user, unread)
    source = open_imap(import_existing="unread")

    assert source.fetch_oldest_unmarked() == unread
    assert SqlSourceState(store, "support", SystemClock()).cursor() is None
    assert dovecot.imap_flags(user) == {1: {"\\Seen"}, 2: set()}


def test_mail_over_the_size_limit_is_skipped_without_download(dovecot, account, caplog) -> None:
    open_imap, user, _ = account
    big, small = mail("big", body="x" * 120_000), mail("small")
    dovecot.deliver_many(user, [big, small])
    source = open_imap(max_mail_mb=0.05, debug=True)
    caplog.set_level(logging.INFO, logger=MAILDEBUG)

    fetched = list(source.fetch_many(source.list_new(10)))

    assert [f.raw for f in fetched] == [None, small]
    assert fetched[0].skipped == (
        "the mail is 0.1 MB, over this mailbox's limit of 0.05 MB (max_mail_mb)"
    )
    sizes = [int(n) for n in re.findall(r"\((\d+) bytes of literal data\)", trace_text(caplog))]
    assert sizes and max(sizes) < 100_000


def test_refs_of_another_uidvalidity_or_of_expunged_mail_are_left_out(dovecot, account) -> None:
    open_imap, user, _ = account
    dovecot.deliver(user, mail("one"))
    source = open_imap()
    [ref] = source.list_new(10)
    validity, uid = ref.split(":")

    assert bodies(source, [f"{int(validity) + 1}:{uid}", f"{validity}:999", "junk"]) == []


# -- error folder -------------------------------------------------------------------------------


def test_the_error_folder_is_created_and_mail_moved_with_move(dovecot, account, caplog) -> None:
    open_imap, user, _ = account
    dovecot.deliver_many(user, [mail("bad"), mail("good")])
    source = open_imap(debug=True)
    refs = source.list_new(10)
    caplog.set_level(logging.INFO, logger=MAILDEBUG)

    source.move_to_error_folder(refs[:1])

    assert re.search(r"> \S+ CREATE \"?Errors", trace_text(caplog))
    assert re.search(r"> \S+ UID MOVE 1 \"?Errors", trace_text(caplog))
    assert dovecot.folder_count(user, "Errors") == 1
    assert dovecot.imap_uids(user) == [2]
    assert source.error_folder_refs() == refs_of(dovecot, user, "Errors")


def test_without_move_the_mail_is_copied_and_expunged(dovecot_nomove, nomove_account, caplog):
    open_imap, user, _ = nomove_account
    dovecot_nomove.deliver_many(user, [mail("bad"), mail("good")])
    source = open_imap(debug=True)
    caplog.set_level(logging.INFO, logger=MAILDEBUG)

    source.move_to_error_folder(source.list_new(10)[:1])

    trace = trace_text(caplog)
    assert "UID COPY 1" in trace and "UID STORE 1 +FLAGS.SILENT (\\Deleted)" in trace
    assert "UID EXPUNGE 1" in trace and "MOVE" not in trace

    assert dovecot_nomove.folder_count(user, "Errors") == 1
    assert dovecot_nomove.imap_uids(user) == [2], "gone from INBOX, not just flagged \\Deleted"
    assert len(source.error_folder_refs()) == 1


def test_moved_back_to_the_inbox_mail_is_unread_and_new_again(dovecot, account, store) -> None:
    # Given a mail that was handed off, then dead-lettered into the error folder
    open_imap, user, _ = account
    raw = mail("retry me")
    dovecot.deliver(user, raw)
    source = open_imap()
    [ref] = source.list_new(10)
    hand_off(source, store, [ref])
    source.move_to_error_folder([ref])

    # When an admin moves it back
    source.move_to_inbox(source.error_folder_refs())

    # Then it is unread, and new under a new ref
    assert source.error_folder_refs() == []
    assert dovecot.imap_flags(user) == {2: set()}
    [again] = source.list_new(10)
    assert again != ref
    assert bodies(source, [again]) == [raw]


def test_moving_refs_that_are_gone_does_nothing(dovecot, account) -> None:
    open_imap, user, _ = account
    dovecot.deliver(user, mail("one"))
    source = open_imap()
    [ref] = source.list_new(10)
    source.move_to_error_folder([ref])
    [error_ref] = source.error_folder_refs()

    source.move_to_error_folder([ref])
    source.move_to_inbox([error_ref])
    source.move_to_inbox([error_ref, "1:1", "junk"])

    assert source.error_folder_refs() == []
    assert len(dovecot.imap_uids(user)) == 1


# -- OAuth --------------------------------------------------------------------------------------


def test_xoauth2_with_a_valid_token(dovecot, account) -> None:
    open_imap, user, _ = account
    token = uuid.uuid4().hex
    dovecot.add_token(token, user)
    dovecot.deliver(user, mail("one"))

    source = open_imap(tokens=StaticTokenProvider(token), password=None, **OAUTH)

    assert len(source.list_new(10)) == 1


def test_xoauth2_with_a_bad_token_says_to_re_authorize(dovecot, account) -> None:
    open_imap, user, _ = account
    source = open_imap(tokens=StaticTokenProvider("not-a-token"), **OAUTH)

    with pytest.raises(ConfigError) as err:
        source.list_new(10)

    assert str(err.value) == (
        f"mailbox 'support': the server refused the OAuth access token for {user!r}: "
        "re-authorize with `mailroom oauth authorize support`"
    )


class RevokedThenRenewed:
    """Tokens whose current one the server no longer takes; the refreshed one it does."""

    def __init__(self, current: str, renewed: str) -> None:
        self.current, self.renewed, self.refreshes = current, renewed, 0

    def access_token(self) -> str:
        return self.current

    def refreshed_token(self) -> str:
        self.refreshes += 1
        self.current = self.renewed
        return self.renewed


def test_a_token_refused_before_it_expired_is_refreshed_once_and_the_login_succeeds(
    dovecot, account
) -> None:
    open_imap, user, _ = account
    renewed = uuid.uuid4().hex
    dovecot.add_token(renewed, user)
    dovecot.deliver(user, mail("one"))
    tokens = RevokedThenRenewed("revoked-" + uuid.uuid4().hex, renewed)

    source = open_imap(tokens=tokens, password=None, **OAUTH)

    assert len(source.list_new(10)) == 1
    assert tokens.refreshes == 1


def test_oauth_without_a_token_provider_is_not_set_up(dovecot, account, store) -> None:
    _, user, password = account
    box = settings(dovecot, user, password, **OAUTH)

    with pytest.raises(ConfigError, match="OAuth is not set up for this mailbox: run `mailroom"):
        open_source(box, SqlSourceState(store, box.name, SystemClock()))


# -- errors: one sentence each ------------------------------------------------------------------


def error_of(source: ImapSource) -> ConfigError | InfraError:
    with pytest.raises((ConfigError, InfraError)) as err:
        source.list_new(10)
    return err.value


def test_each_setting_mistake_has_its_own_sentence(dovecot, account) -> None:
    open_imap, user, _ = account
    mistakes = {
        "password": open_imap(password="wrong"),
        "host": open_imap(host="no-such-host.invalid"),
        "port": open_imap(port=free_port()),
        "name": open_imap(host="127.0.0.1"),
        "ca": open_imap(tls={}),
        "proxy": open_imap(proxy=f"http://127.0.0.1:{free_port()}"),
        "folder": open_imap(folder="Nowhere"),
    }

    errors = {name: error_of(source) for name, source in mistakes.items()}

    assert all(isinstance(e, ConfigError) for e in errors.values()), errors
    text = {name: str(e) for name, e in errors.items()}
    assert text["password"] == (
        f"mailbox 'support': the server refused username {user!r} and its password: "
        "check `username` and `password`"
    )
    assert "unknown host 'no-such-host.invalid': check `host`" in text["host"]
    assert "refused the connection: check `port`" in text["port"]
    assert "is not valid for the name '127.0.0.1': set `host`" in text["name"]
    assert "self-signed or from an unknown authority: set tls.ca_file" in text["ca"]
    assert "cannot reach proxy http://127.0.0.1:" in text["proxy"]
    assert "will not open folder 'Nowhere' (Mailbox doesn't exist: Nowhere" in text["folder"]
    assert "fix `folder`" in text["folder"]
    assert len(set(text.values())) == len(text)


def test_a_connection_dropped_mid_session_is_an_infra_error(dovecot, account) -> None:
    open_imap, user, _ = account
    dovecot.deliver(user, mail("one"))
    source = open_imap()
    refs = source.list_new(10)
    kick(dovecot, user)

    with pytest.raises(InfraError, match="dropped the connection during FETCH") as err:
        list(source.fetch_many(refs))

    assert "what was handed off stays handed off" in str(err.value)
    assert source.list_new(10) == refs, "the next call connects again"


def test_a_server_that_never_greets_times_out_as_an_infra_error(account) -> None:
    open_imap, *_ = account
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never says a word
        port = silent.getsockname()[1]
        source = open_imap(protocol="imap", host="127.0.0.1", port=port, timeout_seconds=0.5)

        error = error_of(source)

    assert isinstance(error, InfraError)
    assert f"127.0.0.1:{port} stopped answering for 0.5 s" in str(error)


def test_tls_verify_false_warns_at_every_connection(dovecot, account, caplog) -> None:
    open_imap, *_ = account
    caplog.set_level(logging.WARNING, logger="services.poller.sources.net")

    for _ in range(2):
        source = open_imap(host="127.0.0.1", tls={"verify": False})
        source.list_new(10)
        source.close()

    warnings = [r for r in caplog.records if "verification is OFF" in r.getMessage()]
    assert len(warnings) == 2


def test_starttls_is_required_before_logging_in_when_asked(account) -> None:
    open_imap, *_ = account
    server = ScriptedImapServer()
    source = open_imap(protocol="imap", host="127.0.0.1", port=server.port, starttls=True)

    error = error_of(source)

    assert isinstance(error, ConfigError)
    assert "does not offer STARTTLS" in str(error) and "`protocol: imaps`" in str(error)
    assert not any(b"LOGIN" in line for line in server.received)


class ScriptedImapServer:
    """An IMAP server that offers no STARTTLS: Dovecot always does, so this one stands in.

    It answers CAPABILITY and LOGOUT and records every line it receives.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] scripted\r\n")
            for line in lines:
                self.received.append(line)
                tag, _, command = line.strip().partition(b" ")
                if command.upper() == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
                conn.sendall(tag + b" OK done\r\n")
        self._listener.close()


# -- email debug --------------------------------------------------------------------------------

MULTIPART = (
    b"From: customer@example.org\r\nTo: help@example.test\r\nSubject: Quarterly report\r\n"
    b"Message-ID: <report@example.org>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSECRET-BODY-TEXT here\r\n"
    b"--b1\r\nContent-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="report.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKU0VDUkVUUERG\r\n--b1--\r\n"
)


def test_debug_traces_the_session_and_the_mail_structure_without_secrets(
    dovecot, account, caplog
) -> None:
    open_imap, user, password = account
    dovecot.deliver(user, MULTIPART)
    caplog.set_level(logging.INFO, logger=MAILDEBUG)
    source = open_imap(debug=True)

    list(source.fetch_many(source.list_new(10)))

    trace = trace_text(caplog)
    assert f"LOGIN {user} ***" in trace and password not in trace
    assert "UID FETCH 1 (BODY.PEEK[])" in trace
    assert "Subject: Quarterly report" in trace
    assert "multipart/mixed" in trace and "text/plain charset=utf-8" in trace
    assert "application/pdf attachment 'report.pdf' base64 18 bytes" in trace
    assert "SECRET-BODY-TEXT" not in trace and "JVBERi0" not in trace


def test_debug_redacts_the_xoauth2_token(dovecot, account, caplog) -> None:
    open_imap, user, _ = account
    token = f"tok-{uuid.uuid4().hex}"
    dovecot.add_token(token, user)
    caplog.set_level(logging.INFO, logger=MAILDEBUG)

    open_imap(tokens=StaticTokenProvider(token), debug=True, **OAUTH).list_new(10)

    trace = trace_text(caplog)
    assert "AUTHENTICATE XOAUTH2" in trace
    assert token not in trace and "dXNlcj" not in trace  # the base64 of "user=..."


def test_without_debug_nothing_is_traced(dovecot, account, caplog) -> None:
    open_imap, user, _ = account
    dovecot.deliver(user, mail("one"))
    caplog.set_level(logging.DEBUG)

    source = open_imap()
    list(source.fetch_many(source.list_new(10)))

    traced = [r for r in caplog.records if r.name in (MAILDEBUG, "imapclient.imaplib")]
    assert traced == []


def test_redact_line_hides_imap_and_pop_credentials() -> None:
    assert redact_line(b'A1 LOGIN "jo doe" "s3cret"\r\n') == 'A1 LOGIN "jo doe" ***'
    assert redact_line(b"A2 AUTHENTICATE PLAIN AGpvAHMzY3JldA==\r\n") == (
        "A2 AUTHENTICATE PLAIN ***"
    )
    assert redact_line(b"PASS s3cret\r\n") == "PASS ***"
    assert redact_line(b"AUTH XOAUTH2 dXNlcj1q\r\n") == "AUTH XOAUTH2 ***"
    assert redact_line(b"APOP jo 0123abcd\r\n") == "APOP jo ***"
    assert redact_line(b"A3 UID FETCH 1 (BODY.PEEK[])\r\n") == "A3 UID FETCH 1 (BODY.PEEK[])"


def test_a_trace_redacts_sasl_responses_until_the_exchange_ends(caplog) -> None:
    caplog.set_level(logging.INFO, logger=MAILDEBUG)
    trace = ProtocolTrace("support")

    trace.sent(b"AUTH XOAUTH2\r\n")
    trace.received(b"+ \r\n")
    trace.sent(b"dXNlcj1qbwFhdXRoPUJlYXJlciBzZWNyZXQBAQ==\r\n")
    trace.received(b"+OK Logged in.\r\n")
    trace.sent(b"STAT\r\n")

    assert trace_text(caplog).splitlines() == [
        "mailbox=support > AUTH XOAUTH2",
        "mailbox=support < + ",
        "mailbox=support > ***",
        "mailbox=support < +OK Logged in.",
        "mailbox=support > STAT",
    ]


# -- non-ASCII credentials ---------------------------------------------------------------------

UMLAUT_PASSWORD = "Grüße-Ü1"


@pytest.mark.parametrize("protocol", ["imaps", "imap"])
def test_a_non_ascii_password_logs_in_as_utf8(dovecot, store, caplog, protocol) -> None:
    user = f"u{uuid.uuid4().hex[:10]}@example.test"
    dovecot.add_user(user, UMLAUT_PASSWORD)
    port = {"imaps": dovecot.imaps_port, "imap": dovecot.imap_port}[protocol]
    box = settings(dovecot, user, UMLAUT_PASSWORD, protocol=protocol, port=port, debug=True)
    source = ImapSource(box, SqlSourceState(store, box.name, SystemClock()))
    caplog.set_level(logging.INFO, logger=MAILDEBUG)
    try:
        assert source.list_new(10) == []
    finally:
        source.close()

    trace = trace_text(caplog)
    sasl = base64.b64encode(f"\0{user}\0{UMLAUT_PASSWORD}".encode()).decode()
    assert "AUTHENTICATE PLAIN" in trace
    assert UMLAUT_PASSWORD not in trace and sasl not in trace


def test_a_refused_non_ascii_password_shows_no_part_of_it(dovecot, account) -> None:
    open_, _user, _password = account
    source = open_(password=UMLAUT_PASSWORD)

    with pytest.raises(ConfigError) as caught:
        source.list_new(10)

    message = str(caught.value)
    assert "refused" in message and "check `username` and `password`" in message
    for leak in ("Ü", "ü", "ß", "\\xdc", "position", "codec"):
        assert leak not in message


def test_a_library_error_during_login_never_quotes_the_password(account, monkeypatch) -> None:
    open_, _user, password = account

    def echoing_login(self, username: str, password: str) -> None:
        raise ValueError(f"cannot send {password!r}")

    monkeypatch.setattr("imapclient.IMAPClient.login", echoing_login)

    with pytest.raises(InfraError) as caught:
        open_().list_new(10)

    logged = "".join(traceback.format_exception_only(caught.value))
    # and what a log with exc_info shows of the exceptions it came from
    shown = caught.value
    while shown is not None:
        logged += f"{shown!r}"
        shown = shown.__cause__ or (None if shown.__suppress_context__ else shown.__context__)
    assert password not in logged
    assert "check `username` and `password`" in str(caught.value)


def test_a_flag_the_server_refuses_fails_those_mails_only(dovecot, account) -> None:
    open_imap, user, _ = account
    dovecot.deliver(user, mail("one"))
    refusal = garble_first(b"OK Store completed", b"NO [SERVERBUG] Cannot store")
    relay = FaultyRelay(dovecot.imap_port, refusal)
    try:
        source = open_imap(protocol="imap", host="127.0.0.1", port=relay.port)
        refs = source.list_new(10)
        with pytest.raises(NotMarked) as caught:
            source.mark_handed_off(refs)
        assert source.list_new(10) == [], "taken all the same: Mailroom reads the store"
    finally:
        relay.close()

    assert list(caught.value.failures) == refs
    assert "Cannot store" in caught.value.failures[refs[0]]
