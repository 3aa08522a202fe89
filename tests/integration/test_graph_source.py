"""The Graph adapter against a fake Microsoft Graph mail API over TLS (tests/graph_server.py).

The fake refuses what Graph refuses (an inefficient filter, $top out of range, a property
messages do not have), so a request the client gets wrong fails here as it would in
production.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from certificates import ServerCertificates
from contract.test_mail_source import ErrorFolderContract, MailSourceContract, SourceWith, raw_mail
from graph_server import GraphServer
from servers import free_port

from contracts.settings import MailboxSettings
from services.poller.sources import capabilities, open_source
from services.poller.sources.base import MailSource, NotMarked, Throttled
from services.poller.sources.debug import ProtocolTrace
from services.poller.sources.graph import GraphSource, open_graph
from services.poller.sources.graph_client import GraphClient
from services.poller.sources.graph_folders import odata_string
from services.poller.sources.needs import SourceNeeds
from services.poller.sources.tokens import StaticTokenProvider
from services.runtime.errors import ConfigError, InfraError

TOKEN = "graph-access-token-5f3a"
USER = "help@example.com"
MAILDEBUG = "mailroom.maildebug"
Open = Callable[..., GraphSource]


def settings(graph: GraphServer, **changes: Any) -> MailboxSettings:
    fields: dict[str, Any] = {
        "name": "support",
        "protocol": "graph",
        "auth": "oauth",
        "client_id": "mailroom",
        "token_url": "https://login.example.test/contoso/oauth2/v2.0/token",
        "username": USER,
        "graph_endpoint": graph.endpoint,
        "timeout_seconds": 5,
        "tls": {"ca_file": str(graph.ca_file)},
    }
    return MailboxSettings.model_validate(fields | changes)


class Sleeps:
    """Records the waits asked for instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class RotatingTokens:
    """A provider whose current token the server refuses and whose refreshed one it takes."""

    def __init__(self, current: str, refreshed: str) -> None:
        self.current, self.refreshed, self.refreshes = current, refreshed, 0

    def access_token(self) -> str:
        return self.current

    def refreshed_token(self) -> str:
        self.refreshes += 1
        self.current = self.refreshed
        return self.refreshed


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[GraphServer]:
    with GraphServer(tmp_path / "graph", username=USER, tokens={TOKEN}) as server:
        yield server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def open_box(graph: GraphServer, sleeps: Sleeps) -> Iterator[Open]:
    """``open_box(tokens=..., trace=..., page_size=..., **settings)``: a GraphSource on the fake."""
    opened: list[GraphSource] = []

    def make(
        tokens: Any = None,
        trace: ProtocolTrace | None = None,
        page_size: int | None = None,
        **changes: Any,
    ) -> GraphSource:
        box = settings(graph, **changes)
        needs = SourceNeeds(tokens=tokens or StaticTokenProvider(TOKEN), trace=trace, sleep=sleeps)
        if page_size is None:
            source = open_graph(box, None, needs)  # type: ignore[arg-type]
        else:
            client = GraphClient(box, needs.http(box), needs.tokens, trace=trace, sleep=sleeps)  # type: ignore[arg-type]
            source = GraphSource(box, client, page_size=page_size)
        opened.append(source)
        return source

    yield make
    for source in opened:
        source.close()


def deliver_all(graph: GraphServer, mails: list[bytes]) -> list[str]:
    return [graph.deliver(raw) for raw in mails]


# -- the shared contract ------------------------------------------------------------------------


class TestGraphSource(MailSourceContract, ErrorFolderContract):
    """The shared contract, on the fake Graph over TLS."""

    @pytest.fixture
    def source_with(self, graph: GraphServer, open_box: Open) -> Iterator[SourceWith]:
        def make(mails: list[bytes]) -> tuple[MailSource, list[str]]:
            refs = deliver_all(graph, mails)
            return open_box(), refs

        yield make


# -- listing ----------------------------------------------------------------------------------


