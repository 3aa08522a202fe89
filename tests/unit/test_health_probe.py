"""What ``mailroom health`` reads from a health endpoint, and what it says when none answers."""

from __future__ import annotations

import socket

from services.runtime.health_probe import probe, probe_address


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_alive_and_ready_are_ok_with_the_endpoints_words(served):
    health, port = served
    health.set_ready()

    assert probe("127.0.0.1", port, "/healthz") == (True, "alive")
    assert probe("127.0.0.1", port, "/readyz") == (True, "ready")


def test_not_ready_is_not_ok_and_says_why(served):
    health, port = served
    health.set_not_ready("the broker cannot be reached: connection refused")

    answer = probe("127.0.0.1", port, "/readyz")

    assert (answer.ok, answer.text) == (
        False,
        "not ready: the broker cannot be reached: connection refused",
    )


def test_nobody_listening_is_not_ok_and_names_the_address():
    port = unused_port()

    answer = probe("127.0.0.1", port, "/healthz", timeout_s=2)

    assert (answer.ok, answer.text) == (False, f"no answer on 127.0.0.1:{port}: connection refused")


def test_a_process_listening_on_every_address_is_asked_on_the_loopback():
    assert probe_address("0.0.0.0") == "127.0.0.1"
    assert probe_address("") == "127.0.0.1"
    assert probe_address("::") == "[::1]"
    assert probe_address("10.1.2.3") == "10.1.2.3"
