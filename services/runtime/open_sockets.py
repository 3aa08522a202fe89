"""Connections to outside servers that a stop cuts, so that nothing waits on them.

A mail server that accepts a connection and then stops answering holds a read for its whole
timeout (30 s by default), far past the moment a stopping worker must be gone. ``cut()``
shuts every tracked socket down instead: the blocked read returns at once, the protocol
library raises, and its caller takes it as a dropped connection (the mail in hand stays
unmarked and is taken again later). It is safe from a signal handler and from any thread.
"""

from __future__ import annotations

import contextlib
import socket
import weakref
from typing import TypeVar

S = TypeVar("S", bound=socket.socket)


class OpenSockets:
    """The sockets of one part of a process (the poller's rounds, the notifier's sends).

    No lock: ``cut`` may run in a signal handler on the thread that is in ``track``, so each
    step is a single operation on a set. Sockets are held weakly and forget themselves when
    they are gone.
    """

    def __init__(self) -> None:
        self._refs: set[weakref.ref[socket.socket]] = set()
        self._cut = False

    @property
    def is_cut(self) -> bool:
        """True once ``cut`` has run: a socket tracked from now on is cut at once."""
        return self._cut

    def track(self, sock: S) -> S:
        """Keep ``sock`` to be cut by ``cut``; returns it."""
        self._refs.add(weakref.ref(sock, self._refs.discard))
        if self._cut:
            shut(sock)
        return sock

    def cut(self) -> None:
        """Shut down every tracked socket, now and from now on."""
        self._cut = True
        for ref in self._snapshot():
            if (sock := ref()) is not None:
                shut(sock)

    def _snapshot(self) -> list[weakref.ref[socket.socket]]:
        # A socket collected while the set is copied changes its size: copy again.
        while True:
            with contextlib.suppress(RuntimeError):
                return list(self._refs)


def shut(sock: socket.socket) -> None:
    """Shut ``sock`` down for reading and writing; a socket already closed is left alone.

    The plain socket's method, also for a TLS socket: TLS's own would forget its state, which
    the thread reading it still uses.
    """
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
