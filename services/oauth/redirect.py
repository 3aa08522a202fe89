"""Where the browser's redirect after consent is picked up: a one-shot listener on a loopback
redirect URL, or the address pasted by the admin."""

from __future__ import annotations

import socket
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import urlsplit

from contracts.settings import MailboxSettings
from services.runtime.errors import ConfigError

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
PAGE = (
    b"<!doctype html><html><head><meta charset='utf-8'><title>Mailroom</title></head><body>"
    b"<p>%s</p></body></html>"
)


def is_loopback(redirect_url: str) -> bool:
    return (urlsplit(redirect_url).hostname or "") in LOOPBACK_HOSTS


class LoopbackListener:
    """Listens on the redirect URL's host and port, bound before the browser is sent off,
    until one request reaches the redirect path; other paths get a 404."""

    def __init__(self, box: MailboxSettings, redirect_url: str) -> None:
        parts = urlsplit(redirect_url)
        if parts.scheme != "http" or not is_loopback(redirect_url):
            raise ValueError("only an http URL on a loopback host is listened on")
        self._box = box
        self._path = parts.path or "/"
        self._url = redirect_url
        self._origin = f"{parts.scheme}://{parts.netloc}"
        host = parts.hostname or "localhost"
        port = parts.port or 80
        self.received: str | None = None
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                listener._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # the request line holds the code: never logged

        server_class = _IPv6Server if ":" in host else HTTPServer
        try:
            self._server = server_class((host, port), Handler)
        except OSError as exc:
            raise ConfigError(
                f"mailbox {box.name!r}: cannot listen on {host} port {port} for the redirect "
                f"({exc.strerror}): free the port, choose another `redirect_url` (registered "
                "with the app too), or use --paste"
            ) from None

    def wait(self, timeout: float) -> str:
        """The redirected URL; raises ``ConfigError`` when no browser came in ``timeout``."""
        deadline = time.monotonic() + timeout
        try:
            while self.received is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ConfigError(
                        f"mailbox {self._box.name!r}: no browser came back to {self._url} "
                        f"within {timeout:g} seconds; nothing was stored: run the command "
                        "again (--timeout waits longer), or use --paste"
                    )
                self._server.timeout = min(left, 1.0)
                self._server.handle_request()
        finally:
            self._server.server_close()
        return self.received

    def close(self) -> None:
        self._server.server_close()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        if urlsplit(request.path).path != self._path:
            self._answer(request, 404, b"Not the redirect address of this authorization.")
            return
        self.received = self._origin + request.path
        if "error=" in request.path:
            self._answer(request, 200, b"Authorization refused. See the terminal.")
        else:
            self._answer(
                request,
                200,
                b"Authorization received. You can close this window and go back to the terminal.",
            )

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, text: bytes) -> None:
        body = PAGE % text
        request.send_response(status)
        request.send_header("Content-Type", "text/html; charset=utf-8")
        request.send_header("Content-Length", str(len(body)))
        request.send_header("Cache-Control", "no-store")
        request.end_headers()
        request.wfile.write(body)


class _IPv6Server(HTTPServer):
    address_family = socket.AF_INET6
