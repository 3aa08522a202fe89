"""POP3 and POP3S mailboxes (``protocol: pop`` / ``pops``) on stdlib ``poplib``.

A mail's ref is its UIDL; message numbers hold for one session only. POP has no flags and
no folders, so:
- handing a mail off deletes it: ``DELE``, committed by ``QUIT``. A session that ends
  without ``QUIT`` (a crash, a dropped connection) deletes nothing: the server removes
  mail only in its UPDATE state, which ``QUIT`` starts (RFC 1939 §6);
- what else must not be fetched again (kept by ``import_existing: none``, too big to
  download) is remembered in the store through ``SourceState``;
- there is no error folder: failed mail is kept in the dead-letter queue only.
"""

from __future__ import annotations

import contextlib
import logging
import poplib
import re
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from io import BufferedReader
from typing import TYPE_CHECKING, TypeVar

from contracts.settings import DEFAULT_PORTS, MailboxSettings
from services.poller.sources import net
from services.poller.sources.base import Cursor, Fetched, NotMarked, SourceState
from services.poller.sources.debug import ProtocolTrace, describe_mail
from services.poller.sources.needs import SourceNeeds
from services.runtime.clock import SystemClock
from services.runtime.errors import ConfigError, InfraError, MailroomError
from services.runtime.ports import Clock

log = logging.getLogger(__name__)

_BYTES_PER_MB = 1024 * 1024
# The end of a multi-line response: a line holding only "." (CRLF, or a lenient bare LF).
_END = re.compile(rb"\n\.\r?\n")
# Response codes (RFC 2449, 3206) that mean "try later", not "wrong password".
_TEMPORARY = (b"[SYS/TEMP]", b"[IN-USE]", b"[LOGIN-DELAY]")

T = TypeVar("T")