def test_all_unread_mail_is_listed_oldest_first_across_pages(graph: GraphServer, open_box: Open):
    # Given mails delivered out of order of arrival, more than a page holds
    start = datetime(2024, 5, 1, tzinfo=UTC)
    offsets = [4, 0, 3, 1, 2]
    ids = {
        graph.deliver(raw_mail(n), start + timedelta(minutes=m)): m for n, m in enumerate(offsets)
    }
    source = open_box(page_size=2)

    # When new mail is listed
    listed = source.list_new(10)

    # Then every mail comes, oldest first, through the server's page links
    assert listed == sorted(ids, key=ids.__getitem__)
    followed = [r for r in graph.requests() if "$skiptoken" in r.query]
    assert len(followed) == 2


def test_a_server_that_pages_smaller_than_asked_still_gives_every_mail(tmp_path: Path):
    with GraphServer(tmp_path / "g", tokens={TOKEN}, page_cap=3) as graph:
        refs = deliver_all(graph, [raw_mail(n) for n in range(7)])
        source = open_graph(settings(graph), None, SourceNeeds(tokens=StaticTokenProvider(TOKEN)))  # type: ignore[arg-type]
        try:
            assert source.list_new(100) == refs
            assert source.list_new(4) == refs[:4]
        finally:
            source.close()


def test_mail_already_read_is_not_new(graph: GraphServer, open_box: Open):
    graph.deliver(raw_mail(1), is_read=True)
    unread = graph.deliver(raw_mail(2))

    assert open_box().list_new(10) == [unread]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"$filter": "isRead eq false", "$orderby": "receivedDateTime asc"}, "InefficientFilter"),
        ({"$top": "0"}, "BadRequest"),
        ({"$top": "1001"}, "BadRequest"),
        ({"$select": "id,size"}, "RequestBroker--ParseUri"),
    ],
)
def test_the_fake_refuses_what_graph_refuses(graph: GraphServer, query: dict[str, str], code: str):
    # A client that sorted unread mail without the date in its filter would fail here first
    url = f"{graph.endpoint}/v1.0/users/{USER}/mailFolders/inbox/messages"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with requests.Session() as http:
        http.trust_env = False
        answer = http.get(url, params=query, headers=headers, verify=str(graph.ca_file), timeout=5)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == code


def test_the_fake_pages_by_ten_unless_told(graph: GraphServer):
    deliver_all(graph, [raw_mail(n) for n in range(12)])
    url = f"{graph.endpoint}/v1.0/users/{USER}/mailFolders/inbox/messages"
    with requests.Session() as http:
        http.trust_env = False
        page = http.get(
            url, headers={"Authorization": f"Bearer {TOKEN}"}, verify=str(graph.ca_file), timeout=5
        ).json()

    assert len(page["value"]) == 10
    assert page["@odata.nextLink"].startswith(f"{graph.endpoint}/v1.0/users/")


# -- marking ----------------------------------------------------------------------------------


def test_mail_is_marked_read_only_once_handed_off(graph: GraphServer, open_box: Open):
    refs = deliver_all(graph, [raw_mail(1), raw_mail(2)])
    source = open_box()

    source.list_new(10)
    list(source.fetch_many(refs))
    assert [m.is_read for m in graph.inbox()] == [False, False]

    source.mark_handed_off(refs[:1])
    assert [m.is_read for m in graph.inbox()] == [True, False]


def test_a_mail_graph_refuses_to_mark_is_named_and_the_others_are_marked(
    graph: GraphServer, open_box: Open
):
    refs = deliver_all(graph, [raw_mail(1), raw_mail(2)])
    graph.fail(f"/messages/{refs[0]}", 400, "ErrorInvalidRequest", method="PATCH")

    with pytest.raises(NotMarked) as caught:
        open_box().mark_handed_off(refs)

    assert list(caught.value.failures) == [refs[0]]
    assert [m.is_read for m in graph.inbox()] == [False, True]


