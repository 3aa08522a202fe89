"""The admin page in a real browser (headless Chromium): sign-in, the mailbox list, the
error-log download, a dead-letter replay with its confirmation, and the refusals of a forged
CSRF token and of an expired session. Screenshots of the main views go to docs/screenshots/."""

from __future__ import annotations

import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_page import ADMIN, PASSWORD, AdminPage, create_admin, demo_with_admin
from conftest import SCREENSHOTS
from harness import Mailroom
from mailservers import Dovecot
from playwright.sync_api import Browser, Page, expect
from test_admin_commands import REPAIRED, error_folder_file, settle

pytestmark = pytest.mark.xdist_group("browser")

SAMPLE = (
    b"From: Ada <ada@example.org>\r\nTo: support@example.test\r\n"
    b"Subject: Printer on fire on floor 3\r\nMessage-ID: <b1@example.org>\r\n\r\nHelp.\r\n"
)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Mailroom]:
    with demo_with_admin(tmp_path) as room:
        yield room


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(accept_downloads=True, viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def sign_in(page: Page, admin: AdminPage, then: str = "/") -> None:
    page.goto(admin.url + then)
    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(admin.url + then)


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_sign_in_list_download_and_replay(demo: Mailroom, page: Page, tmp_path: Path) -> None:
    admin = AdminPage(demo)
    page.goto(admin.url + "/")
    expect(page).to_have_url(admin.url + "/login?next=/")
    shot(page, "sign-in")
    sign_in(page, admin)

    row = page.locator("tr[data-mailbox=demo]")
    expect(row.locator("[data-field=status]")).to_contain_text("fetching")
    expect(row.locator("[data-field=error_count]")).to_have_text("1")
    shot(page, "mailboxes")

    page.click("nav >> text=Error folders")
    with page.expect_download() as download:
        page.click("tr[data-mailbox=demo] >> button:has-text('Download error logs')")
    saved = tmp_path / "errors.zip"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        logs = [n for n in archive.namelist() if n.endswith(".txt")]
        assert "StartBoundaryNotFoundDefect" in archive.read(logs[0]).decode()
    shot(page, "error-folders")

    page.click("nav >> text=Dead letters")
    [entry] = demo.json("dlq", "list")
    page.click(f"a[href='/dlq/{entry['id']}']")
    expect(page.locator("#log")).to_contain_text("StartBoundaryNotFoundDefect")
    shot(page, "dead-letter-entry")
    error_folder_file(demo).write_bytes(REPAIRED)  # fixed by hand in a mail client
    dialogs: list[str] = []

    def accept(dialog) -> None:  # type: ignore[no-untyped-def]
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click("button:has-text('Replay')")
    expect(page.locator("p.notice")).to_contain_text("Replayed")
    settle(demo, lambda: len(demo.json("requests", "list")) == 9)

    assert dialogs and f"Replay dead-letter entry {entry['id']}" in dialogs[0]
    assert demo.json("dlq", "list") == []


def test_the_list_refreshes_itself(demo: Mailroom, page: Page) -> None:
    admin = AdminPage(demo, MAILROOM_ADMIN_REFRESH_SECONDS="1")
    sign_in(page, admin)
    status = page.locator("tr[data-mailbox=demo] [data-field=status]")
    expect(status).to_contain_text("fetching")

    demo.cli("mailbox", "disable", "demo")  # elsewhere: the command line

    expect(status).to_contain_text("paused", timeout=15_000)
    expect(status).to_contain_text("disabled by hand")
    expect(page.locator("tr[data-mailbox=demo] button")).to_have_text("Enable")
    assert page.url == admin.url + "/", "the page was not reloaded"


def test_a_dismissed_confirmation_does_nothing(demo: Mailroom, page: Page) -> None:
    admin = AdminPage(demo)
    sign_in(page, admin, "/dlq")
    page.once("dialog", lambda dialog: dialog.dismiss())

    page.click("button:has-text('Purge')")

    expect(page).to_have_url(admin.url + "/dlq")
    assert len(demo.json("dlq", "list")) == 1


def test_a_forged_csrf_token_is_refused(demo: Mailroom, page: Page) -> None:
    admin = AdminPage(demo)
    sign_in(page, admin)
    form = page.locator("tr[data-mailbox=demo] form")
    form.locator("input[name=csrf]").evaluate("input => { input.value = 'forged' }")

    form.locator("button").click()

    expect(page.locator("body")).to_contain_text("security token is missing or wrong")
    assert demo.json("mailbox", "list")[0]["enabled"] is True


def test_an_expired_session_is_sent_back_to_sign_in(demo: Mailroom, page: Page) -> None:
    admin = AdminPage(demo, MAILROOM_ADMIN_IDLE_MINUTES="0.02")  # 1.2 s without a request
    sign_in(page, admin)
    page.wait_for_timeout(2000)

    page.click("nav >> text=Dead letters")

    expect(page.locator("p.notice")).to_contain_text("Your session has ended")
    assert "/login?expired=1" in page.url


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Mailroom]:
    """A help desk without mailboxes yet, and one admin."""
    room = Mailroom.on_sqlite(tmp_path)
    room.apply_settings("helpdesks:\n  - id: default\n")
    create_admin(room)
    yield room
    room.stop_workers()


