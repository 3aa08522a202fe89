"""A ``mailroom admin`` process over a test deployment, and an HTTP client that signs in."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from harness import MAILROOM, Mailroom
from servers import free_port
from test_demo_mailbox import process_demo

ADMIN = "alice"
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@contextmanager
def demo_with_admin(tmp_path: Path) -> Iterator[Mailroom]:
    """The demo Maildir processed on the embedded default, with one admin; its processes
    stopped at the end."""
    room = Mailroom.on_sqlite(tmp_path)
    try:
        process_demo(room)
        create_admin(room)
        yield room
    finally:
        room.stop_workers()


def create_admin(room: Mailroom, name: str = ADMIN, password: str = PASSWORD) -> None:
    done = subprocess.run(
        [*MAILROOM, "admin", "create-user", name, "--password-stdin"],
        input=password + "\n",
        env=room.env,
        cwd=room.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


class AdminPage:
    """``mailroom admin`` on a free loopback port, as the worker ``name`` of ``room``."""

    def __init__(
        self, room: Mailroom, name: str = "admin", *, port: int | None = None, **env: str
    ) -> None:
        self.room = room
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        saved = dict(room.env)
        room.env.update({"MAILROOM_ADMIN_COOKIE_SECURE": "false", **env})
        try:
            room.start_command(name, "admin", "--port", str(self.port))
        finally:
            room.env.clear()
            room.env.update(saved)
        self.name = name
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if self.room.workers[self.name].poll() is not None:
                raise AssertionError(f"mailroom admin ended:\n{self.room.worker_log(self.name)}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).text == "ok":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("mailroom admin did not answer within 60 s")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, follow_redirects=False)

    def signed_in(self, name: str = ADMIN, password: str = PASSWORD) -> Browser:
        browser = Browser(self.client())
        answer = browser.sign_in(name, password)
        assert answer.status_code == 303, answer.text
        return browser


class Browser:
    """An HTTP client that keeps cookies and sends the page's CSRF token with each form."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def sign_in(self, name: str, password: str, next_path: str = "/") -> httpx.Response:
        form = self.http.get("/login", params={"next": next_path})
        return self.http.post(
            "/login",
            data={
                "username": name,
                "password": password,
                "csrf": csrf_of(form.text),
                "next": next_path,
            },
        )

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(
        self, path: str, data: dict[str, str] | None = None, *, on: str = "/"
    ) -> httpx.Response:
        """Submit a form of the page ``on`` (its CSRF token sent along)."""
        token = csrf_of(self.http.get(on).text)
        return self.http.post(path, data={"csrf": token, **(data or {})})


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)
