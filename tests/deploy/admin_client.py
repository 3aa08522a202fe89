"""The admin page over plain HTTP, as a browser on the same host uses it.

The page marks its cookies ``Secure`` (the default the stack keeps), which Python's cookie
jar would only send over HTTPS; browsers send them to ``localhost`` as well. So cookies are
kept here by hand, and every ``Set-Cookie`` is kept to be looked at. Redirects are not
followed, so that each answer can be checked.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Message
    body: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class AdminPage:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.cookies: dict[str, str] = {}
        #: Every Set-Cookie header received, as sent.
        self.set_cookies: list[str] = []
        self._opener = urllib.request.build_opener(_NoRedirect)

    def request(self, path: str, form: dict[str, str] | None = None) -> Answer:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers)
        try:
            with self._opener.open(request, timeout=15) as answer:
                found = Answer(answer.status, answer.headers, answer.read().decode())
        except urllib.error.HTTPError as refused:
            found = Answer(refused.code, refused.headers, refused.read().decode())
        for header in found.headers.get_all("Set-Cookie") or []:
            self._keep(header)
        return found

    def sign_in(self, username: str, password: str) -> Answer:
        """The sign-in form, then its POST: the answer to the POST (303 when signed in)."""
        form = self.request("/login")
        assert form.status == 200, form
        match = re.search(r'name="csrf" value="([^"]+)"', form.body)
        assert match, form.body
        fields = {"csrf": match[1], "next": "/", "username": username, "password": password}
        return self.request("/login", fields)

    def _keep(self, header: str) -> None:
        self.set_cookies.append(header)
        name, _, value = header.split(";", 1)[0].partition("=")
        if re.search(r"max-age=0\b", header, re.IGNORECASE) or value.strip('"') == "":
            self.cookies.pop(name.strip(), None)
        else:
            self.cookies[name.strip()] = value
