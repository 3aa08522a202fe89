"""Connectivity alerts, a full error folder and edited settings, as an admin meets them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Mailroom, settings_yaml
from mailservers import Dovecot

MAIL = b"From: a@example.test\r\nSubject: hello\r\nMessage-ID: <%s@example.test>\r\n\r\nhi\r\n"
BROKEN = (
    b"From: b@example.test\r\nSubject: scan\r\nMessage-ID: <%s@example.test>\r\n"
    b'Content-Type: multipart/mixed; boundary="gone"\r\n\r\nno parts\r\n'
)


@pytest.fixture
def room(mailroom: Mailroom) -> Mailroom:
    """The embedded default, then RabbitMQ + PostgreSQL (see conftest)."""
    return mailroom


@pytest.fixture
def own_dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    """A Dovecot of this test's own: it is halted and resumed."""
    server = Dovecot.start(tmp_path / "dovecot")
    yield server
    server.stop()


def kinds(room: Mailroom, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [n for n in room.json("notifications", "list") if n["kind"] == kind]


def test_a_mailbox_that_cannot_be_reached_alerts_and_later_recovers(
    room: Mailroom, own_dovecot: Dovecot
) -> None:
    user = f"h{uuid.uuid4().hex[:8]}@example.test"
    own_dovecot.add_user(user, "secret")
    own_dovecot.deliver(user, MAIL % b"1")
    room.apply_settings(
        "helpdesks:\n  - id: default\n    notifications:\n"
        "      admins: [admin@example.test]\n      support_reps: [reps@example.test]\n"
        "      connectivity: {consecutive_retry_threshold: 2, enabled: true}\n"
        "    mailboxes:\n      - name: box\n        protocol: imaps\n        host: localhost\n"
        f"        port: {own_dovecot.imaps_port}\n        username: {user}\n"
        f"        password: secret\n        timeout_seconds: 2\n        import_existing: all\n"
        f"        tls: {{ca_file: {own_dovecot.ca_file}}}\n"
    )
    own_dovecot.halt()

    room.json("run", "--once")
    assert kinds(room, "connectivity") == [], "one failure is not an outage yet"
    room.json("run", "--once")
    alerts = kinds(room, "connectivity")
    shown = room.json("mailbox", "show", "box")
    own_dovecot.resume()
    recovered = room.json("run", "--once")

    assert {(a["channel"], tuple(a["to"])) for a in alerts} == {
        ("bell", ("admin@example.test",)),
        ("email", ("reps@example.test",)),
    }
    assert all("box" in a["subject"] for a in alerts)
    assert shown["consecutive_failures"] == 0 and shown["alerted_at"], "counted, then reset"
    assert "no answer from" in shown["last_error"]
    assert recovered["fetched"] == 1
    assert {n["channel"] for n in kinds(room, "connectivity_recovered")} == {"bell", "email"}
    assert room.json("mailbox", "show", "box")["alerted_at"] is None


def test_a_full_error_folder_stops_fetching_and_says_so(room: Mailroom) -> None:
    room.use_demo_maildir()
    text = settings_yaml(room.maildir).replace("stop_after: 50", "stop_after: 1")
    room.apply_settings(text)

    first = room.json("run", "--once")
    (room.maildir / "new" / "late-arrival").write_bytes(MAIL % b"late")
    second = room.json("run", "--once")

    assert first["dead_lettered"] == 1
    shown = room.json("mailbox", "show", "demo")
    assert shown["enabled"] is False and "error folder holds 1 mails" in shown["paused_reason"]
    assert shown["error_count"] == 1
    assert {n["channel"] for n in kinds(room, "error_folder_full")} == {"bell", "email"}
    assert second["fetched"] == 0, "a stopped mailbox is not fetched"


def test_editing_a_mailbox_pauses_it_until_it_is_enabled(room: Mailroom) -> None:
    room.use_demo_maildir()
    room.apply_settings()
    edited = room.workdir / "edited.yaml"
    edited.write_text(
        settings_yaml(room.maildir).replace("fetch_every_minutes: 0.05", "fetch_every_minutes: 5")
    )

    said = room.cli("config", "apply", str(edited)).stdout
    paused = room.json("run", "--once")
    room.cli("mailbox", "enable", "demo")
    resumed = room.json("run", "--once")

    assert "mailbox demo: settings changed, fetching paused" in said
    assert paused["fetched"] == 0
    assert resumed["fetched"] == 12
    unchanged = room.cli("config", "apply", str(edited)).stdout
    assert "paused" not in unchanged, "applying the same settings again changes nothing"
