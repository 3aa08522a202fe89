"""The admin page over HTTP, served by ``mailroom admin`` on the demo deployment: sign-in and
its guards, the mailbox list, pausing, error folders and the dead-letter queue."""

from __future__ import annotations

import io
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_page import ADMIN, PASSWORD, AdminPage, Browser, create_admin, csrf_of, demo_with_admin
from harness import DEMO, Mailroom
from mailservers import Dovecot
from test_admin_commands import BROKEN, REPAIRED, error_folder_file, settle
from test_mailbox_test_command import configure, imaps


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Mailroom]:
    with demo_with_admin(tmp_path) as room:
        yield room


def test_every_page_asks_for_sign_in_first(demo: Mailroom) -> None:
    page = AdminPage(demo)
    http = page.client()

    for path in ("/", "/dlq", "/dlq/1", "/errors", "/audit"):
        answer = http.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/login?next=")
    assert http.get("/status", headers={"accept": "application/json"}).status_code == 401
    assert http.post("/dlq/purge", data={"csrf": "x"}).status_code == 401


def test_a_wrong_password_is_refused_and_the_right_one_opens_the_list(demo: Mailroom) -> None:
    b = Browser(AdminPage(demo).client())
    wrong = b.sign_in(ADMIN, "not the password")
    right = b.sign_in("Alice", PASSWORD, next_path="/dlq")

    assert wrong.status_code == 401 and "Wrong user name or password." in wrong.text
    assert right.status_code == 303 and right.headers["location"] == "/dlq"
    listing = b.get("/")
    assert listing.status_code == 200
    assert "Help desk default" in listing.text and ">demo</a>" in listing.text
    assert "fetching" in listing.text
    [demo_box] = b.get("/status", headers={"accept": "application/json"}).json()["default"]
    assert demo_box["status"] == "fetching" and demo_box["error_count"] == 1
    assert demo_box["last_polled_at"] is not None


def test_the_session_cookie_is_secure_httponly_and_samesite(demo: Mailroom) -> None:
    page = AdminPage(demo, MAILROOM_ADMIN_COOKIE_SECURE="true")
    http = page.client()
    form = http.get("/login")

    # The client keeps no Secure cookie over plain HTTP: the sign-in form's is sent by hand.
    http.cookies.set("mailroom_login_csrf", form.cookies["mailroom_login_csrf"])
    answer = http.post(
        "/login", data={"username": ADMIN, "password": PASSWORD, "csrf": csrf_of(form.text)}
    )

    assert answer.status_code == 303
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith("mailroom_session=")
    )
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite=lax"} <= flags
    assert "content-security-policy" in answer.headers


def test_sign_in_without_the_form_token_is_refused(demo: Mailroom) -> None:
    http = AdminPage(demo).client()

    answer = http.post("/login", data={"username": ADMIN, "password": PASSWORD, "csrf": "forged"})

    assert answer.status_code == 403 and "mailroom_session" not in answer.headers.get(
        "set-cookie", ""
    )


def test_repeated_wrong_passwords_lock_the_name_out_for_a_while(demo: Mailroom) -> None:
    b = Browser(AdminPage(demo).client())
    for _ in range(5):
        assert b.sign_in(ADMIN, "guess").status_code == 401

    locked = b.sign_in(ADMIN, PASSWORD)

    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text


def test_a_forged_csrf_token_changes_nothing_and_a_real_one_pauses(demo: Mailroom) -> None:
    b = AdminPage(demo).signed_in()

    forged = b.http.post("/mailboxes/demo/disable", data={"csrf": "forged"})
    missing = b.http.post("/mailboxes/demo/disable")
    still = demo.json("mailbox", "list")[0]["enabled"]
    paused = b.post("/mailboxes/demo/disable")

    assert forged.status_code == 403 and missing.status_code == 403
    assert still is True
    assert paused.status_code == 303
    [row] = demo.json("mailbox", "list")
    assert row["enabled"] is False and "paused in the admin page by alice" in row["paused_reason"]
    audit = b.get("/audit").text
    assert "disable" in audit and "mailbox demo" in audit and ADMIN in audit


