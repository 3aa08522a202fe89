"""The admin page against careless and hostile input, served by ``mailroom admin``: markup in
mail, names and file names shown as text; sign-in never sends the browser elsewhere; odd
addresses and oversized or odd forms get a clean refusal, never a traceback; sessions and
their CSRF tokens cannot be planted, reused after sign-out or crossed; every answer has the
security headers; the database out of reach gives a clean page."""

from __future__ import annotations

import html
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
import psycopg
import pytest
from admin_page import ADMIN, PASSWORD, AdminPage, Browser, create_admin, csrf_of
from harness import Mailroom
from psycopg import sql
from servers import PostgreSQL
from test_admin_mailbox_form import FORM, field_error, revision_of

#: Markup that runs script when a page shows it unescaped, in text and in an attribute.
XSS = '<script>alert(1)</script>"onmouseover=alert(2) x="'
#: The Maildir file name of a broken mail (a file name holds no "/"): it is the mail's ref
#: on the dead-letter pages.
HOSTILE_FILE = 'hostile-<img src=x onerror=alert(1)>"onmouseover=alert(2)'
#: A mail whose boundary never occurs (so it is dead-lettered, its error quoting the
#: boundary), with markup in the boundary and the subject.
BROKEN_HOSTILE = (
    b"From: Mallory <mallory@example.org>\r\nTo: support@demo.example\r\n"
    b"Subject: <script>alert(1)</script>\r\nMessage-ID: <hostile-1@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="<script>alert(1)</script>\\"onmouseover=alert(2)"'
    b"\r\n\r\n--other\r\nContent-Type: text/plain\r\n\r\nhello\r\n--other--\r\n"
)
#: A mail for "Fetch a sample mail": markup in the sender, the subject and a file name.
SAMPLE_HOSTILE = (
    b'From: "<script>alert(1)</script>\\"onmouseover=alert(2)" <mallory@example.org>\r\n'
    b"To: support@demo.example\r\nSubject: " + XSS.encode() + b"\r\n"
    b"Message-ID: <hostile-2@example.org>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    b"--b1\r\nContent-Type: application/octet-stream\r\n"
    b'Content-Disposition: attachment; filename="<img src=x onerror=alert(3)>.txt"\r\n\r\n'
    b"data\r\n--b1--\r\n"
)
HOSTILE_ADMIN = '<script>alert(1)</script>"onmouseover=alert(2)'


@pytest.fixture
def room(tmp_path: Path) -> Iterator[Mailroom]:
    """The demo Maildir plus a broken mail with markup in its file name and error, processed
    on the embedded default, with one admin."""
    room = Mailroom.on_sqlite(tmp_path)
    room.use_demo_maildir()
    (room.maildir / "new" / HOSTILE_FILE).write_bytes(BROKEN_HOSTILE)
    room.apply_settings()
    room.json("run", "--once")
    create_admin(room)
    yield room
    room.stop_workers()


def assert_shown_as_text(page: str, *texts: str) -> None:
    """Each text is on the page, escaped; no markup of it reached the page as markup."""
    for text in texts:
        assert html.escape(text, quote=True).replace("&#x27;", "&#39;") in _quotes(page), text
    assert "<script>alert" not in page and '"onmouseover=' not in page
    assert "<img src=x" not in page


def _quotes(page: str) -> str:
    # Jinja writes a double quote as &#34;, html.escape as &quot;: compared alike.
    return page.replace("&#34;", "&quot;")


def test_markup_in_mail_is_shown_as_text_on_the_dead_letter_and_sample_pages(
    room: Mailroom,
) -> None:
    b = AdminPage(room).signed_in()
    [entry] = [e for e in room.json("dlq", "list") if e["source"]["ref"] == HOSTILE_FILE]
    (room.maildir / "new" / "sample-hostile").write_bytes(SAMPLE_HOSTILE)

    listing = b.get("/dlq").text
    shown = b.get(f"/dlq/{entry['id']}").text
    sample = b.post("/mailboxes/demo/sample", on="/")

    boundary = '<script>alert(1)</script>"onmouseover=alert(2)'
    assert_shown_as_text(listing, HOSTILE_FILE, boundary)
    assert_shown_as_text(shown, HOSTILE_FILE, boundary)
    assert sample.status_code == 200
    assert_shown_as_text(sample.text, XSS, "<img src=x onerror=alert(3)>.txt")
    assert "mallory@example.org" in sample.text


