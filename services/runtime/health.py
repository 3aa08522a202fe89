"""Whether a process is alive and ready, and the small HTTP endpoint that tells it.

``/healthz`` answers 200 while the process runs. ``/readyz`` answers 200 once the broker and
the store are reachable, and 503 with the reason while they are not (at start, and during
an outage that the worker is waiting out). ``/metrics`` serves the process's registry in
the Prometheus text format.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)


class Health:
    """Ready or not, and why not; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = False
        self._reason = "starting"

    def set_ready(self) -> None:
        with self._lock:
            self._ready, self._reason = True, ""

    def set_not_ready(self, reason: str) -> None:
        with self._lock:
            self._ready, self._reason = False, reason

    def state(self) -> tuple[bool, str]:
        with self._lock:
            return self._ready, self._reason


class HealthServer:
    """Serves ``/healthz`` and ``/readyz`` for ``health`` on ``host:port`` from a thread, and
    ``/metrics`` from ``registry`` (a new, empty one when None).

    Port 0 takes any free port (``port`` then tells which). Raises ``OSError`` when the
    address cannot be bound.
    """

    def __init__(
        self, health: Health, host: str, port: int, registry: CollectorRegistry | None = None
    ) -> None:
        handler = _handler_for(health, registry or CollectorRegistry())
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(health: Health, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._answer(200, "alive")
            elif path == "/readyz":
                ready, reason = health.state()
                self._answer(200, "ready") if ready else self._answer(503, f"not ready: {reason}")
            elif path == "/metrics":
                # The format the scraper asks for: Prometheus text, or OpenMetrics.
                encode, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, encode(registry), content_type)
            else:
                self._answer(404, "not found: try /healthz, /readyz or /metrics")

        def _answer(self, status: int, text: str) -> None:
            self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            log.debug("health: " + format, *args)

    return Handler