def test_a_mail_over_the_size_limit_is_skipped_and_left_unread(graph: GraphServer, open_box: Open):
    big = raw_mail(1) + b"x" * (1024 * 1024)
    ref = graph.deliver(big)

    [fetched] = open_box(max_mail_mb=0.5).fetch_many([ref])

    assert fetched.raw is None
    assert "max_mail_mb" in (fetched.skipped or "")
    assert graph.inbox()[0].is_read is False


# -- the error folder and immutable ids ----------------------------------------------------------


def test_the_error_folder_is_created_once_then_found(graph: GraphServer, open_box: Open):
    refs = deliver_all(graph, [raw_mail(1), raw_mail(2)])

    open_box().move_to_error_folder(refs[:1])
    open_box().move_to_error_folder(refs[1:])

    assert graph.child_folders() == ["Errors"]
    creates = [
        r for r in graph.requests() if r.method == "POST" and r.path.endswith("childFolders")
    ]
    assert len(creates) == 1
    assert [m.id for m in graph.folder_mail("Errors") or []] == refs


def test_an_error_folder_name_with_a_quote_is_found(graph: GraphServer, open_box: Open):
    ref = graph.deliver(raw_mail(1))
    graph.create_folder("Bob's errors")

    open_box(error_folder={"name": "Bob's errors"}).move_to_error_folder([ref])

    assert graph.child_folders() == ["Bob's errors"]
    assert odata_string("Bob's errors") == "'Bob''s errors'"


def test_an_error_folder_made_meanwhile_by_another_process_is_used(
    graph: GraphServer, open_box: Open
):
    # Given the lookup misses the folder, which another process creates right after
    ref = graph.deliver(raw_mail(1))
    graph.respond("/childFolders", 200, {"value": []}, method="GET")
    graph.create_folder("Errors")

    # When the mail is moved: the create is refused with 409
    open_box().move_to_error_folder([ref])

    # Then the folder is looked up again and used
    assert graph.child_folders() == ["Errors"]
    assert [m.id for m in graph.folder_mail("Errors") or []] == [ref]


def test_a_mail_keeps_its_id_through_the_error_folder_and_back(graph: GraphServer, open_box: Open):
    ref = graph.deliver(raw_mail(1))
    source = open_box()
    source.mark_handed_off([ref])

    source.move_to_error_folder([ref])
    assert source.error_folder_refs() == [ref]
    source.move_to_inbox([ref])

    assert source.list_new(10) == [ref]
    assert graph.inbox()[0].is_read is False
    assert all(r.immutable_ids for r in graph.requests())


def test_the_fake_gives_a_moved_mail_a_new_id_without_the_immutable_id_header(
    graph: GraphServer,
):
    # The adapter's refs rely on the Prefer header: without it Graph renumbers moved mail
    ref = graph.deliver(raw_mail(1))
    folder = graph.create_folder("Errors")
    base = f"{graph.endpoint}/v1.0/users/{USER}/messages"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with requests.Session() as http:
        http.verify, http.trust_env = str(graph.ca_file), False
        moved = http.post(
            f"{base}/{ref}/move", json={"destinationId": folder}, headers=headers, timeout=5
        )
        old = http.get(f"{base}/{ref}", headers=headers, timeout=5)

    assert moved.status_code == 201
    assert moved.json()["id"] != ref
    assert old.status_code == 404


def test_moving_a_mail_that_is_gone_is_an_infra_error(graph: GraphServer, open_box: Open):
    with pytest.raises(InfraError, match="no longer in the inbox"):
        open_box().move_to_error_folder(["AAMkAGIgone="])


# -- throttling -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_a_throttled_request_waits_retry_after_then_succeeds(
    graph: GraphServer, open_box: Open, sleeps: Sleeps, status: int
):
    ref = graph.deliver(raw_mail(1))
    graph.throttle("/mailFolders/inbox/messages", status=status, retry_after=1)

    assert open_box().list_new(10) == [ref]
    assert sleeps.waits == [1]