def test_markup_in_an_admin_name_is_shown_as_text_in_the_list_error_folders_and_audit(
    room: Mailroom,
) -> None:
    create_admin(room, HOSTILE_ADMIN, PASSWORD)
    b = AdminPage(room).signed_in(HOSTILE_ADMIN)
    name = HOSTILE_ADMIN.lower()

    paused = b.post("/mailboxes/demo/disable")
    pages = {path: b.get(path).text for path in ("/", "/errors", "/audit")}

    assert paused.status_code == 303
    for page in pages.values():  # the signed-in name in the header, on each page
        assert_shown_as_text(page, name)
    for path in ("/", "/errors"):
        assert_shown_as_text(pages[path], f"paused in the admin page by {name}")
    assert f"<td>{html.escape(name, quote=True)}</td><td>disable</td>" in _quotes(pages["/audit"])
    status = b.get("/status", headers={"accept": "application/json"})
    assert status.headers["content-type"] == "application/json"
    assert name in status.json()["default"][0]["reason"]


def test_a_mailbox_name_with_markup_is_refused_at_its_field_and_shown_as_text(
    room: Mailroom,
) -> None:
    b = AdminPage(room).signed_in()
    opened = "/add-mailbox?helpdesk=default"

    saved = b.post(
        "/add-mailbox",
        {**FORM, "name": XSS, "helpdesk": "default", "revision": revision_of(b.get(opened).text)},
        on=opened,
    )
    unknown_desk = b.get("/add-mailbox", params={"helpdesk": XSS})
    done = b.get("/", params={"done": "paused", "mailbox": XSS})
    named = b.get("/", params={"done": "paused", "mailbox": "demo"})
    unknown_box = b.get(f"/mailboxes/{HOSTILE_FILE}")  # a path segment holds no "/"
    sample = b.post(f"/mailboxes/{HOSTILE_FILE}/sample")

    assert saved.status_code == 400 and field_error(saved.text, "name")
    assert_shown_as_text(saved.text, XSS)  # typed again into the field, as text
    assert unknown_desk.status_code == 404 and unknown_box.status_code == 404
    assert sample.status_code == 400
    assert_shown_as_text(unknown_desk.text, "<script>alert(1)</script>")
    # What the list says after an action names a mailbox, never text from a link.
    assert "Fetching paused.</p>" in done.text and "alert" not in done.text
    assert "Fetching paused: mailbox demo.</p>" in named.text
    for answer in (unknown_box, sample):
        assert_shown_as_text(answer.text, "<img src=x onerror=alert(1)>")
    assert [m["name"] for m in room.json("mailbox", "list")] == ["demo"]


NEXT_TARGETS = [
    "//evil.example/",
    "https://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\r\n/evil.example",
    " //evil.example",
    "/%2F/evil.example",
    "%2F%2Fevil.example",
    "/%5Cevil.example",
    "//%65vil.example",
    "/.//evil.example",
]


def test_sign_in_never_sends_the_browser_to_another_site(room: Mailroom) -> None:
    page = AdminPage(room)
    base = page.url + "/login"

    for target in NEXT_TARGETS:
        b = Browser(page.client())
        form = b.get("/login", params={"next": target})  # the link an attacker sends
        followed = b.http.post(
            "/login",
            data={
                "username": ADMIN,
                "password": PASSWORD,
                "csrf": csrf_of(form.text),
                "next": next_field(form.text),
            },
        )
        posted = b.sign_in(ADMIN, PASSWORD, next_path=target)  # the field forged as well

        for answer in (followed, posted):
            assert answer.status_code == 303, target
            location = answer.headers["location"]
            # A browser drops tabs and line breaks from a URL and reads "\" as "/".
            seen = re.sub(r"[\t\r\n]", "", location).replace("\\", "/")
            assert seen.startswith("/") and not seen.startswith("//"), (target, location)
            assert urlsplit(urljoin(base, seen)).netloc == urlsplit(base).netloc
    kept = Browser(page.client()).sign_in(ADMIN, PASSWORD, next_path="/dlq?done=replayed")
    assert kept.headers["location"] == "/dlq?done=replayed"


