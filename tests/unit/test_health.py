"""/healthz and /readyz over HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_alive_from_the_start_ready_only_once_the_broker_and_store_answer(served):
    health, port = served

    assert get(port, "/healthz") == (200, "alive\n")
    assert get(port, "/readyz") == (503, "not ready: starting\n")

    health.set_ready()
    assert get(port, "/readyz") == (200, "ready\n")


def test_not_ready_says_what_cannot_be_reached(served):
    health, port = served
    health.set_not_ready("the store cannot be reached: connection refused")

    status, text = get(port, "/readyz")

    assert status == 503
    assert "the store cannot be reached" in text
    assert get(port, "/healthz")[0] == 200


def test_an_unknown_path_is_a_clear_404(served):
    _, port = served

    assert get(port, "/metricz") == (404, "not found: try /healthz, /readyz or /metrics\n")
