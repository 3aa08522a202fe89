"""A TCP relay in front of a real server that misbehaves on cue: drops, garbles or holds back
a response; and a server that accepts connections and never answers.

Used to show what a mailbox round does when its server fails in the middle of a command, and
that a stopping worker does not wait for a server that hangs.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

from servers import free_port

#: Gets the bytes the server sent so far on this connection and the new chunk; returns the
#: chunk to pass on, or None to drop the connection there.
Fault = Callable[[int, bytes], bytes | None]


def passthrough(_sent: int, chunk: bytes) -> bytes | None:
    return chunk


class FaultyRelay:
    """Listens on a free loopback port and relays to ``target_port``; ``fault`` may be swapped."""

    def __init__(self, target_port: int, fault: Fault = passthrough) -> None:
        self.target_port = target_port
        self.fault = fault
        self.port = free_port()
        #: How many connections were relayed; ``cut_all`` drops the open ones.
        self.connections = 0
        self._open: set[socket.socket] = set()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.connections += 1
            self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        sent = 0
        try:
            while chunk := src.recv(65536):
                out = self.fault(sent, chunk) if from_server else chunk
                if out is None:
                    break
                dst.sendall(out)
                sent += len(chunk)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
            self._open.discard(s)

    def cut_all(self) -> None:
        """Drop every open connection, as a network failure would."""
        for s in list(self._open):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        self._server.close()


def drop_after(limit: int) -> Fault:
    """Cut every connection once the server has sent ``limit`` bytes on it."""
    return lambda sent, chunk: None if sent + len(chunk) > limit else chunk


def garble_first(marker: bytes, replacement: bytes) -> Fault:
    """Replace the first server response holding ``marker`` (once, across connections)."""
    done = threading.Event()

    def fault(_sent: int, chunk: bytes) -> bytes | None:
        if not done.is_set() and marker in chunk:
            done.set()
            return chunk.replace(marker, replacement, 1)
        return chunk

    return fault


class Stall:
    """A fault that holds the server's data back once ``limit`` bytes have gone through on a
    connection, until ``release()``: a server that stops answering in the middle of a
    response. ``stalled`` is set once it holds something back."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.stalled = threading.Event()
        self._released = threading.Event()

    def __call__(self, sent: int, chunk: bytes) -> bytes | None:
        if sent + len(chunk) > self.limit and not self._released.is_set():
            self.stalled.set()
            self._released.wait()
        return chunk

    def release(self) -> None:
        self._released.set()


class SilentServer:
    """Accepts connections on a free loopback port and never says a word: a mail server that
    hangs after the TCP handshake. ``accepted`` is set once a client has connected."""

    def __init__(self) -> None:
        self.port = free_port()
        self.accepted = threading.Event()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self._held.append(client)
            self.accepted.set()

    def close(self) -> None:
        """Stop listening and drop every connection; the port is free again."""
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self._server.close()
        for client in self._held:
            client.close()
