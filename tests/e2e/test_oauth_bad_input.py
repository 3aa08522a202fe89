"""What goes wrong with Exchange Online in real life, all in one help desk: each bad mailbox
gets one sentence naming it and the fix, is skipped this round with nothing lost, and the
good mailbox is fetched as usual (Microsoft Graph mailboxes, OAuth from the fake IdP)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from graph_server import GraphServer
from harness import Mailroom
from oauth_consent import authorize
from oauth_server import OAuthServer
from servers import free_port

MAIL = b"From: a@example.test\r\nSubject: %s\r\nMessage-ID: <%s@example.test>\r\n\r\nhi\r\n"
BOXES = ("good", "tenant", "secret", "account", "html", "nextlink", "cutshort")


class Desk:
    """One Graph server and one IdP per mailbox, so a fault hits that mailbox alone."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.users = {name: f"{name}-{uuid.uuid4().hex[:6]}@example.test" for name in BOXES}
        self.graphs: dict[str, GraphServer] = {}
        self.idps: dict[str, OAuthServer] = {}
        for name in BOXES:
            graph = GraphServer(folder / name / "graph", username=self.users[name], tokens=())
            self.graphs[name] = graph.start()
            self.idps[name] = OAuthServer.start(
                folder / name / "idp",
                account=self.users[name],
                on_issue=lambda token, _, g=graph: g.accept_token(token),
                # Shorter than the refresh margin: every round asks the IdP first.
                access_token_lifetime=240,
            )

    def stop(self) -> None:
        for server in [*self.graphs.values(), *self.idps.values()]:
            server.stop()

    def settings(self, tenant_of: dict[str, str]) -> str:
        lines = [
            "helpdesks:",
            "  - id: default",
            "    notifications: {admins: [admin@example.test]}",
            "    mailboxes:",
        ]
        for name in BOXES:
            graph, idp = self.graphs[name], self.idps[name]
            cas = self.folder / name / "cas.pem"
            cas.write_bytes(graph.ca_file.read_bytes() + idp.ca_file.read_bytes())
            lines += [
                f"      - name: {name}",
                "        protocol: graph",
                "        auth: oauth",
                f"        username: {self.users[name]}",
                f"        graph_endpoint: {graph.endpoint}",
                "        client_id: mailroom",
                "        client_secret: client-secret",
                f"        token_url: {idp.token_url(tenant_of.get(name, 'contoso'))}",
                f"        redirect_url: http://localhost:{free_port()}/callback",
                "        timeout_seconds: 10",
                f"        tls: {{ca_file: {cas}}}",
            ]
        return "\n".join(lines) + "\n"


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    desk = Desk(tmp_path / "servers")
    yield desk
    desk.stop()


@pytest.fixture
def room(tmp_path: Path) -> Iterator[Mailroom]:
    room = Mailroom.on_sqlite(tmp_path / "room")
    yield room
    room.stop_workers()


def test_each_bad_mailbox_is_explained_and_skipped_while_the_good_one_is_fetched(
    room: Mailroom, desk: Desk
) -> None:
    room.apply_settings(desk.settings({"tenant": "fabrikam"}))
    for name in BOXES:
        for n in range(3):
            desk.graphs[name].deliver(MAIL % (f"{name} {n}".encode(), f"{name}{n}".encode()))

    # Consent: a wrong tenant and the wrong account are refused at once, nothing stored.
    desk.idps["account"].account = "someone-else@example.test"
    refused = {}
    for name in BOXES:
        if name in ("tenant", "account"):
            refused[name] = authorize(room, desk.idps[name], name, check=False)
        else:
            authorize(room, desk.idps[name], name)
    # Then the world changes under the authorized ones.
    desk.idps["secret"].clients["mailroom"] = "a-new-secret"  # the old one expired
    desk.idps["html"].fault = "html"
    desk.graphs["nextlink"].page_cap = 1
    desk.graphs["nextlink"].break_next_link("other-host")
    desk.graphs["cutshort"].cut_value()

    summary = room.json("run", "--once")
    errors = {e["mailbox"]: e["error"] for e in summary["mailbox_errors"]}

    assert "tenant 'fabrikam'" in refused["tenant"] and "token_url" in refused["tenant"]
    assert "someone-else@example.test" in refused["account"]
    assert desk.users["account"] in refused["account"]
    assert sorted(r["subject"] for r in room.json("requests", "list")) == [
        "good 0",
        "good 1",
        "good 2",
    ]
    assert set(errors) == set(BOXES) - {"good"}
    for name in ("tenant", "account"):
        assert f"mailroom oauth authorize {name}" in errors[name]
    assert "client_secret" in errors["secret"] and "invalid_client" in errors["secret"]
    assert "token_url" in errors["html"] and "text/html" in errors["html"]
    assert "nextlink" in errors["nextlink"] and "next page" in errors["nextlink"].lower()
    assert "cutshort" in errors["cutshort"]
    for name, error in errors.items():
        assert error.startswith(f"mailbox {name!r}: "), error
        assert "client-secret" not in error
    for name in set(BOXES) - {"good"}:
        assert all(not m.is_read for m in desk.graphs[name].inbox()), f"{name}: mail lost"
        assert len(desk.graphs[name].inbox()) == 3
