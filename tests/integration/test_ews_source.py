"""The EWS adapter with the real exchangelib against a fake Exchange server over TLS.

The fake (``tests/ews_server.py``) speaks SOAP over HTTPS on 127.0.0.1 with a private CA; it
keeps mail in memory, so tests read its inbox and folders directly.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from contract.test_mail_source import MAILS, ErrorFolderContract, MailSourceContract, SourceWith
from ews_server import FakeEws, Fault
from exchangelib.protocol import CachingProtocol

from contracts.settings import MailboxSettings
from services.poller.sources import SOURCES, open_source
from services.poller.sources.base import MailSource, Throttled
from services.poller.sources.ews import EwsSource
from services.poller.sources.needs import SourceNeeds
from services.poller.sources.tokens import StaticTokenProvider, TokenProvider
from services.runtime.errors import ConfigError, InfraError

USER = "help@example.test"
PASSWORD = "s3cret-Passw0rd"
MAILDEBUG = "mailroom.maildebug"
# auth: oauth needs an OAuth client in the settings; the token itself comes from a provider.
OAUTH = {
    "auth": "oauth",
    "client_id": "mailroom",
    "token_url": "https://127.0.0.1:9/contoso/oauth2/v2.0/token",
}

Open = Callable[..., EwsSource]


def mail(subject: str, body: str = "hello") -> bytes:
    return (
        f"From: customer@example.org\r\nTo: {USER}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.org>\r\n\r\n{body}\r\n"
    ).encode()


def settings(ews: FakeEws, /, **changes: object) -> MailboxSettings:
    fields: dict[str, object] = {
        "name": "support",
        "protocol": "ews",
        "connect_url": ews.url,
        "username": USER,
        "password": PASSWORD,
        "timeout_seconds": 10,
        "tls": {"verify": True, "ca_file": str(ews.ca_file)},
    }
    return MailboxSettings.model_validate(fields | changes)


@pytest.fixture
def ews(tmp_path: Path) -> Iterator[FakeEws]:
    with FakeEws(tmp_path / "ews", users={USER: PASSWORD}) as server:
        yield server


@pytest.fixture
def waits() -> list[float]:
    """The waits a source made (its sleep function records instead of sleeping)."""
    return []


@pytest.fixture
def opened() -> Iterator[list[EwsSource]]:
    sources: list[EwsSource] = []
    yield sources
    for source in sources:
        source.close()


def opener(ews: FakeEws, waits: list[float], opened: list[EwsSource]) -> Open:
    def make(tokens: TokenProvider | None = None, **changes: object) -> EwsSource:
        box = settings(ews, **changes)
        needs = dataclasses.replace(SourceNeeds.plain(box, tokens=tokens), sleep=waits.append)
        source = EwsSource(box, needs)
        opened.append(source)
        return source

    return make


@pytest.fixture
def open_ews(ews: FakeEws, waits: list[float], opened: list[EwsSource]) -> Open:
    return opener(ews, waits, opened)


def trace_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == MAILDEBUG)


def error_of(source: EwsSource) -> Exception:
    with pytest.raises((ConfigError, InfraError)) as caught:
        source.list_new(10)
    return caught.value


# -- the shared contract ------------------------------------------------------------------------


class TestEwsSource(MailSourceContract, ErrorFolderContract):
    """The shared contract, on the fake Exchange server over HTTPS with basic auth."""

    @pytest.fixture
    def source_with(self, ews: FakeEws, open_ews: Open) -> Iterator[SourceWith]:
        def make(mails: list[bytes]) -> tuple[MailSource, list[str]]:
            refs = [ews.deliver(raw) for raw in mails]
            return open_ews(), refs

        yield make


def test_the_registry_opens_ews_mailboxes(ews: FakeEws) -> None:
    ews.deliver(MAILS[0])
    box = settings(ews)

    source = open_source(box, state=None)  # type: ignore[arg-type]  # EWS keeps no state
    try:
        assert isinstance(source, EwsSource)
        assert source.list_new(10) == [m.item_id for m in ews.inbox()]
    finally:
        source.close()
    assert SOURCES["ews"].capabilities.error_folder


# -- listing and marking -------------------------------------------------------------------------


def test_listing_pages_past_the_servers_page_cap_oldest_first(tmp_path, waits, opened) -> None:
    with FakeEws(tmp_path / "ews", users={USER: PASSWORD}, page_cap=3) as ews:
        refs = [ews.deliver(mail(f"m{n}")) for n in range(11)]
        source = opener(ews, waits, opened)()

        assert source.list_new(100) == refs
        assert source.list_new(5) == refs[:5]
        assert ews.operations().count("FindItem") >= 4 + 2, "one page of 3 at a time"


def test_mail_is_marked_read_only_when_handed_off(ews: FakeEws, open_ews: Open) -> None:
    refs = [ews.deliver(mail("one")), ews.deliver(mail("two"))]
    source = open_ews()

    fetched = list(source.fetch_many(source.list_new(10)))
    assert [f.ref for f in fetched] == refs
    assert [m.is_read for m in ews.inbox()] == [False, False]

    source.mark_handed_off(refs[:1])

    assert [m.is_read for m in ews.inbox()] == [True, False]
    assert "UpdateItem" in ews.operations()
    assert source.list_new(10) == refs[1:]


def test_a_mail_over_the_size_limit_is_not_downloaded(ews: FakeEws, open_ews: Open) -> None:
    small, big = ews.deliver(mail("small")), ews.deliver(mail("big", "x" * 4000))
    source = open_ews(max_mail_mb=0.002)  # about 2 KB

    fetched = {f.ref: f for f in source.fetch_many([small, big])}

    assert fetched[small].raw is not None
    assert fetched[big].raw is None
    assert "over this mailbox's limit of 0.002 MB (max_mail_mb)" in (fetched[big].skipped or "")


def test_odd_and_large_mails_come_back_byte_for_byte(ews: FakeEws, open_ews: Open) -> None:
    odd = [
        b"Subject: bare LF\nMessage-ID: <lf@x>\n\nline\n",
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n\x00\x01\xff\xfe binary\r\n",
        b"No-Header-End: true",
        mail("big", "A" * 3_000_000),
    ]
    refs = [ews.deliver(raw) for raw in odd]
    source = open_ews()

    assert [f.raw for f in source.fetch_many(source.list_new(10))] == odd
    assert source.list_new(10) == refs


# -- error folder ---------------------------------------------------------------------------------


def test_the_error_folder_is_created_under_the_inbox_when_missing(ews, open_ews) -> None:
    [ref, _] = [ews.deliver(mail("bad")), ews.deliver(mail("good"))]
    source = open_ews()

    source.move_to_error_folder([ref])

    assert "CreateFolder" in ews.operations()
    [moved] = ews.folder("Errors") or []
    assert moved.item_id != ref, "a move gives the mail a new id"
    assert source.error_folder_refs() == [moved.item_id]
    assert len(ews.inbox()) == 1


def test_an_existing_error_folder_is_found_and_used(ews: FakeEws, open_ews: Open) -> None:
    ews.add_folder("Failed mail")
    ref = ews.deliver(mail("bad"))
    source = open_ews(error_folder={"name": "Failed mail"})

    source.move_to_error_folder([ref])

    assert "CreateFolder" not in ews.operations()
    assert len(ews.folder("Failed mail") or []) == 1
    assert ews.folder_names().count("Failed mail") == 1


def test_mail_moved_back_is_unread_in_the_inbox_and_fetched_again(ews, open_ews) -> None:
    raw = mail("retry me")
    ref = ews.deliver(raw)
    source = open_ews()
    source.mark_handed_off([ref])
    source.move_to_error_folder([ref])
    assert (ews.folder("Errors") or [])[0].is_read

    source.move_to_inbox(source.error_folder_refs())

    [back] = ews.inbox()
    assert not back.is_read
    assert source.list_new(10) == [back.item_id]
    assert source.fetch_raw(back.item_id) == raw


# -- throttling -----------------------------------------------------------------------------------


def test_server_busy_with_a_short_back_off_is_waited_out(ews, open_ews, waits) -> None:
    ref = ews.deliver(mail("one"))
    ews.fail_next("FindItem", Fault.busy(back_off_ms=20), times=2)
    source = open_ews()

    assert source.list_new(10) == [ref]
    assert waits == [0.02, 0.02]


def test_a_server_that_stays_busy_ends_the_round_throttled(ews, open_ews, waits) -> None:
    ews.deliver(mail("one"))
    ews.fail_next("FindItem", Fault.busy(back_off_ms=20), times=10)
    source = open_ews()

    with pytest.raises(Throttled) as caught:
        source.list_new(10)

    assert len(waits) == 2
    assert caught.value.retry_after == 0.02
    assert "'support'" in str(caught.value) and "asked to slow down" in str(caught.value)


def test_a_long_back_off_is_not_waited_here(ews, open_ews, waits) -> None:
    ews.fail_next("FindItem", Fault.busy(back_off_ms=300_000))
    source = open_ews()

    with pytest.raises(Throttled) as caught:
        source.list_new(10)

    assert waits == []
    assert caught.value.retry_after == 300


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_honoured(ews, open_ews, waits, status) -> None:
    raw = mail("one")
    ref = ews.deliver(raw)
    ews.fail_next("GetItem", Fault.http(status, retry_after=1))
    source = open_ews()

    assert source.fetch_raw(ref) == raw
    assert waits == [1.0]


def test_a_503_without_retry_after_is_an_infra_error(ews, open_ews, waits) -> None:
    ews.fail_next("FindItem", Fault.http(503))
    error = error_of(open_ews())

    assert type(error) is InfraError
    assert "answered HTTP 503" in str(error) and waits == []


# -- setting mistakes: one sentence each -----------------------------------------------------------


def test_a_wrong_password_says_to_check_username_and_password(ews, open_ews) -> None:
    error = error_of(open_ews(password="wrong"))

    assert isinstance(error, ConfigError)
    assert str(error) == (
        f"mailbox 'support': the server refused username {USER!r} and its password: "
        "check `username` and `password`"
    )
    assert "wrong" not in str(error)


@pytest.mark.parametrize("fault", [None, Fault.html()])
def test_a_wrong_connect_url_names_connect_url(ews, open_ews, fault) -> None:
    if fault:
        ews.fail_next("*", fault)
        source = open_ews()
    else:
        source = open_ews(connect_url=ews.url.replace("/EWS/Exchange.asmx", "/owa/"))

    error = error_of(source)

    assert isinstance(error, ConfigError)
    assert "check `connect_url`" in str(error) and "mailbox 'support'" in str(error)


def test_an_unknown_ca_names_tls_ca_file(ews, open_ews) -> None:
    error = error_of(open_ews(tls={}))

    assert isinstance(error, ConfigError)
    assert "set tls.ca_file to the CA that signed it" in str(error)


def test_a_server_that_is_down_is_an_infra_error(ews, open_ews) -> None:
    url = ews.url
    ews.stop()

    error = error_of(open_ews(connect_url=url))

    assert type(error) is InfraError
    assert "mailbox 'support'" in str(error)


def test_a_mime_download_cut_short_is_an_infra_error_and_marks_nothing(ews, open_ews) -> None:
    refs = [ews.deliver(mail("one")), ews.deliver(mail("two"))]
    ews.fail_next("GetItem", Fault.cut(), after=1)  # the sizes pass, the download is cut
    source = open_ews()

    with pytest.raises(InfraError) as caught:
        list(source.fetch_many(source.list_new(10)))

    assert "cut short" in str(caught.value)
    assert [m.is_read for m in ews.inbox()] == [False, False]
    assert source.list_new(10) == refs


# -- OAuth ----------------------------------------------------------------------------------------


class RefreshingProvider:
    """Hands out ``old`` until asked to refresh, then ``new``; counts the refreshes."""

    def __init__(self, old: str, new: str) -> None:
        self.current, self.new, self.refreshed = old, new, 0

    def access_token(self) -> str:
        return self.current

    def refreshed_token(self) -> str:
        self.refreshed += 1
        self.current = self.new
        return self.current


def test_oauth_sends_the_providers_token_as_bearer(ews, open_ews) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    ews.add_token(token)
    ref = ews.deliver(mail("one"))

    source = open_ews(tokens=StaticTokenProvider(token), password=None, **OAUTH)

    assert source.list_new(10) == [ref]
    assert set(ews.logins) == {("Bearer", token)}


def test_a_refused_token_is_refreshed_once_and_the_call_goes_on(ews, open_ews) -> None:
    ews.add_token("fresh")
    ref = ews.deliver(mail("one"))
    tokens = RefreshingProvider("stale", "fresh")
    source = open_ews(tokens=tokens, password=None, **OAUTH)

    assert source.list_new(10) == [ref]
    assert tokens.refreshed == 1
    assert ews.logins[-1] == ("Bearer", "fresh")


def test_a_token_refused_after_refresh_says_to_re_authorize(ews, open_ews) -> None:
    tokens = RefreshingProvider("stale", "also-stale")
    error = error_of(open_ews(tokens=tokens, password=None, **OAUTH))

    assert isinstance(error, ConfigError)
    assert str(error) == (
        f"mailbox 'support': the server refused the OAuth access token for {USER!r}: "
        "re-authorize with `mailroom oauth authorize support`"
    )
    assert tokens.refreshed == 1


def test_oauth_without_a_token_provider_is_not_set_up(ews) -> None:
    box = settings(ews, **OAUTH)

    with pytest.raises(ConfigError, match="OAuth is not set up for this mailbox: run `mailroom"):
        open_source(box, state=None)  # type: ignore[arg-type]


# -- debug ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["basic", "oauth"])
def test_debug_traces_operations_without_secrets_or_bodies(ews, open_ews, caplog, auth) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    ews.add_token(token)
    ews.deliver(mail("Quarterly report", "SECRET-BODY-TEXT"))
    caplog.set_level(logging.INFO, logger=MAILDEBUG)
    oauth = dict(OAUTH, tokens=StaticTokenProvider(token)) if auth == "oauth" else {}
    source = open_ews(debug=True, **oauth)

    refs = source.list_new(10)
    list(source.fetch_many(refs))
    source.mark_handed_off(refs)

    trace = trace_text(caplog)
    for operation in ("GetFolder", "FindItem", "GetItem", "UpdateItem"):
        assert f"{operation} -> HTTP 200" in trace
    assert "Subject: Quarterly report" in trace
    assert PASSWORD not in trace and token not in trace and "SECRET-BODY-TEXT" not in trace


def test_without_debug_nothing_is_traced(ews, open_ews, caplog) -> None:
    ews.deliver(mail("one"))
    caplog.set_level(logging.DEBUG, logger=MAILDEBUG)

    open_ews().list_new(10)

    assert trace_text(caplog) == ""


# -- one process, many mailboxes ------------------------------------------------------------------


def test_mailboxes_with_other_tls_settings_do_not_share_exchangelib_state(
    tmp_path, waits, opened
) -> None:
    with (
        FakeEws(tmp_path / "a", users={USER: PASSWORD}) as first,
        FakeEws(tmp_path / "b", users={USER: PASSWORD}) as second,
    ):
        a_ref, b_ref = first.deliver(mail("a")), second.deliver(mail("b"))
        open_first, open_second = opener(first, waits, opened), opener(second, waits, opened)
        a, b = open_first(), open_second()
        # the second server's endpoint, trusting the first server's CA only
        crossed = open_first(connect_url=second.url)

        assert a.list_new(10) == [a_ref]
        assert b.list_new(10) == [b_ref]
        assert "tls.ca_file" in str(error_of(crossed))
        assert a.list_new(10) == [a_ref] and b.list_new(10) == [b_ref]

        for source in (a, b, crossed):
            source.close()
        cached = [
            key for key in CachingProtocol._protocol_cache if key[0] in (first.url, second.url)
        ]
        assert cached == [], "closing drops the mailbox's protocol from exchangelib's cache"

        assert b.list_new(10) == [b_ref], "a closed source connects again when used"


def test_a_server_that_never_answers_times_out_as_an_infra_error(open_ews) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never says a word
        port = silent.getsockname()[1]
        source = open_ews(
            connect_url=f"https://127.0.0.1:{port}/EWS/Exchange.asmx", timeout_seconds=0.5
        )

        error = error_of(source)

    assert type(error) is InfraError
    assert "did not answer within 0.5 s" in str(error)


def test_the_fake_leaves_no_thread_running(tmp_path) -> None:
    before = set(threading.enumerate())
    with FakeEws(tmp_path / "ews", users={USER: PASSWORD}) as ews:
        ews.deliver(mail("one"))
        box = settings(ews)
        source = EwsSource(box, SourceNeeds.plain(box))
        source.list_new(10)
        # the client keeps its connection open: stopping must end it all the same
    source.close()

    assert set(threading.enumerate()) - before == set()


def test_mail_is_fetched_through_an_http_proxy(open_ews, ews: FakeEws, http_proxy) -> None:  # type: ignore[no-untyped-def]
    raw = mail("through the proxy")
    ref = ews.deliver(raw)
    source = open_ews(proxy=http_proxy.url)

    assert source.list_new(10) == [ref]
    assert source.fetch_raw(ref) == raw
    port = ews.port
    assert re.search(rf"CONNECT \S+:{port} HTTP", http_proxy.log_file.read_text()), "no proxy"
