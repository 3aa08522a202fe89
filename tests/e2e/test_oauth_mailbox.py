"""An ``auth: oauth`` IMAPS mailbox as an admin sets it up: settings applied, ``mailroom oauth
authorize`` in a browser, mail fetched over XOAUTH2; then the grant is revoked and only that
mailbox stops, paused until it is authorized again."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Mailroom
from mailservers import Dovecot
from oauth_consent import authorize
from oauth_server import OAuthServer
from servers import free_port

MAIL = b"From: a@example.test\r\nSubject: %s\r\nMessage-ID: <%s@example.test>\r\n\r\nhi\r\n"
SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"


@pytest.fixture
def room(tmp_path: Path) -> Iterator[Mailroom]:
    room = Mailroom.on_sqlite(tmp_path / "room")
    yield room
    room.stop_workers()


@pytest.fixture
def users(dovecot: Dovecot) -> tuple[str, str]:
    oauth_user, basic_user = (f"{p}{uuid.uuid4().hex[:8]}@example.test" for p in ("o", "b"))
    dovecot.add_user(oauth_user, "unused-password")
    dovecot.add_user(basic_user, "secret")
    return oauth_user, basic_user


@pytest.fixture
def idp(tmp_path: Path, dovecot: Dovecot, users: tuple[str, str]) -> Iterator[OAuthServer]:
    # Every access token the IdP issues is one Dovecot accepts for XOAUTH2. They live 4
    # minutes, less than Mailroom's refresh margin: each round refreshes first, as a round
    # after an access token expired does.
    server = OAuthServer.start(
        tmp_path / "idp", account=users[0], on_issue=dovecot.add_token, access_token_lifetime=240
    )
    yield server
    server.stop()


def settings(dovecot: Dovecot, idp: OAuthServer, users: tuple[str, str], ca_file: Path) -> str:
    oauth_user, basic_user = users
    common = (
        f"        protocol: imaps\n        host: localhost\n        port: {dovecot.imaps_port}\n"
        f"        import_existing: all\n        timeout_seconds: 5\n"
        f"        tls: {{ca_file: {ca_file}}}\n"
    )
    return (
        "helpdesks:\n  - id: default\n    notifications:\n      admins: [admin@example.test]\n"
        "    mailboxes:\n"
        f"      - name: cloud\n{common}        username: {oauth_user}\n        auth: oauth\n"
        "        client_id: mailroom\n        client_secret: client-secret\n"
        f"        token_url: {idp.token_url()}\n"
        f"        authorization_url: {idp.authorization_url()}\n"
        f"        scope: {SCOPE}\n"
        f"        redirect_url: http://localhost:{free_port()}/callback\n"
        f"      - name: onprem\n{common}        username: {basic_user}\n"
        "        password: secret\n"
    )


def requests_of(room: Mailroom) -> list[dict[str, Any]]:
    return room.json("requests", "list")  # type: ignore[no-any-return]


def reauthorize_bells(room: Mailroom) -> list[dict[str, Any]]:
    return [n for n in room.json("notifications", "list") if n["kind"] == "oauth_reauthorize"]


def test_an_oauth_mailbox_is_fetched_until_its_grant_is_revoked(
    room: Mailroom, dovecot: Dovecot, idp: OAuthServer, users: tuple[str, str]
) -> None:
    oauth_user, basic_user = users
    # One tls.ca_file for the mailbox's two servers: Dovecot and the IdP.
    ca_file = room.workdir / "cas.pem"
    ca_file.write_bytes(dovecot.ca_file.read_bytes() + idp.ca_file.read_bytes())
    room.apply_settings(settings(dovecot, idp, users, ca_file))
    dovecot.deliver(oauth_user, MAIL % (b"cloud one", b"c1"))
    dovecot.deliver(basic_user, MAIL % (b"onprem one", b"p1"))

    before = room.json("mailbox", "show", "cloud")["oauth"]
    applied = room.cli("config", "apply", str(room.workdir / "settings.yaml")).stdout
    said = authorize(room, idp, "cloud")
    applied_after = room.cli("config", "apply", str(room.workdir / "settings.yaml")).stdout
    shown = room.cli("mailbox", "show", "cloud").stdout
    shown_json = room.json("mailbox", "show", "cloud")
    first = room.json("run", "--once")

    assert before == {"authorized": False, "fix": "run `mailroom oauth authorize cloud`"}
    assert "mailbox cloud: not authorized yet; `mailroom oauth authorize cloud`" in applied
    assert "onprem" not in applied.split("\n", 1)[1], "a basic mailbox needs no consent"
    assert "not authorized" not in applied_after
    assert f"mailbox cloud: authorized by {oauth_user}; tokens stored encrypted" in said
    assert re.search(r"access token valid until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", said)
    health = shown_json["oauth"]
    assert health["account"] == oauth_user and health["access_token_expires_at"]
    assert health["refresh_token_age_days"] == 0.0 and health["last_refresh_failure"] is None
    assert "access_token_expires_at" in shown and "refresh_token_age_days" in shown
    for token in [*idp.issued_access_tokens, *idp.refresh_tokens]:
        assert token not in said + shown + str(shown_json)
    assert first["fetched"] == 2
    assert sorted(r["subject"] for r in requests_of(room)) == ["cloud one", "onprem one"]
    assert idp.token_requests("refresh_token"), "the round logged in with a refreshed token"

    idp.revoke_refresh_tokens()
    dovecot.deliver(oauth_user, MAIL % (b"cloud two", b"c2"))
    dovecot.deliver(basic_user, MAIL % (b"onprem two", b"p2"))
    second = room.json("run", "--once")
    paused = room.json("mailbox", "show", "cloud")
    third = room.json("run", "--once")

    assert second["fetched"] == 1, "the other mailbox is fetched as usual"
    assert "onprem two" in {r["subject"] for r in requests_of(room)}
    assert paused["enabled"] is False
    assert "`mailroom oauth authorize cloud`" in paused["paused_reason"]
    assert "invalid_grant" in paused["last_error"]
    assert "invalid_grant" in paused["oauth"]["last_refresh_failure"]
    bells = reauthorize_bells(room)
    assert [(b["channel"], b["to"]) for b in bells] == [("bell", ["admin@example.test"])]
    assert third["fetched"] == 0, "a paused mailbox waits for its admin"

    said_again = authorize(room, idp, "cloud", paste=True)
    resumed = room.json("run", "--once")

    assert "mailbox cloud: fetching resumed" in said_again
    assert resumed["fetched"] == 1
    assert "cloud two" in {r["subject"] for r in requests_of(room)}
    assert (
        len([n for n in room.json("notifications", "list") if n["kind"] == "oauth_reauthorize"])
        == 1
    )
