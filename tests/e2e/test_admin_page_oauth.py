"""OAuth consent from the admin page: "Authorize" sends the browser to the provider, which
sends it back to the page's ``/oauth/callback``; the tokens are stored and the mailbox is
fetched over XOAUTH2."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from admin_page import ADMIN, AdminPage, create_admin
from harness import Mailroom
from mailservers import Dovecot
from oauth_server import OAuthServer
from servers import free_port
from test_oauth_mailbox import SCOPE

MAIL = b"From: a@example.test\r\nSubject: cloud one\r\nMessage-ID: <w1@example.test>\r\n\r\nhi\r\n"


@pytest.fixture
def user(dovecot: Dovecot) -> str:
    name = f"w{uuid.uuid4().hex[:8]}@example.test"
    dovecot.add_user(name, "unused-password")
    return name


@pytest.fixture
def idp(tmp_path: Path, dovecot: Dovecot, user: str) -> Iterator[OAuthServer]:
    server = OAuthServer.start(tmp_path / "idp", account=user, on_issue=dovecot.add_token)
    yield server
    server.stop()


@pytest.fixture
def room(tmp_path: Path) -> Iterator[Mailroom]:
    room = Mailroom.on_sqlite(tmp_path / "room")
    yield room
    room.stop_workers()


def test_authorize_from_the_page_stores_tokens_and_the_mailbox_is_fetched(
    room: Mailroom, dovecot: Dovecot, idp: OAuthServer, user: str
) -> None:
    port = free_port()
    ca_file = room.workdir / "cas.pem"
    ca_file.write_bytes(dovecot.ca_file.read_bytes() + idp.ca_file.read_bytes())
    room.apply_settings(
        "helpdesks:\n  - id: default\n    mailboxes:\n"
        f"      - name: cloud\n        protocol: imaps\n        host: localhost\n"
        f"        port: {dovecot.imaps_port}\n        import_existing: all\n"
        f"        tls: {{ca_file: {ca_file}}}\n        username: {user}\n        auth: oauth\n"
        "        client_id: mailroom\n        client_secret: client-secret\n"
        f"        token_url: {idp.token_url()}\n"
        f"        authorization_url: {idp.authorization_url()}\n"
        f"        scope: {SCOPE}\n"
        f"        redirect_url: http://127.0.0.1:{port}/oauth/callback\n"
    )
    create_admin(room)
    dovecot.deliver(user, MAIL)
    page = AdminPage(room, port=port)
    b = page.signed_in()
    before = b.get("/status", headers={"accept": "application/json"}).json()

    started = b.post("/mailboxes/cloud/authorize")
    with requests.Session() as provider:  # the browser at the provider: consent given
        provider.trust_env = False
        consent = provider.get(
            started.headers["location"], verify=str(idp.ca_file), allow_redirects=False
        )
    back = consent.headers["Location"]
    done = b.get(back.removeprefix(page.url))
    replayed = b.get(back.removeprefix(page.url))
    after = b.get("/status", headers={"accept": "application/json"}).json()
    run = room.json("run", "--once")

    assert before["default"][0]["token"] == "not authorized"
    assert started.status_code == 303 and started.headers["location"].startswith(
        idp.authorization_url()
    )
    assert back.startswith(f"http://127.0.0.1:{port}/oauth/callback?")
    assert done.status_code == 200 and f"Authorized by {user}" in done.text
    assert replayed.status_code == 400 and "not under way" in replayed.text
    assert after["default"][0]["token"].startswith("access token valid until")
    assert run["fetched"] == 1
    assert [r["subject"] for r in room.json("requests", "list")] == ["cloud one"]
    audit = b.get("/audit").text
    assert "authorize" in audit and ADMIN in audit
    for token in [*idp.issued_access_tokens, *idp.refresh_tokens]:
        assert token not in done.text + audit + room.worker_log("admin")


def test_authorize_is_refused_for_a_password_mailbox(room: Mailroom) -> None:
    (room.workdir / "Maildir").mkdir(parents=True, exist_ok=True)
    room.apply_settings(
        "helpdesks:\n  - id: default\n    mailboxes:\n      - name: onprem\n"
        "        protocol: imaps\n        host: mail.example.test\n        username: u\n"
        "        password: p\n"
    )
    create_admin(room)
    b = AdminPage(room).signed_in()

    refused = b.post("/mailboxes/onprem/authorize")

    assert refused.status_code == 400
    assert "signs in with a password" in refused.text
