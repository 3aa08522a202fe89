"""All of the shared real-world corpus, served by the fake Exchange (EWS) and Microsoft Graph
servers and fetched with OAuth tokens from the fake authorization server, through
``mailroom oauth authorize`` and ``mailroom run --once``, on the embedded default and on
RabbitMQ + PostgreSQL.

Every mail ends as exactly one request, conversation, duplicate, rejection or dead-letter
entry; the dead-lettered ones sit in the mailbox's error folder and every other one is
marked read in the inbox.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ews_server import FakeEws
from graph_server import GraphServer
from harness import Mailroom
from oauth_consent import authorize
from oauth_server import OAuthServer
from servers import free_port
from test_corpus_over_mail_servers import assert_every_mail_ends_exactly_once, corpus_mails

CLIENT_SECRET = "client-secret"


@pytest.fixture
def user() -> str:
    return f"corpus-{uuid.uuid4().hex[:8]}@example.test"


@pytest.fixture
def graph(tmp_path: Path, user: str) -> Iterator[GraphServer]:
    with GraphServer(tmp_path / "graph", username=user, tokens=()) as server:
        yield server


@pytest.fixture
def ews(tmp_path: Path) -> Iterator[FakeEws]:
    with FakeEws(tmp_path / "ews") as server:
        yield server


@pytest.fixture(params=["embedded", "rabbitmq"])
def room(request, tmp_path: Path) -> Iterator[Mailroom]:  # type: ignore[no-untyped-def]
    if request.param == "embedded":
        room = Mailroom.on_sqlite(tmp_path / "room")
    else:
        rabbitmq = request.getfixturevalue("rabbitmq")
        postgres = request.getfixturevalue("postgres")
        room = Mailroom(tmp_path / "room", rabbitmq.new_vhost(), postgres.new_database())
    yield room
    room.stop_workers()


def settings_text(user: str, protocol_lines: str, idp: OAuthServer, ca_file: Path) -> str:
    return f"""
helpdesks:
  - id: corpus
    attachments: {{max_size_mb: 10}}
    notifications: {{support_reps: [reps@corpus.example], admins: [admin@corpus.example]}}
    mailboxes:
      - name: corpus
{protocol_lines}
        auth: oauth
        username: {user}
        addresses: [{user}]
        client_id: mailroom
        client_secret: {CLIENT_SECRET}
        token_url: {idp.token_url()}
        redirect_url: http://localhost:{free_port()}/callback
        timeout_seconds: 20
        tls: {{ca_file: {ca_file}}}
"""


def both_cas(room: Mailroom, *servers: object) -> Path:
    """One ``tls.ca_file`` trusting the mail server and the authorization server."""
    path = room.workdir / "cas.pem"
    path.write_bytes(b"".join(Path(s.ca_file).read_bytes() for s in servers))  # type: ignore[attr-defined]
    return path


def run_corpus_with_oauth(
    room: Mailroom,
    user: str,
    folder: Path,
    server: FakeEws | GraphServer,
    accept: Callable[[str], None],
    protocol_lines: str,
) -> tuple[list[bytes], str, dict[str, Any]]:
    """The corpus delivered into ``server``; settings applied, consent given at a fake IdP
    whose tokens ``accept`` registers, and one ``run --once``: the mails, what ``oauth
    authorize`` said, and the run's summary."""
    mails = corpus_mails()
    for raw in mails:
        server.deliver(raw)
    idp = OAuthServer.start(folder / "idp", account=user, on_issue=lambda token, _: accept(token))
    try:
        room.apply_settings(settings_text(user, protocol_lines, idp, both_cas(room, server, idp)))
        said = authorize(room, idp, "corpus")
        summary = room.json("run", "--once")
    finally:
        idp.stop()
    return mails, said, summary


def test_every_corpus_mail_over_graph_ends_exactly_once(
    room: Mailroom, graph: GraphServer, user: str, tmp_path: Path
) -> None:
    lines = f"        protocol: graph\n        graph_endpoint: {graph.endpoint}"
    mails, said, summary = run_corpus_with_oauth(
        room, user, tmp_path, graph, graph.accept_token, lines
    )

    assert f"authorized by {user}" in said
    dead = assert_every_mail_ends_exactly_once(room, summary, mails)
    in_errors = graph.folder_mail("Errors") or []
    assert len(in_errors) == len(dead), "the dead-lettered mails sit in the error folder"
    assert sorted(m.raw for m in in_errors) == sorted(
        raw for raw in mails if raw in {m.raw for m in in_errors}
    )
    inbox = graph.inbox()
    assert len(inbox) == len(mails) - len(dead)
    assert all(m.is_read for m in inbox), "every handed-off mail is marked read"


def test_every_corpus_mail_over_ews_ends_exactly_once(
    room: Mailroom, ews: FakeEws, user: str, tmp_path: Path
) -> None:
    lines = f"        protocol: ews\n        connect_url: {ews.url}"
    mails, said, summary = run_corpus_with_oauth(room, user, tmp_path, ews, ews.add_token, lines)

    assert f"authorized by {user}" in said
    assert all(scheme == "Bearer" for scheme, _ in ews.logins), "every request used a token"
    dead = assert_every_mail_ends_exactly_once(room, summary, mails)
    in_errors = ews.folder("Errors") or []
    assert len(in_errors) == len(dead), "the dead-lettered mails sit in the error folder"
    inbox = ews.inbox()
    assert len(inbox) == len(mails) - len(dead)
    assert all(m.is_read for m in inbox), "every handed-off mail is marked read"