def next_field(page: str) -> str:
    found = re.search(r'name="next" value="([^"]*)"', page)
    assert found, "the sign-in form has no next field"
    return html.unescape(found.group(1))


def raw_request(
    page: AdminPage, method: str, target: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """One request sent byte for byte (no client tidies the path): status, headers, body."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if method == "POST":
        lines.append("Content-Length: 0")
    with socket.create_connection(("127.0.0.1", page.port), timeout=60) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = dict(line.split(": ", 1) for line in header_lines)
    status = int(status_line.split()[1])
    return status, {k.lower(): v for k, v in found.items()}, body.decode(errors="replace")


ODD_NAMES = [
    "..",
    "%2e%2e",
    "..%2F..%2Fetc%2Fpasswd",
    "%2F",
    "%00",
    "demo%00",
    "demo%00.zip",
    "%FF%FE",
    "%E2%80%AE%6F%6D%65%64",  # a right-to-left override before "omed"
    "%E6%97%A5%E6%9C%AC",
    "%ZZ",
    "a" * 10240,
]
ODD_IDS = [
    "..",
    "%00",
    "1%00",
    "-1",
    "0",
    "1e3",
    "0x1",
    "%C2%B2",  # a superscript two: a digit to str.isdigit, not to int()
    "%D9%A1",  # an Arabic-Indic one
    "%EF%BC%91",  # a full-width one
    "999999999999999999",
    "9" * 10240,
]


def test_odd_mailbox_names_and_entry_ids_in_the_address_get_a_clean_refusal(
    room: Mailroom,
) -> None:
    page = AdminPage(room)
    b = page.signed_in()
    signed = {
        "cookie": f"mailroom_session={b.http.cookies['mailroom_session']}",
        "x-csrf-token": csrf_of(b.get("/").text),
    }
    requests = [("GET", f"/mailboxes/{n}") for n in ODD_NAMES]
    requests += [("POST", f"/mailboxes/{n}/{a}") for n in ODD_NAMES for a in ("disable", "sample")]
    requests += [("POST", f"/errors/{n}/move-to-inbox") for n in ODD_NAMES]
    requests += [("GET", f"/dlq/{i}") for i in ODD_IDS]
    requests += [("POST", f"/dlq/{i}/replay") for i in ODD_IDS]
    requests += [("GET", f"/add-mailbox?helpdesk={n}") for n in ODD_NAMES]

    for method, target in requests:
        status, headers, body = raw_request(page, method, target, signed)

        assert status in (400, 404), (method, target[:80], status, body[:300])
        assert "Traceback" not in body and 'File "' not in body
        assert "content-security-policy" in headers
    for target in ("/static/..%2F..%2Fapp.py", "/static/%2e%2e/security.py", "/static/%00"):
        status, _, body = raw_request(page, "GET", target)
        assert status == 404 and "import" not in body
    assert [m["enabled"] for m in room.json("mailbox", "list")] == [True]
    assert len(room.json("dlq", "list")) == 2  # nothing replayed
    assert "Traceback" not in room.worker_log("admin")


def form_post(b: Browser, path: str, body: bytes, kind: str) -> httpx.Response:
    return b.http.post(path, content=body, headers={"content-type": kind})


URLENCODED = "application/x-www-form-urlencoded"


def test_oversized_and_odd_form_bodies_are_refused_cleanly(room: Mailroom) -> None:
    page = AdminPage(room)
    b = page.signed_in()
    token = csrf_of(b.get("/").text)
    anonymous = Browser(page.client())
    form = anonymous.get("/login")
    login_csrf = csrf_of(form.text)

    huge = form_post(anonymous, "/login", b"username=" + b"a" * 5_000_000, URLENCODED)
    huge_signed = b.http.post(
        "/errors/download",
        content=b"note=" + b"a" * 5_000_000,
        headers={"content-type": URLENCODED, "x-csrf-token": token},
    )
    many = "&".join(f"f{i}=1" for i in range(5000)) + f"&csrf={token}"
    many_fields = form_post(b, "/mailboxes/demo/disable", many.encode(), URLENCODED)
    filed = anonymous.http.post(
        "/login",
        data={"username": ADMIN, "password": PASSWORD, "csrf": login_csrf},
        files={"note": ("note.txt", b"x" * 200_000, "text/plain")},
    )
    filed_signed = b.http.post(
        "/mailboxes/demo/disable", data={"csrf": token}, files={"f": ("f.bin", b"x")}
    )

    for answer in (huge, huge_signed, many_fields, filed, filed_signed):
        assert answer.status_code in (400, 413), answer.text[:200]
        assert "Traceback" not in answer.text
        assert "mailroom_session" not in answer.headers.get("set-cookie", "")
    assert room.json("mailbox", "list")[0]["enabled"] is True
    assert httpx.get(f"{page.url}/healthz").text == "ok"

    # A form sent as multipart without files is an ordinary form.
    fields_only = anonymous.http.post(
        "/login",
        data={"username": ADMIN, "password": PASSWORD, "csrf": login_csrf},
        files={"username": (None, ADMIN)},
    )
    assert fields_only.status_code == 303


def test_a_repeated_field_counts_once_and_non_utf8_bytes_are_no_crash(room: Mailroom) -> None:
    page = AdminPage(room)
    b = page.signed_in()
    token = csrf_of(b.get("/").text)

    forged_last = form_post(
        b, "/mailboxes/demo/disable", f"csrf={token}&csrf=forged".encode(), URLENCODED
    )
    enabled_after_forged = room.json("mailbox", "list")[0]["enabled"]
    real_last = form_post(
        b, "/mailboxes/demo/disable", f"csrf=forged&csrf={token}".encode(), URLENCODED
    )
    anonymous = Browser(page.client())
    login_csrf = csrf_of(anonymous.get("/login").text)
    latin = form_post(
        anonymous,
        "/login",
        b"username=\xff\xfe%FF%C0%80caf\xe9&password=\xff" + f"&csrf={login_csrf}".encode(),
        URLENCODED,
    )
    opened = "/add-mailbox?helpdesk=default"
    revision = revision_of(b.get(opened).text)
    fields = {**FORM, "helpdesk": "default", "revision": revision, "csrf": token}
    body = urlencode({k: v for k, v in fields.items() if k != "name"}).encode()
    odd_name = form_post(b, "/add-mailbox", body + b"&name=sup\xff\xfe%FFport", URLENCODED)

    assert forged_last.status_code == 403 and enabled_after_forged is True
    assert real_last.status_code == 303
    assert latin.status_code == 401 and "Wrong user name or password." in latin.text
    assert odd_name.status_code == 400 and field_error(odd_name.text, "name")
    assert [m["name"] for m in room.json("mailbox", "list")] == ["demo"]
    assert "Traceback" not in room.worker_log("admin")


def test_the_zip_download_name_is_one_plain_header(room: Mailroom) -> None:
    b = AdminPage(room).signed_in()

    one = b.post("/errors/download", {"mailbox": "demo"}, on="/errors")
    every = b.post("/errors/download", on="/errors")
    odd = {
        name: b.post("/errors/download", {"mailbox": name}, on="/errors")
        for name in (
            'demo"\r\nX-Injected: yes',
            'demo"; filename="evil.exe',
            "demo\x00",
            "../../etc/passwd",
            "démo",
            "\u202eexe.zip",
        )
    }

    assert one.headers["content-disposition"] == 'attachment; filename="mailroom-errors-demo.zip"'
    assert every.headers["content-disposition"] == 'attachment; filename="mailroom-errors-all.zip"'
    for name, answer in odd.items():
        assert answer.status_code == 400, name
        assert "content-disposition" not in answer.headers and "x-injected" not in answer.headers
        assert "no mailbox named" in html.unescape(answer.text)


def test_a_session_cookie_planted_before_sign_in_is_never_the_session(room: Mailroom) -> None:
    create_admin(room, "bob", "another long password")
    page = AdminPage(room)
    bobs = page.signed_in("bob", "another long password").http.cookies["mailroom_session"]

    for planted in ("chosen-by-an-attacker", bobs):
        b = Browser(page.client())
        b.http.cookies.set("mailroom_session", planted, domain="127.0.0.1", path="/")
        signed = b.sign_in(ADMIN, PASSWORD)
        session = b.http.cookies["mailroom_session"]
        header = re.search(r"<span>([^<]*)</span> <button", b.get("/").text)

        assert signed.status_code == 303 and session != planted
        assert header and header[1] == ADMIN
    stranger = page.client()
    stranger.cookies.set("mailroom_session", "chosen-by-an-attacker")
    assert stranger.get("/").status_code == 303


def test_sign_out_ends_the_session_on_the_server(room: Mailroom) -> None:
    page = AdminPage(room)
    b = page.signed_in()
    token = b.http.cookies["mailroom_session"]
    csrf = csrf_of(b.get("/").text)

    out = b.post("/logout")
    stale = page.client()  # the old cookie, kept by a copy of the browser or a thief
    stale.cookies.set("mailroom_session", token)
    shown = stale.get("/")
    post = stale.post("/mailboxes/demo/disable", data={"csrf": csrf})

    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert 'mailroom_session=""' in out.headers["set-cookie"]
    assert shown.status_code == 303 and shown.headers["location"].startswith("/login")
    assert post.status_code == 401
    assert room.json("mailbox", "list")[0]["enabled"] is True


def test_the_csrf_token_of_one_session_is_refused_in_another(room: Mailroom) -> None:
    create_admin(room, "bob", "another long password")
    page = AdminPage(room)
    alice = page.signed_in()
    bob = page.signed_in("bob", "another long password")
    bobs_token = csrf_of(bob.get("/").text)
    earlier = page.signed_in()
    earlier_token = csrf_of(earlier.get("/").text)
    earlier.post("/logout")

    in_form = alice.http.post("/mailboxes/demo/disable", data={"csrf": bobs_token})
    in_header = alice.http.post("/dlq/purge", headers={"x-csrf-token": bobs_token})
    ended = alice.http.post("/mailboxes/demo/disable", data={"csrf": earlier_token})
    own = alice.post("/mailboxes/demo/disable")

    assert in_form.status_code == in_header.status_code == ended.status_code == 403
    assert own.status_code == 303
    assert len(room.json("dlq", "list")) == 2
    row = room.json("mailbox", "list")[0]
    assert row["enabled"] is False and "by alice" in row["paused_reason"]


def assert_security_headers(answer: httpx.Response, what: str) -> None:
    policy = answer.headers.get("content-security-policy", "")
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, what
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, what
    assert answer.headers.get("x-frame-options") == "DENY", what
    assert answer.headers.get("x-content-type-options") == "nosniff", what
    assert answer.headers.get("referrer-policy") == "no-referrer", what
    assert answer.headers.get("cache-control") == "no-store", what


def test_every_answer_has_the_security_headers(room: Mailroom) -> None:
    page = AdminPage(room)
    http = page.client()
    b = page.signed_in()
    login = http.get("/login")
    answers = {
        "login form": login,
        "wrong password": http.post(
            "/login", data={"username": ADMIN, "password": "nope", "csrf": csrf_of(login.text)}
        ),
        "forged sign-in": http.post("/login", data={"username": ADMIN, "csrf": "forged"}),
        "to sign-in": http.get("/dlq"),
        "401": http.get("/status", headers={"accept": "application/json"}),
        "unknown address": http.get("/no-such-page"),
        "wrong method": http.get("/logout"),
        "static script": http.get("/static/admin.js"),
        "static style": http.get("/static/admin.css"),
        "static missing": http.get("/static/nothing.js"),
        "health": http.get("/healthz"),
        "list": b.get("/"),
        "json": b.get("/status", headers={"accept": "application/json"}),
        "entry": b.get("/dlq/1"),
        "no entry": b.get("/dlq/424242"),
        "403": b.http.post("/dlq/purge", data={"csrf": "forged"}),
        "400 form": b.http.post(
            "/dlq/purge",
            content=b"csrf=" + b"a" * 2_000_000,
            headers={"content-type": URLENCODED},
        ),
        "zip": b.post("/errors/download", {"mailbox": "demo"}, on="/errors"),
        "redirect": b.post("/mailboxes/demo/disable"),
    }

    assert answers["static script"].status_code == 200
    assert answers["zip"].headers["content-type"] == "application/zip"
    for what, answer in answers.items():
        assert_security_headers(answer, what)


@pytest.fixture
def on_postgres(postgres: PostgreSQL, tmp_path: Path) -> Iterator[tuple[Mailroom, str]]:
    """The demo settings on PostgreSQL (with the embedded broker), one admin; and the
    database's name."""
    url = postgres.new_database()
    room = Mailroom(tmp_path, "memory://", url)
    room.use_demo_maildir()
    room.apply_settings()
    room.json("run", "--once")
    create_admin(room)
    yield room, url.rsplit("/", 1)[1]
    room.stop_workers()


def test_a_nul_in_a_user_name_or_mailbox_is_refused_on_postgresql(
    on_postgres: tuple[Mailroom, str],
) -> None:
    room, _ = on_postgres
    page = AdminPage(room)
    b = page.signed_in()
    anonymous = Browser(page.client())

    signed = anonymous.sign_in(ADMIN + "\x00", PASSWORD)
    download = b.post("/errors/download", {"mailbox": "demo\x00"}, on="/errors")
    shown = b.get("/mailboxes/demo%00")

    assert signed.status_code == 401 and "Wrong user name or password." in signed.text
    assert download.status_code == 400 and "no mailbox named" in download.text
    assert shown.status_code == 404
    assert "Traceback" not in room.worker_log("admin")


def test_the_database_out_of_reach_gives_a_clean_page_until_it_is_back(
    on_postgres: tuple[Mailroom, str], postgres: PostgreSQL
) -> None:
    room, dbname = on_postgres
    page = AdminPage(room)
    b = page.signed_in()
    anonymous = Browser(page.client())
    login_csrf = csrf_of(anonymous.get("/login").text)
    database = sql.Identifier(dbname)

    with psycopg.connect(postgres.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(database))
        postgres.drop_connections(dbname)
        try:
            answers = {
                "list": b.get("/"),
                "entry": b.get("/dlq/1"),
                "pause": b.http.post("/mailboxes/demo/disable", data={"csrf": "any"}),
                "sign-in": anonymous.http.post(
                    "/login", data={"username": ADMIN, "password": PASSWORD, "csrf": login_csrf}
                ),
            }
            health = b.get("/healthz")
        finally:
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(database))

    for what, answer in answers.items():
        assert answer.status_code == 503, (what, answer.status_code, answer.text[:300])
        assert "Try again in a moment" in answer.text, what
        assert "Traceback" not in answer.text and dbname not in answer.text, what
        assert "postgresql" not in answer.text, what
        assert_security_headers(answer, what)
    assert health.text == "ok"
    assert "cannot be reached" in room.worker_log("admin")
    back = b.get("/")
    assert back.status_code == 200 and ">demo</a>" in back.text
    assert room.json("mailbox", "list")[0]["enabled"] is True
