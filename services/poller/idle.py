"""Push delivery (``idle: true``): a connection per mailbox waits in IMAP IDLE (RFC 2177).

The watcher only listens: when the server announces new mail (EXISTS or RECENT) it wakes
the mailbox, and the poller runs a normal round under the usual lease, which does the
fetching. Polling on the mailbox's interval goes on beside it, so a server without IDLE, or
a dropped IDLE connection, delays mail only to the next poll. A watcher's failures are
logged, never counted toward the connectivity alert: the rounds report the mailbox's health.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from imapclient import IMAPClient

from contracts.settings import MailboxSettings
from services.poller.sources.imap_session import ImapSession
from services.runtime.errors import InfraError
from services.runtime.open_sockets import OpenSockets

log = logging.getLogger(__name__)

#: IDLE is left and entered again this often: servers may end an IDLE after 30 minutes.
RENEW_EVERY = timedelta(minutes=29)
#: Waits before opening a dropped IDLE connection again: doubling, up to the last.
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 300.0
#: A check that returns this much before its time with nothing read found the socket
#: readable and empty: the connection may be gone, which leaving IDLE shows.
EARLY_S = 0.05

OpenSession = Callable[[MailboxSettings, OpenSockets], ImapSession]


class NoIdle(Exception):
    """The server does not offer IDLE."""


class IdleWatcher:
    """Waits in IDLE on ``box``'s folder on a thread of its own; ``wake()`` on new mail.

    ``stop_soon`` ends it at once (its connection is cut); safe in a signal handler.
    """

    def __init__(
        self,
        box: MailboxSettings,
        *,
        wake: Callable[[], object],
        open_session: OpenSession,
        renew_every: timedelta = RENEW_EVERY,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        self.box = box
        self._wake = wake
        self._open_session = open_session
        self._renew_s = renew_every.total_seconds()
        self._backoff_max_s = backoff_max_s
        self._stop = threading.Event()
        self._sockets = OpenSockets()
        self._thread = threading.Thread(target=self._run, name=f"idle-{box.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop_soon(self) -> None:
        self._stop.set()
        self._sockets.cut()

    def join(self, timeout: float) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the watcher's thread ----------------------------------------------------------------

    def _run(self) -> None:
        name = self.box.name
        delay = BACKOFF_FIRST_S
        reconnecting = False
        while not self._stop.is_set():
            session: ImapSession | None = None
            try:
                session = self._open_session(self.box, self._sockets)
                self._watch(session, wake_at_start=reconnecting)
            except NoIdle:
                log.warning(
                    "mailbox=%s %s does not offer IMAP IDLE: new mail is taken every %g "
                    "minutes (`fetch_every_minutes`) instead",
                    name,
                    session.endpoint.where if session else "the server",
                    self.box.fetch_every_minutes,
                )
                return
            except Exception as exc:  # noqa: BLE001 - whatever it was, polling carries on
                if self._stop.is_set():
                    return
                if isinstance(exc, _Entered):
                    delay = BACKOFF_FIRST_S  # it worked for a while: start the back-off over
                    exc = exc.cause
                log.warning(
                    "mailbox=%s IDLE connection lost (%s); mail is polled every %g minutes "
                    "meanwhile, IDLE tried again in %g s",
                    name,
                    _said(exc),
                    self.box.fetch_every_minutes,
                    delay,
                )
            finally:
                if session is not None:
                    session.close()
            reconnecting = True
            self._stop.wait(delay)
            delay = min(delay * 2, self._backoff_max_s)

    def _watch(self, session: ImapSession, *, wake_at_start: bool) -> None:
        """Watch until the connection fails (raised, as ``_Entered`` once IDLE was entered)."""
        if not session.has(b"IDLE"):
            raise NoIdle
        folder = self.box.folder
        # Read-only: the watcher must change nothing the rounds see (\Recent among it).
        session.run(f"EXAMINE {folder}", lambda c: c.select_folder(folder, readonly=True))
        session.run("IDLE", lambda c: c.idle())
        log.info("mailbox=%s waiting in IDLE on %s", self.box.name, folder)
        if wake_at_start:  # mail that came while the connection was down
            self._wake()
        try:
            while not self._stop.is_set():
                self._idle_until_renewal(session)
                if self._stop.is_set():
                    return
                # Mail that comes between DONE and IDLE is announced before the server's
                # "+ idling", out of the watcher's sight: a round after each renewal takes it.
                session.run("DONE", lambda c: c.idle_done())
                session.run("IDLE", lambda c: c.idle())
                self._wake()
        except Exception as exc:
            raise _Entered(exc) from exc

    def _idle_until_renewal(self, session: ImapSession) -> None:
        renew_at = time.monotonic() + self._renew_s
        while not self._stop.is_set() and (left := renew_at - time.monotonic()) > 0:
            started = time.monotonic()
            responses: list[Any] = session.run("IDLE", lambda c: _check(c, left))
            if self._stop.is_set():
                return
            if any(_is(r, b"BYE") for r in responses):
                raise InfraError(f"{session.endpoint.where} ended the IDLE session")
            if any(_is(r, b"EXISTS") or _is(r, b"RECENT") for r in responses):
                self._wake()
            elif not responses and time.monotonic() - started < left - EARLY_S:
                # Readable and empty: end IDLE, which raises when the connection is gone.
                _, more = session.run("DONE", lambda c: c.idle_done())
                session.run("IDLE", lambda c: c.idle())
                if any(_is(r, b"EXISTS") or _is(r, b"RECENT") for r in more):
                    self._wake()


class _Entered(Exception):
    """A failure after IDLE was entered once on the connection."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _check(client: IMAPClient, timeout: float) -> list[Any]:
    responses: list[Any] = client.idle_check(timeout)
    return responses


def _is(response: Any, word: bytes) -> bool:
    """``(3, b"EXISTS")`` is ``EXISTS``; ``(b"BYE", ...)`` is ``BYE``."""
    if not isinstance(response, tuple):
        return False
    return word in response[:2]


def _said(exc: BaseException) -> str:
    """A sentence for the log: Mailroom's own errors say what happened without secrets;
    of anything else only the kind is shown (it may quote what was sent)."""
    if isinstance(exc, InfraError) or type(exc).__module__.startswith("services."):
        return str(exc)
    return type(exc).__name__
