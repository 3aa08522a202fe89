"""The mailbox form over HTTP: saved under the settings file's rules, each refusal at its
field with nothing saved, secrets never sent back, changes audited without values, and two
admins saving the same mailbox at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_page import AdminPage, Browser, create_admin
from harness import Mailroom

FORM = {
    "name": "support",
    "protocol": "imaps",
    "auth": "basic",
    "host": "mail.example.test",
    "port": "993",
    "username": "support@example.test",
    "password": "mailbox-secret-1",
    "addresses": "support@example.test, help@example.test",
    "fetch_every_minutes": "2",
    "tls_verify": "on",
    "new_requests_enabled": "on",
    "error_folder_enabled": "on",
    "error_folder_name": "Errors",
    "error_folder_stop_after": "50",
    "connectivity_alerts": "on",
    "connectivity_threshold": "5",
    "attachment_max_mb": "10",
    "import_existing": "unread",
}
_REVISION = re.compile(r'name="revision" value="([^"]*)"')


@pytest.fixture
def room(tmp_path: Path) -> Iterator[Mailroom]:
    room = Mailroom.on_sqlite(tmp_path)
    room.apply_settings("helpdesks:\n  - id: default\n")
    create_admin(room)
    create_admin(room, "bob", "another long password")
    yield room
    room.stop_workers()


def revision_of(html: str) -> str:
    found = _REVISION.search(html)
    assert found
    return found.group(1)


def save(b: Browser, path: str, form: dict[str, str], *, opened: str | None = None) -> object:
    page = b.get(opened or path).text
    return b.post(path, {**form, "helpdesk": "default", "revision": revision_of(page)}, on=path)


def field_error(html: str, field: str) -> str:
    found = re.search(rf'id="error-{field}">([^<]*)<', html)
    return found.group(1) if found else ""


def test_a_new_mailbox_is_saved_paused_and_its_password_never_shown(room: Mailroom) -> None:
    b = AdminPage(room).signed_in()

    saved = save(b, "/add-mailbox", FORM, opened="/add-mailbox?helpdesk=default")
    shown = b.get("/mailboxes/support").text
    stored = room.json("mailbox", "show", "support")

    assert saved.status_code == 303  # type: ignore[attr-defined]
    assert saved.headers["location"] == "/mailboxes/support?saved=1"  # type: ignore[attr-defined]
    assert stored["settings"]["host"] == "mail.example.test"
    assert stored["settings"]["addresses"] == ["support@example.test", "help@example.test"]
    assert stored["settings"]["fetch_every_minutes"] == 2
    assert stored["settings"]["password"] == "********"
    assert stored["enabled"] is False and "admin page by alice" in stored["paused_reason"]
    assert "mailbox-secret-1" not in shown
    assert 'Password <span class="secret-state">(set)</span>' in shown
    assert "Enable fetching" in shown
    audit = b.get("/audit").text
    assert "create mailbox" in audit and "password" in audit and "mailbox-secret-1" not in audit


def test_a_blank_password_keeps_the_stored_one_and_clear_removes_it(room: Mailroom) -> None:
    b = AdminPage(room).signed_in()
    save(b, "/add-mailbox", FORM, opened="/add-mailbox?helpdesk=default")

    kept = save(b, "/mailboxes/support", {**FORM, "password": "", "fetch_every_minutes": "5"})
    after_keep = room.json("mailbox", "show", "support")["settings"]
    cleared = save(b, "/mailboxes/support", {**FORM, "password": "", "clear_password": "on"})

    assert kept.status_code == 303  # type: ignore[attr-defined]
    assert after_keep["password"] == "********" and after_keep["fetch_every_minutes"] == 5
    assert cleared.status_code == 303  # type: ignore[attr-defined]
    assert room.json("mailbox", "show", "support")["settings"]["password"] is None
    assert (
        'Password <span class="secret-state">(not set)</span>' in b.get("/mailboxes/support").text
    )


@pytest.mark.parametrize(
    ("change", "field", "said"),
    [
        ({"port": "70000"}, "port", "at most 65535"),
        ({"port": "imap"}, "port", "whole number"),
        ({"fetch_every_minutes": "soon"}, "fetch_every_minutes", "number"),
        ({"protocol": "graph", "auth": "basic"}, "auth", "OAuth"),
        ({"protocol": "pop", "auth": "oauth"}, "auth", "OAuth"),
        ({"name": "bad name!"}, "name", "letters"),
        ({"proxy": "ftp://proxy"}, "proxy", ""),
    ],
)
def test_bad_values_are_refused_at_their_field_and_nothing_is_saved(
    room: Mailroom, change: dict[str, str], field: str, said: str
) -> None:
    b = AdminPage(room).signed_in()

    refused = save(b, "/add-mailbox", {**FORM, **change}, opened="/add-mailbox?helpdesk=default")

    assert refused.status_code == 400  # type: ignore[attr-defined]
    error = field_error(refused.text, field)  # type: ignore[attr-defined]
    assert error, f"no error at {field}: {refused.text[:2000]}"  # type: ignore[attr-defined]
    assert said.lower() in error.lower()
    assert room.json("mailbox", "list") == []
    assert "mailbox-secret-1" not in refused.text  # type: ignore[attr-defined]


def test_the_second_of_two_admins_saving_at_once_sees_a_conflict(room: Mailroom) -> None:
    page = AdminPage(room)
    alice = page.signed_in()
    save(alice, "/add-mailbox", FORM, opened="/add-mailbox?helpdesk=default")
    bob = page.signed_in("bob", "another long password")
    opened_by_alice = alice.get("/mailboxes/support").text
    opened_by_bob = bob.get("/mailboxes/support").text

    first = alice.post(
        "/mailboxes/support",
        {
            **FORM,
            "helpdesk": "default",
            "fetch_every_minutes": "3",
            "revision": revision_of(opened_by_alice),
        },
        on="/",
    )
    second = bob.post(
        "/mailboxes/support",
        {
            **FORM,
            "helpdesk": "default",
            "fetch_every_minutes": "7",
            "revision": revision_of(opened_by_bob),
        },
        on="/",
    )

    assert first.status_code == 303
    assert second.status_code == 409 and "someone else" in second.text
    assert room.json("mailbox", "show", "support")["settings"]["fetch_every_minutes"] == 3


def test_a_help_desk_setting_changes_every_mailbox_of_the_desk(room: Mailroom) -> None:
    b = AdminPage(room).signed_in()
    save(b, "/add-mailbox", FORM, opened="/add-mailbox?helpdesk=default")
    save(
        b,
        "/add-mailbox",
        {**FORM, "name": "sales", "username": "sales", "addresses": "sales@example.test"},
        opened="/add-mailbox?helpdesk=default",
    )

    edited = save(
        b, "/mailboxes/support", {**FORM, "password": "", "restricted_extensions": "exe, iso"}
    )

    assert edited.status_code == 303  # type: ignore[attr-defined]
    assert "exe, iso" in b.get("/mailboxes/sales").text