class PopClient(poplib.POP3):
    """``poplib.POP3`` on a socket from ``net.open_socket`` (direct or through a proxy).

    With ``context``, TLS starts at once (POP3S). ``trace`` gets commands and status lines
    (poplib's own debug prints to stdout and stays off). RETR reads in bulk, not by line.
    """

    if TYPE_CHECKING:  # poplib's own helpers, which its type stubs leave out
        file: BufferedReader

        def _shortcmd(self, line: str) -> bytes: ...
        def _putcmd(self, line: str) -> None: ...
        def _getline(self) -> tuple[bytes, int]: ...

    def __init__(
        self,
        endpoint: net.Endpoint,
        context: ssl.SSLContext | None = None,
        trace: ProtocolTrace | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._context = context
        self._trace = trace
        super().__init__(endpoint.host, endpoint.port, timeout=endpoint.timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = net.open_socket(self.endpoint)
        sock.settimeout(self.endpoint.timeout)  # every later command gets the same limit
        if self._context is None:
            return sock
        return net.wrap_tls(sock, self._context, self.endpoint)

    def start_tls(self, context: ssl.SSLContext) -> None:
        """Upgrade with STLS. Raises ``ConfigError`` when the server does not offer it."""
        if "STLS" not in self.capa():
            raise ConfigError(
                f"mailbox {self.endpoint.mailbox!r}: {self.endpoint.where} does not offer STLS, "
                "so the password would travel unencrypted: use protocol pops, or remove "
                "`starttls` if the network is trusted"
            )
        self._shortcmd("STLS")
        self.sock = net.wrap_tls(self.sock, context, self.endpoint)
        self.file = self.sock.makefile("rb")
        self._tls_established = True

    def retr_bytes(self, number: int) -> bytes:
        """The exact bytes of mail ``number``, each line with its CRLF."""
        self._putcmd(f"RETR {number}")
        self._getresp()
        return unstuff(self._read_multiline())

    def _read_multiline(self) -> bytes:
        """The body of a multi-line response, still dot-stuffed, consumed up to its end."""
        data = bytearray(b"\n")  # the status line's end: an empty body is just ".\r\n"
        while True:
            chunk = self.file.peek(1)  # whatever is buffered, or one read from the socket
            if not chunk:
                raise poplib.error_proto(b"-ERR EOF")
            start = max(len(data) - 3, 0)  # the end marker may straddle two chunks
            data += chunk
            end = _END.search(data, start)
            # Consume exactly up to the marker: the socket's buffer is shared with later replies.
            self.file.read(len(chunk) - (len(data) - end.end()) if end else len(chunk))
            if end:
                return bytes(data[1 : end.start() + 1])

    def _putline(self, line: bytes) -> None:
        if self._trace:
            self._trace.sent(line)
        super()._putline(line)  # type: ignore[misc]  # private in poplib, absent from its stubs

    def _getresp(self) -> bytes:
        resp, _ = self._getline()
        if self._trace:
            self._trace.received(resp)
        if not resp.startswith(b"+"):
            raise poplib.error_proto(resp)
        return resp

    def _getlongresp(self) -> tuple[bytes, list[bytes], int]:
        resp, lines, octets = super()._getlongresp()  # type: ignore[misc]  # as _putline
        if self._trace:
            self._trace.note(f"{len(lines)} lines, {octets} octets")
        return resp, lines, octets


@dataclass(frozen=True)
class _Refusal:
    """The server's ``-ERR`` answer to a command about one mail."""

    text: str


ClientFactory = Callable[[net.Endpoint, ssl.SSLContext | None, ProtocolTrace | None], PopClient]


class PopSource:
    """One POP3 mailbox; connects on first use and again after a ``QUIT``.

    Every method raises ``ConfigError`` for a setting to fix (host, port, certificate,
    password, proxy) and ``InfraError`` for a failure that may pass (timeout, dropped
    connection, a server error after login). After an error the session is dropped without
    ``QUIT``, so nothing is deleted; the next call connects afresh.

    ``import_existing`` on the first connection: ``all`` and ``unread`` take every mail
    present (POP has no read flag, so ``unread`` means ``all``); ``none`` remembers every mail
    present as taken ("baseline") and takes only mail that arrives later.
    """

    supports_error_folder = False

    def __init__(
        self,
        endpoint: net.Endpoint,
        *,
        username: str,
        password: str,
        state: SourceState,
        tls: ssl.SSLContext | None = None,
        starttls: bool = False,
        import_existing: str = "unread",
        max_mail_mb: float = 50,
        debug: bool = False,
        trace: ProtocolTrace | None = None,
        clock: Clock | None = None,
        client_factory: ClientFactory = PopClient,
    ) -> None:
        self.endpoint = endpoint
        self.mailbox = endpoint.mailbox
        self._username = username
        self._password = password
        self._state = state
        # STLS upgrades a plain connection; otherwise a context means TLS from the start.
        self._stls_context = (tls or ssl.create_default_context()) if starttls else None
        self._implicit_tls = None if starttls else tls
        self._import_existing = import_existing
        self._max_mail_mb = max_mail_mb
        self._trace = trace or (ProtocolTrace(endpoint.mailbox) if debug else None)
        self._clock = clock or SystemClock()
        self._client_factory = client_factory
        self._client: PopClient | None = None
        self._numbers: dict[str, int] | None = None  # UIDL -> message number, this session

    # -- the MailSource verbs ----------------------------------------------------------------

    def list_new(self, limit: int) -> list[str]:
        """UIDLs not taken yet, in server order (oldest first), at most ``limit``.

        On the first connection applies ``import_existing``. The store keeps only refs the
        server still lists: the others (deleted after hand-off, or by another client) are
        forgotten here, so a round reads the store once, whatever it handled before.
        """
        taken = self._state.taken_reasons()
        listed = self._delete_leftovers(list(self._listing()), taken)
        if self._state.cursor() is None:
            taken |= dict.fromkeys(self._first_connection(listed), "baseline")
        if gone := set(taken) - set(listed):
            self._state.forget(sorted(gone))
        return [ref for ref in listed if ref not in taken][:limit]

    def _delete_leftovers(self, listed: list[str], taken: dict[str, str]) -> list[str]:
        """Delete mail handed off in an earlier session that ended before QUIT committed its
        DELE (a crash); returns what is left listed. ``taken`` learns of the refusals."""
        leftover = [ref for ref in listed if taken.get(ref) == "handed_off"]
        if not leftover:
            return listed
        log.info("mailbox=%s deleting %s mails handed off earlier", self.mailbox, len(leftover))
        refused: dict[str, str] = {}
        try:
            self.mark_handed_off(leftover)
        except NotMarked as exc:  # asked once more, refused again: left on the server
            log.warning("mailbox=%s %s; left on the server", self.mailbox, exc)
            refused = exc.failures
            self._state.mark_taken([(ref, None) for ref in refused], "unmarked", replace=True)
            taken |= dict.fromkeys(refused, "unmarked")
        deleted = set(leftover) - set(refused)
        return [ref for ref in listed if ref not in deleted]

    def fetch_many(self, refs: Sequence[str]) -> Iterator[Fetched]:
        """Each mail's bytes (RETR); over ``max_mail_mb`` it is not downloaded, only
        described in ``Fetched.skipped``. Refs no longer on the server are left out."""
        numbers = self._listing()
        sizes = self._sizes()
        for ref in refs:
            if (number := numbers.get(ref)) is None:
                log.info("mailbox=%s mail %s left the server; skipped", self.mailbox, ref)
                continue
            if too_big := self._over_limit(sizes.get(number, 0)):
                yield Fetched(ref, None, skipped=too_big)
            else:
                yield self._download(ref, number)

    def _download(self, ref: str, number: int) -> Fetched:
        """The mail, or why the server would not send it (that mail's fault only)."""
        raw = self._refusable("RETR", lambda c: c.retr_bytes(number))
        if isinstance(raw, _Refusal):
            why = f"the server refused to send it: {raw.text}"
            return Fetched(ref, None, skipped=why, error_class="MailUnreadable")
        self._traced(raw)
        return Fetched(ref, raw)

    def fetch_raw(self, ref: str) -> bytes:
        """One mail's bytes. Raises ``InfraError`` when it is no longer on the server."""
        number = self._listing().get(ref)
        if number is None:
            raise InfraError(f"mailbox {self.mailbox!r}: mail {ref} is no longer on the server")
        return self._retr(number)

    def mark_handed_off(self, refs: Sequence[str]) -> None:
        """Delete the mails and QUIT, which commits the deletion; unknown refs are skipped.
        Raises ``InfraError`` when the server fails before acknowledging ``QUIT``, and
        ``NotMarked`` (after QUIT) naming the mails whose DELE the server refused."""
        if not refs:
            return
        numbers = self._listing()
        refused: dict[str, str] = {}
        for ref in refs:
            if ref in numbers and (why := self._dele(numbers[ref])) is not None:
                refused[ref] = f"the server refused to delete it: {why}"
        self._call("QUIT", lambda c: c.quit())
        self._forget_session()
        if refused:
            raise NotMarked(refused)

    def _dele(self, number: int) -> str | None:
        """DELE one mail; the server's refusal, or None."""
        done = self._refusable("DELE", lambda c: c.dele(number))
        return done.text if isinstance(done, _Refusal) else None

    def _refusable(self, command: str, action: Callable[[PopClient], T]) -> T | _Refusal:
        """``action`` on the session, or the server's ``-ERR`` answer to it. A refusal is
        about one mail, so the session goes on; anything else drops it, deleting nothing."""
        client = self._session()

        def attempt() -> T | _Refusal:
            try:
                return action(client)
            except poplib.error_proto as exc:
                if _is_dropped(exc):
                    raise
                return _Refusal(_response(exc).decode("utf-8", "replace"))

        return self._guarded(command, attempt)

    def move_to_error_folder(self, refs: Sequence[str]) -> None:
        """Always raises ``ConfigError``: POP has no folders."""
        raise self._no_folders()

    def move_to_inbox(self, refs: Sequence[str]) -> None:
        """Always raises ``ConfigError``: POP has no folders."""
        raise self._no_folders()

    def error_folder_refs(self) -> list[str]:
        """Always empty: POP has no error folder."""
        return []

    def error_folder_message_ids(self) -> dict[str, str | None]:
        """Always empty: POP has no error folder."""
        return {}

    def fetch_oldest_unmarked(self) -> bytes | None:
        """The first mail not taken, downloaded without DELE; writes nothing to the store."""
        taken = self._state.taken_refs()
        first = next((n for ref, n in self._listing().items() if ref not in taken), None)
        return None if first is None else self._retr(first)

    def close(self) -> None:
        """QUIT when connected (committing any DELE), then close; never raises."""
        if self._client is not None:
            with contextlib.suppress(Exception):  # the session is over either way
                self._client.quit()
        self._forget_session()

    # -- session -----------------------------------------------------------------------------

    def _session(self) -> PopClient:
        if self._client is None:
            self._client = self._guarded("the greeting", self._open_client)
            self._log_in(self._client)  # a failure drops the half-open session
        return self._client

    def _open_client(self) -> PopClient:
        return self._client_factory(self.endpoint, self._implicit_tls, self._trace)

    def _log_in(self, client: PopClient) -> None:
        if (context := self._stls_context) is not None:
            self._guarded("STLS", lambda: client.start_tls(context))
        self._guarded("USER", lambda: client.user(self._username))
        self._guarded("PASS", lambda: client.pass_(self._password))

    def _listing(self) -> dict[str, int]:
        """UIDL -> message number in server order, once per session."""
        if self._numbers is None:
            pairs = self._call("UIDL", lambda c: parse_pairs(c.uidl()[1]))
            self._numbers = {uidl: number for number, uidl in pairs}
        return self._numbers

    def _sizes(self) -> dict[int, int]:
        return self._call("LIST", lambda c: {n: int(v) for n, v in parse_pairs(c.list()[1])})

    def _retr(self, number: int) -> bytes:
        raw = self._call("RETR", lambda c: c.retr_bytes(number))
        self._traced(raw)
        return raw

    def _traced(self, raw: bytes) -> None:
        if self._trace:
            self._trace.literal(len(raw))
            self._trace.note(describe_mail(raw))

    def _first_connection(self, listed: list[str]) -> set[str]:
        """Apply ``import_existing`` and remember the first connection; returns refs taken."""
        baseline = listed if self._import_existing == "none" else []
        if baseline:
            self._state.mark_taken([(ref, None) for ref in baseline], "baseline")
        self._state.save_cursor(Cursor(validity="", first_connected_at=self._clock.now()))
        return set(baseline)

    def _forget_session(self) -> None:
        client, self._client, self._numbers = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):  # the socket may already be gone
                client.close()

    # -- errors ------------------------------------------------------------------------------

    def _call(self, command: str, action: Callable[[PopClient], T]) -> T:
        client = self._session()
        return self._guarded(command, lambda: action(client))

    def _guarded(self, command: str, action: Callable[[], T]) -> T:
        """Run one protocol step; any failure drops the session (no QUIT) and is explained."""
        try:
            return action()
        except Exception as exc:
            self._forget_session()
            if isinstance(exc, MailroomError):
                raise
            if command in ("USER", "PASS") and not isinstance(exc, poplib.error_proto | OSError):
                # Any other error may quote what was being sent: say only its kind.
                raise InfraError(
                    f"mailbox {self.mailbox!r}: {self.endpoint.where}: login failed "
                    f"({type(exc).__name__}); check `username` and `password`"
                ) from None
            raise self._explain(exc, command) from exc

    def _explain(self, exc: Exception, command: str) -> MailroomError:
        box, where = self.mailbox, self.endpoint.where
        if isinstance(exc, poplib.error_proto) and command in ("USER", "PASS"):
            return self._login_refused(_response(exc))
        if _is_dropped(exc):
            return InfraError(
                f"mailbox {box!r}: {where} dropped the connection during {command}; what was "
                "handed off stays handed off, the rest is fetched next round"
            )
        if isinstance(exc, poplib.error_proto | ValueError):
            return InfraError(
                f"mailbox {box!r}: {where} answered {command} with "
                f"{_response(exc).decode('utf-8', 'replace')!r}; will try again next round"
            )
        return net.explain(exc, self.endpoint, connecting=command == "the greeting")

    def _login_refused(self, resp: bytes) -> MailroomError:
        box, text = self.mailbox, resp.decode("utf-8", "replace")
        if any(code in resp.upper() for code in _TEMPORARY):
            return InfraError(f"mailbox {box!r}: the server cannot log in now ({text}); will retry")
        if b"PLAINTEXT" in resp.upper():
            return ConfigError(
                f"mailbox {box!r}: the server takes passwords only over TLS: "
                "use protocol pops, or set `starttls: true`"
            )
        return ConfigError(
            f"mailbox {box!r}: the server refused username {self._username!r} and its "
            "password: check `username` and `password`"
        )

    def _no_folders(self) -> ConfigError:
        return ConfigError(
            f"mailbox {self.mailbox!r}: POP has no folders, so mail cannot be moved to or from "
            "an error folder; failed mail is kept in the dead-letter queue only (`mailroom dlq`)"
        )

    def _over_limit(self, size: int) -> str | None:
        if size <= self._max_mail_mb * _BYTES_PER_MB:
            return None
        return (
            f"the mail is {size / _BYTES_PER_MB:.1f} MB, over this mailbox's limit of "
            f"{self._max_mail_mb:g} MB (max_mail_mb)"
        )


def _response(exc: Exception) -> bytes:
    arg = exc.args[0] if exc.args else b""
    return arg if isinstance(arg, bytes) else str(arg).encode()


def _is_dropped(exc: Exception) -> bool:
    """The server closed the connection; poplib reports that as ``error_proto(b"-ERR EOF")``."""
    eof = isinstance(exc, poplib.error_proto) and _response(exc) == b"-ERR EOF"
    return eof or isinstance(exc, ConnectionError | EOFError | ssl.SSLEOFError)


def unstuff(lines: bytes) -> bytes:
    """A multi-line response's text without POP's dot-stuffing (RFC 1939 §3): the server
    put an extra "." before every line that starts with "."."""
    if lines.startswith(b"."):
        lines = lines[1:]
    return lines.replace(b"\n.", b"\n")


def parse_pairs(lines: list[bytes]) -> list[tuple[int, str]]:
    """``(number, value)`` of UIDL or LIST lines such as ``b"1 000000016b09d393"``; raises
    ``poplib.error_proto`` on a malformed line."""
    pairs = []
    for line in lines:
        number, _, value = line.decode("ascii", "replace").strip().partition(" ")
        if not number.isdigit() or not value:
            raise poplib.error_proto(b"malformed listing line " + line[:80])
        pairs.append((int(number), value.strip()))
    return pairs


def open_pop(box: MailboxSettings, state: SourceState, needs: SourceNeeds) -> PopSource:
    """The ``SOURCES`` factory for ``pop`` and ``pops``; connects on first use."""
    port = box.port or DEFAULT_PORTS[box.protocol]
    endpoint = net.Endpoint(
        box.name, box.host or "", port, box.timeout_seconds, box.proxy, sockets=needs.sockets
    )
    wants_tls = box.protocol == "pops" or box.starttls
    return PopSource(
        endpoint,
        username=box.username or "",
        password=box.password or "",
        state=state,
        tls=net.tls_context(box.tls, mailbox=box.name) if wants_tls else None,
        starttls=box.starttls,
        import_existing=box.import_existing,
        max_mail_mb=box.max_mail_mb,
        debug=box.debug,
        trace=needs.trace,
        clock=needs.clock,
    )