def test_an_imaps_mailbox_set_up_in_the_form_fetches_a_sample(
    desk: Mailroom, dovecot: Dovecot, page: Page
) -> None:
    user = f"support-{uuid.uuid4().hex[:8]}@example.test"
    dovecot.add_user(user, "mailbox secret")
    dovecot.deliver(user, SAMPLE)
    admin = AdminPage(desk)
    sign_in(page, admin)
    page.click("text=Add a mailbox")

    page.fill("input[name=name]", "support")
    page.select_option("select[name=protocol]", "pops")
    expect(page.locator("input[name=port]")).to_have_value("995")
    expect(page.locator("input[name=folder]")).to_be_hidden()
    page.select_option("select[name=protocol]", "imaps")
    expect(page.locator("input[name=port]")).to_have_value("993")
    page.fill("input[name=host]", "localhost")
    page.fill("input[name=port]", str(dovecot.imaps_port))
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", "mailbox secret")
    page.fill("input[name=addresses]", "support@example.test, help@example.test")
    page.fill("input[name=tls_ca_file]", str(dovecot.ca_file))
    shot(page, "mailbox-form")
    page.click("button:has-text('Save')")

    expect(page.locator("p.notice")).to_contain_text("Settings saved")
    expect(page.locator("#state")).to_contain_text("paused")
    expect(page.locator("text=Password (set)")).to_be_visible()
    assert "mailbox secret" not in page.content()
    page.click("button:has-text('Fetch a sample mail')")
    expect(page.locator("#sample")).to_contain_text("Printer on fire on floor 3")
    expect(page.locator("#sample")).to_contain_text("ada@example.org")
    shot(page, "sample-mail")
    page.click("text=Back to the mailbox")
    page.click("button:has-text('Enable fetching')")
    expect(page.locator("tr[data-mailbox=support] [data-field=status]")).to_contain_text("fetching")


def test_oauth_on_pop_is_refused_at_its_field(desk: Mailroom, chromium: Browser) -> None:
    # Without scripts every choice can be sent, as from an old or tampered page: the server
    # applies the settings file's rules whatever the page let through.
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        admin = AdminPage(desk)
        sign_in(page, admin)
        page.goto(admin.url + "/add-mailbox?helpdesk=default&protocol=pops")
        page.fill("input[name=name]", "legacy")
        page.select_option("select[name=auth]", "oauth")
        page.fill("input[name=host]", "pop.example.test")
        page.fill("input[name=username]", "legacy@example.test")
        page.click("button:has-text('Save')")

        expect(page.locator("#error-auth")).to_contain_text("OAuth")
        expect(page.locator("p.error").first).to_contain_text("Nothing was saved")
        shot(page, "validation-error")
        assert desk.json("mailbox", "list") == []
    finally:
        context.close()
