"""A stop cuts connections to a server that stopped answering: a read blocked on it, in any
thread, returns at once instead of after its timeout."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from faults import SilentServer

from services.poller.sources import net
from services.runtime.errors import InfraError
from services.runtime.open_sockets import OpenSockets

TIMEOUT_S = 30.0


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def endpoint(server: SilentServer, sockets: OpenSockets) -> net.Endpoint:
    return net.Endpoint("hung", "127.0.0.1", server.port, TIMEOUT_S, sockets=sockets)


def blocked_in_a_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """``work`` running in a thread of its own; what it returned or raised lands in the list."""
    ended: list[object] = []

    def run() -> None:
        try:
            ended.append(work())
        except Exception as exc:  # noqa: BLE001 - the test looks at what it was
            ended.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.5)  # well into the wait
    assert thread.is_alive() and not ended
    return thread, ended


def test_a_cut_ends_a_read_blocked_in_another_thread(silent: SilentServer) -> None:
    sockets = OpenSockets()
    sock = net.open_socket(endpoint(silent, sockets))
    thread, ended = blocked_in_a_thread(lambda: sock.recv(1024))

    sockets.cut()
    thread.join(timeout=5)

    assert ended == [b""], "the read ended as a connection closed by the server"
    sock.close()


def test_a_cut_ends_a_tls_handshake_with_a_server_that_never_answers(
    silent: SilentServer,
) -> None:
    sockets = OpenSockets()
    where = endpoint(silent, sockets)
    sock = net.open_socket(where)
    context = ssl.create_default_context()
    thread, ended = blocked_in_a_thread(lambda: net.wrap_tls(sock, context, where))

    sockets.cut()
    thread.join(timeout=5)

    [failure] = ended
    assert isinstance(failure, InfraError), failure
    assert "127.0.0.1" in str(failure) and "stopping" in str(failure)


def test_a_connection_made_after_the_cut_is_cut_at_once(silent: SilentServer) -> None:
    sockets = OpenSockets()
    sockets.cut()

    sock = net.open_socket(endpoint(silent, sockets))

    assert sockets.is_cut
    assert sock.recv(1024) == b""
    sock.close()