def test_an_expired_session_is_refused(demo: Mailroom) -> None:
    page = AdminPage(demo, MAILROOM_ADMIN_IDLE_MINUTES="0.02")  # 1.2 s without a request
    b = page.signed_in()
    token = b.http.cookies["mailroom_session"]
    time.sleep(2)

    later = b.get("/")
    again = page.client()  # the expired token sent again, as a stale tab would
    again.cookies.set("mailroom_session", token)
    post = again.post("/mailboxes/demo/disable", data={"csrf": "any"})

    assert later.status_code == 303 and later.headers["location"].startswith("/login?expired=1")
    assert post.status_code == 401
    assert demo.json("mailbox", "list")[0]["enabled"] is True


def test_the_error_log_download_holds_the_decrypted_log_and_the_raw_mail(demo: Mailroom) -> None:
    b = AdminPage(demo).signed_in()
    page = b.get("/errors").text

    answer = b.post("/errors/download", {"mailbox": "demo"}, on="/errors")

    assert "Download error logs" in page and "Move mails to inbox" in page
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        names = sorted(archive.namelist())
        log = archive.read(names[1]).decode()
        raw = archive.read(names[0])
    assert "StartBoundaryNotFoundDefect" in log
    assert raw == (DEMO / "Maildir" / "new" / BROKEN).read_bytes()
    assert "download error logs" in b.get("/audit").text


def test_the_dead_letter_page_shows_the_log_and_replays_a_repaired_mail(demo: Mailroom) -> None:
    b = AdminPage(demo).signed_in()
    [entry] = demo.json("dlq", "list")
    listing = b.get("/dlq").text
    shown = b.get(f"/dlq/{entry['id']}").text
    error_folder_file(demo).write_bytes(REPAIRED)  # fixed by hand in a mail client

    replayed = b.post(f"/dlq/{entry['id']}/replay", on="/dlq")
    settle(demo, lambda: len(demo.json("requests", "list")) == 9)

    assert BROKEN in listing and f'href="/dlq/{entry["id"]}"' in listing
    assert "StartBoundaryNotFoundDefect" in shown and "Traceback" in shown
    assert replayed.status_code == 303 and replayed.headers["location"] == "/dlq?done=replayed"
    assert demo.json("dlq", "list") == []
    assert "Replayed" in b.get("/dlq?done=replayed").text


def test_move_to_inbox_and_purge_from_the_page(demo: Mailroom) -> None:
    b = AdminPage(demo).signed_in()
    error_folder_file(demo).write_bytes(REPAIRED)

    moved = b.post("/errors/demo/move-to-inbox", on="/errors")
    settle(demo, lambda: len(demo.json("requests", "list")) == 9)
    purged = b.post("/dlq/purge", on="/dlq")

    assert moved.status_code == 303
    assert "moved back to the inbox" in b.get(moved.headers["location"]).text
    assert demo.json("errors", "list")[0]["error_count"] == 0
    assert purged.status_code == 303


def test_a_sample_mail_is_shown_and_left_unread(demo: Mailroom) -> None:
    b = AdminPage(demo).signed_in()
    new = demo.maildir / "new" / "sample-1"
    new.write_bytes(
        b"From: Ada <ada@example.org>\r\nTo: support@demo.example\r\nSubject: Printer on fire"
        b"\r\nMessage-ID: <s1@example.org>\r\n\r\nHelp.\r\n"
    )

    shown = b.post("/mailboxes/demo/sample", on="/")
    tested = b.post("/mailboxes/demo/test", on="/")
    unknown = b.post("/mailboxes/nope/sample", on="/")

    assert shown.status_code == 200
    assert "Printer on fire" in shown.text and "ada@example.org" in shown.text
    assert new.exists(), "the sample was not marked read"
    assert "Connected and signed in; unread mail waiting." in tested.text
    assert unknown.status_code == 400 and "no mailbox named &#39;nope&#39;" in unknown.text


def test_a_wrong_password_is_one_clear_sentence_on_the_page(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    room = Mailroom.on_sqlite(tmp_path)
    user = f"w{uuid.uuid4().hex[:8]}@example.test"
    dovecot.add_user(user, "secret")
    configure(room, **imaps(dovecot, user, password="wrong"))
    create_admin(room)
    try:
        b = AdminPage(room).signed_in()

        sample = b.post("/mailboxes/box/sample", on="/")
        tested = b.post("/mailboxes/box/test", on="/")
    finally:
        room.stop_workers()

    for answer in (sample, tested):
        assert answer.status_code == 400
        assert "mailbox &#39;box&#39;" in answer.text and "refused username" in answer.text
        assert "Traceback" not in answer.text and "wrong" not in answer.text.split("<main>")[1]
