"""``mailroom mailbox test NAME`` for Exchange (EWS) and Microsoft Graph mailboxes, against
the fake servers: the oldest mail's properties, left unread, or one sentence to fix."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from ews_server import FakeEws
from graph_server import GraphServer
from harness import Mailroom
from oauth_consent import authorize
from oauth_server import OAuthServer
from servers import free_port
from test_mailbox_test_command import SAMPLE, configure, failure

USER = "support@example.test"
PASSWORD = "secret"


@pytest.fixture
def room(tmp_path: Path) -> Mailroom:
    return Mailroom.on_sqlite(tmp_path / "room")


@pytest.fixture
def ews(tmp_path: Path) -> Iterator[FakeEws]:
    with FakeEws(tmp_path / "ews", users={USER: PASSWORD}) as server:
        server.deliver(SAMPLE)
        yield server


def ews_fields(ews: FakeEws, **changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "protocol": "ews",
        "connect_url": ews.url,
        "username": USER,
        "password": PASSWORD,
        "timeout_seconds": 3,
        "tls": f"{{ca_file: {ews.ca_file}}}",
    }
    return fields | changes


def test_an_ews_sample_is_shown_and_left_unread(room: Mailroom, ews: FakeEws) -> None:
    configure(room, **ews_fields(ews))

    sample = room.json("mailbox", "test", "box")

    assert sample["subject"] == "Printer jam"
    assert sample["attachments"] == ["jam.pdf"]
    assert [m.is_read for m in ews.inbox()] == [False]


@pytest.fixture
def silent_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as server:  # accepts, never says a word
        yield server.getsockname()[1]


EWS_CASES = {
    "wrong password": ({"password": "wrong"}, "check `username` and `password`"),
    "unknown host": (
        {"connect_url": "https://no-such-host.invalid/EWS/Exchange.asmx"},
        "connect_url",
    ),
    "no EWS there": ({"connect_url": "{url}/../../nothing-here"}, "connect_url"),
    "self-signed": ({"tls": "{verify: true}"}, "tls.ca_file"),
    "dead proxy": ({"proxy": f"http://127.0.0.1:{free_port()}"}, "proxy"),
    "not authorized": (
        {
            "auth": "oauth",
            "password": None,
            "client_id": "app",
            "token_url": "https://login.microsoftonline.com/contoso/oauth2/v2.0/token",
        },
        "mailroom oauth authorize box",
    ),
}


@pytest.mark.parametrize("case", list(EWS_CASES))
def test_each_ews_failure_says_what_to_fix(room: Mailroom, ews: FakeEws, case: str) -> None:
    changes, expected = EWS_CASES[case]
    fields = {
        k: v.replace("{url}", ews.url) if isinstance(v, str) else v for k, v in changes.items()
    }
    configure(room, **{k: v for k, v in ews_fields(ews, **fields).items() if v is not None})

    said = failure(room)

    assert said.startswith("mailroom: mailbox 'box': "), said
    assert expected in said
    assert PASSWORD not in said


def test_an_ews_server_that_never_answers_is_a_timeout(room: Mailroom, ews, silent_port) -> None:  # type: ignore[no-untyped-def]
    url = f"https://127.0.0.1:{silent_port}/EWS/Exchange.asmx"
    configure(room, **ews_fields(ews, connect_url=url, timeout_seconds=0.5))

    assert "did not answer" in failure(room)


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[GraphServer]:
    with GraphServer(tmp_path / "graph", username=USER, tokens=()) as server:
        server.deliver(SAMPLE)
        yield server


@pytest.fixture
def idp(tmp_path: Path, graph: GraphServer) -> Iterator[OAuthServer]:
    server = OAuthServer.start(
        tmp_path / "idp", account=USER, on_issue=lambda token, _: graph.accept_token(token)
    )
    yield server
    server.stop()


def graph_fields(room: Mailroom, graph: GraphServer, idp: OAuthServer) -> dict[str, object]:
    cas = room.workdir / "cas.pem"
    cas.write_bytes(graph.ca_file.read_bytes() + idp.ca_file.read_bytes())
    return {
        "protocol": "graph",
        "auth": "oauth",
        "graph_endpoint": graph.endpoint,
        "username": USER,
        "client_id": "mailroom",
        "client_secret": "client-secret",
        "token_url": idp.token_url(),
        "redirect_url": f"http://localhost:{free_port()}/callback",
        "timeout_seconds": 3,
        "tls": f"{{ca_file: {cas}}}",
    }


def test_a_graph_mailbox_says_to_authorize_then_shows_its_sample_left_unread(
    room: Mailroom, graph: GraphServer, idp: OAuthServer
) -> None:
    configure(room, **graph_fields(room, graph, idp))

    before = failure(room)
    authorize(room, idp, "box")
    sample = room.json("mailbox", "test", "box")

    assert "mailroom oauth authorize box" in before
    assert sample["subject"] == "Printer jam"
    assert [m.is_read for m in graph.inbox()] == [False]


def test_a_graph_mailbox_of_an_unknown_user_names_the_username(
    room: Mailroom, graph: GraphServer, idp: OAuthServer
) -> None:
    configure(room, **graph_fields(room, graph, idp))
    authorize(room, idp, "box")
    graph.username = "someone-else@example.test"  # the mailbox is gone from the tenant

    said = failure(room)

    assert "username" in said and USER in said


def test_a_graph_endpoint_that_answers_html_names_the_endpoint(
    room: Mailroom, graph: GraphServer, idp: OAuthServer
) -> None:
    configure(room, **graph_fields(room, graph, idp))
    authorize(room, idp, "box")
    graph.answer_html(times=5)

    assert "graph_endpoint" in failure(room)