def test_a_mailbox_still_throttled_after_waiting_is_throttled(
    graph: GraphServer, open_box: Open, sleeps: Sleeps
):
    graph.deliver(raw_mail(1))
    graph.throttle("/messages", times=10, retry_after=0)

    with pytest.raises(Throttled) as caught:
        open_box().list_new(10)

    assert caught.value.retry_after == 0
    assert len(sleeps.waits) == 2


def test_a_retry_after_longer_than_a_round_waits_ends_the_round_at_once(
    graph: GraphServer, open_box: Open, sleeps: Sleeps
):
    graph.throttle("/messages", retry_after=120)

    with pytest.raises(Throttled) as caught:
        open_box().list_new(10)

    assert caught.value.retry_after == 120
    assert sleeps.waits == []


# -- broken answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["not-a-url", "other-host", "not-json"])
def test_a_broken_next_link_fails_the_listing_and_marks_nothing(
    graph: GraphServer, open_box: Open, how: str
):
    deliver_all(graph, [raw_mail(n) for n in range(5)])
    graph.break_next_link(how)  # type: ignore[arg-type]

    with pytest.raises(InfraError, match="'support'.*next page") as caught:
        open_box(page_size=2).list_new(10)

    assert not isinstance(caught.value, ConfigError)
    assert not any(m.is_read for m in graph.inbox())


def test_a_download_cut_short_is_an_infra_error(graph: GraphServer, open_box: Open):
    ref = graph.deliver(raw_mail(1) + b"z" * 50_000)
    graph.cut_value()

    with pytest.raises(InfraError, match="cut short"):
        list(open_box().fetch_many([ref]))

    assert graph.inbox()[0].is_read is False


def test_an_html_answer_names_graph_endpoint(graph: GraphServer, open_box: Open):
    graph.answer_html("/messages")

    with pytest.raises(ConfigError, match="graph_endpoint") as caught:
        open_box().list_new(10)

    assert "text/html" in str(caught.value)


def test_an_html_error_page_from_a_failing_server_may_pass(graph: GraphServer, open_box: Open):
    graph.answer_html("/messages", status=502)

    with pytest.raises(InfraError) as caught:
        open_box().list_new(10)

    assert not isinstance(caught.value, ConfigError)


def test_a_server_error_is_an_infra_error(graph: GraphServer, open_box: Open):
    graph.fail("/messages", 500, "InternalServerError")

    with pytest.raises(InfraError, match="500") as caught:
        open_box().list_new(10)

    assert not isinstance(caught.value, ConfigError)


def test_an_unknown_mailbox_names_username(graph: GraphServer, open_box: Open):
    with pytest.raises(ConfigError, match="username"):
        open_box(username="nobody@example.com").list_new(10)


def test_an_unreachable_endpoint_is_an_infra_error(graph: GraphServer, open_box: Open):
    with pytest.raises(InfraError, match="cannot reach") as caught:
        open_box(graph_endpoint=f"https://127.0.0.1:{free_port()}").list_new(10)

    assert not isinstance(caught.value, ConfigError)


# -- tokens and TLS ---------------------------------------------------------------------------


def test_a_refused_token_is_refreshed_once_and_the_request_retried(
    graph: GraphServer, open_box: Open
):
    ref = graph.deliver(raw_mail(1))
    tokens = RotatingTokens("expired-token", TOKEN)

    assert open_box(tokens=tokens).list_new(10) == [ref]
    assert tokens.refreshes == 1
    assert [r.token for r in graph.requests()] == ["expired-token", TOKEN]


def test_a_refreshed_token_refused_again_asks_to_reauthorize(graph: GraphServer, open_box: Open):
    tokens = RotatingTokens("expired-token", "also-refused")

    with pytest.raises(ConfigError, match="mailroom oauth authorize support"):
        open_box(tokens=tokens).list_new(10)

    assert tokens.refreshes == 1


def test_without_a_token_provider_the_mailbox_must_be_authorized(graph: GraphServer):
    with pytest.raises(ConfigError, match="mailroom oauth authorize support"):
        open_graph(settings(graph), None, SourceNeeds())  # type: ignore[arg-type]


def test_a_certificate_from_an_unknown_ca_names_tls_ca_file(
    graph: GraphServer, open_box: Open, tmp_path: Path
):
    other = ServerCertificates.make(tmp_path / "other-ca")

    with pytest.raises(ConfigError, match=r"tls\.ca_file"):
        open_box(tls={"ca_file": str(other.ca_file)}).list_new(10)
    with pytest.raises(ConfigError, match=r"tls\.ca_file"):
        open_box(tls={}).list_new(10)


# -- endpoints, registry, trace ---------------------------------------------------------------


def test_a_national_cloud_endpoint_is_the_base_of_every_url(graph: GraphServer):
    box = settings(
        graph,
        graph_endpoint="https://graph.microsoft.us/",
        token_url="https://login.microsoftonline.us/contoso/oauth2/v2.0/token",
    )
    client = GraphClient(box, requests.Session(), StaticTokenProvider(TOKEN))

    assert client.url("/messages/x") == f"https://graph.microsoft.us/v1.0/users/{USER}/messages/x"


def test_the_default_endpoint_is_microsoft_graph(graph: GraphServer):
    box = settings(graph, graph_endpoint=None)
    client = GraphClient(box, requests.Session(), StaticTokenProvider(TOKEN))

    assert client.url("").startswith("https://graph.microsoft.com/v1.0/users/")


def test_an_endpoint_with_a_path_is_used_verbatim(tmp_path: Path):
    with GraphServer(tmp_path / "g", tokens={TOKEN}, prefix="/tenant-cloud/graph") as graph:
        ref = graph.deliver(raw_mail(1))
        assert graph.endpoint.endswith("/tenant-cloud/graph")
        source = open_graph(settings(graph), None, SourceNeeds(tokens=StaticTokenProvider(TOKEN)))  # type: ignore[arg-type]
        try:
            assert source.list_new(10) == [ref]
            assert source.fetch_raw(ref) == raw_mail(1)
        finally:
            source.close()


def test_the_registry_opens_graph_mailboxes(graph: GraphServer):
    ref = graph.deliver(raw_mail(1))
    needs = SourceNeeds(tokens=StaticTokenProvider(TOKEN))
    source = open_source(settings(graph), None, needs)  # type: ignore[arg-type]
    try:
        assert source.list_new(10) == [ref]
    finally:
        source.close()
    assert capabilities("graph").error_folder


def test_the_debug_trace_shows_requests_and_never_the_token_or_the_body(
    graph: GraphServer, open_box: Open, caplog: pytest.LogCaptureFixture
):
    ref = graph.deliver(raw_mail(1))
    caplog.set_level(logging.INFO, logger=MAILDEBUG)
    source = open_box(trace=ProtocolTrace("support"), debug=True)

    source.list_new(10)
    source.fetch_raw(ref)
    source.mark_handed_off([ref])

    text = "\n".join(r.getMessage() for r in caplog.records if r.name == MAILDEBUG)
    assert f"GET /v1.0/users/{USER}/mailFolders/inbox/messages?" in text
    assert f"PATCH /v1.0/users/{USER}/messages/{ref} -> 200" in text
    assert "Subject: mail 1" in text  # the mail's structure, as for IMAP
    assert TOKEN not in text
    assert "Body 1" not in text
    assert json.dumps(TOKEN) not in caplog.text and TOKEN not in caplog.text


def test_mail_is_fetched_through_an_http_proxy(open_box, graph: GraphServer, http_proxy) -> None:  # type: ignore[no-untyped-def]
    ref = graph.deliver(raw_mail(7))
    source = open_box(proxy=http_proxy.url)

    assert source.list_new(10) == [ref]
    assert source.fetch_raw(ref) == raw_mail(7)
    port = graph.endpoint.rsplit(":", 1)[1]
    assert re.search(rf"CONNECT \S+:{port} HTTP", http_proxy.log_file.read_text()), "no proxy"
