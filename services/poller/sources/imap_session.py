"""One IMAP session of a mailbox: connect, secure, log in, select; errors made sentences.

imapclient does the protocol. Two small seams plug Mailroom's own pieces into it: the socket
comes from ``net.open_socket`` (direct or through the mailbox's proxy, with TLS from
``net.tls_context``), and with ``debug: true`` every line sent and read passes through a
``ProtocolTrace``. Every library exception leaves ``ImapSession.run`` as a ``ConfigError``
or an ``InfraError`` (STYLE P8).
"""

from __future__ import annotations

import contextlib
import imaplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import LoginError, ProtocolError

from contracts.settings import MailboxSettings
from services.poller.sources import net
from services.poller.sources.base import Refused
from services.poller.sources.debug import ProtocolTrace
from services.poller.sources.tokens import TokenProvider
from services.runtime.errors import ConfigError, InfraError, MailroomError
from services.runtime.open_sockets import OpenSockets

T = TypeVar("T")

DEFAULT_PORTS = {"imap": 143, "imaps": 993}
SEEN = b"\\Seen"
DELETED = b"\\Deleted"


class _Imap4(imaplib.IMAP4):
    """imaplib on a socket from ``net.open_socket``; TLS from the start when ``tls`` is set."""

    def __init__(self, endpoint: net.Endpoint, tls: ssl.SSLContext | None) -> None:
        self._endpoint = endpoint
        self._tls = tls
        super().__init__(endpoint.host, endpoint.port, timeout=endpoint.timeout)

    def _create_socket(self, timeout: float | None = None) -> Any:
        sock = net.open_socket(self._endpoint)
        return sock if self._tls is None else net.wrap_tls(sock, self._tls, self._endpoint)


class _TracedImap4(_Imap4):
    """``_Imap4`` that shows every line to a ``ProtocolTrace`` (literal data only by size)."""

    def __init__(
        self, endpoint: net.Endpoint, tls: ssl.SSLContext | None, trace: ProtocolTrace
    ) -> None:
        self._trace = trace  # set first: the greeting is read inside IMAP4.__init__
        super().__init__(endpoint, tls)

    def send(self, data: Any) -> None:
        self._trace.sent(bytes(data))
        super().send(data)

    def readline(self) -> bytes:
        line = super().readline()
        self._trace.received(line)
        return line

    def read(self, size: int) -> bytes:
        data = super().read(size)
        self._trace.literal(len(data))
        return data


class _Client(IMAPClient):  # type: ignore[misc]  # imapclient ships no type information
    """IMAPClient whose imaplib object comes from ``make_imap4`` (our sockets, our trace)."""

    def __init__(
        self, make_imap4: Callable[[], imaplib.IMAP4], endpoint: net.Endpoint, *, tls: bool
    ) -> None:
        self._make_imap4 = make_imap4
        super().__init__(endpoint.host, endpoint.port, ssl=tls, timeout=endpoint.timeout)

    def _create_IMAP4(self) -> imaplib.IMAP4:  # noqa: N802 (imapclient's hook)
        return self._make_imap4()


@dataclass(frozen=True)
class Selected:
    """What a SELECT said of its folder beyond UIDVALIDITY (None where the server said
    nothing); true when said, so only until the next command that shows new mail."""

    uidnext: int | None
    highestmodseq: int | None


class ImapSession:
    """A logged-in IMAP connection for one mailbox, opened on first use.

    After a dropped connection or a timeout the connection is discarded; the next ``run``
    connects again.
    """

    def __init__(
        self,
        box: MailboxSettings,
        tokens: TokenProvider | None = None,
        *,
        sockets: OpenSockets | None = None,
        trace: ProtocolTrace | None = None,
    ) -> None:
        """``sockets``: where the connection is kept for a stop to cut; ``trace``: the
        ``debug`` trace (made from ``box.debug`` when not given)."""
        self.box = box
        self.endpoint = net.Endpoint(
            mailbox=box.name,
            host=box.host or "",
            port=box.port or DEFAULT_PORTS.get(box.protocol, 143),
            timeout=box.timeout_seconds,
            proxy=box.proxy,
            sockets=sockets,
        )
        self.trace = trace or (ProtocolTrace(box.name) if box.debug else None)
        self._tokens = tokens
        self._client: IMAPClient | None = None
        self._selected: tuple[str, int] | None = None
        #: UIDNEXT and HIGHESTMODSEQ of the SELECT just made; None once a NOOP followed it.
        self.fresh: Selected | None = None
        self._capabilities: set[bytes] = set()

    # -- running commands ------------------------------------------------------------------

    def run(self, doing: str, action: Callable[[IMAPClient], T]) -> T:
        """``action(client)`` on the logged-in client, ``doing`` naming it in error sentences.

        Raises:
            ConfigError: a setting is wrong (host, port, certificate, credentials, folder).
            InfraError: the server failed, refused the command, timed out or hung up.
        """
        client = self._client or self._open()
        try:
            return action(client)
        except MailroomError:
            raise
        except Exception as exc:
            raise self._failure(exc, doing) from exc

    def has(self, capability: bytes) -> bool:
        """Whether the server announced ``capability`` after login."""
        if self._client is None:
            self._open()
        return capability in self._capabilities

    def select(self, folder: str, *, missing_ok: bool = False, refresh: bool = False) -> int | None:
        """Select ``folder`` (read-write) and return its UIDVALIDITY.

        When ``folder`` is selected already, nothing is sent, or with ``refresh`` a NOOP: a
        server may show mail that arrived meanwhile only after the next command.
        Raises ``ConfigError`` naming ``folder`` when the server will not open it, unless
        ``missing_ok``: then returns None.
        """
        if self._selected and self._selected[0] == folder and self._client is not None:
            if refresh:
                self.fresh = None
                self.run("NOOP", lambda c: c.noop())
            return self._selected[1]
        self.fresh = None
        info = self.run(f"SELECT {folder}", lambda c: _select(c, folder))
        if isinstance(info, str):
            if missing_ok:
                return None
            raise ConfigError(
                f"mailbox {self.box.name!r}: the server will not open folder {folder!r} "
                f"({info}): fix `folder` (INBOX is the usual one)"
            )
        self._selected = (folder, int(info[b"UIDVALIDITY"]))
        self.fresh = Selected(_number(info, b"UIDNEXT"), _number(info, b"HIGHESTMODSEQ"))
        return self._selected[1]

    def close(self) -> None:
        """Log out; never raises (the connection may already be gone)."""
        client, self._client, self._selected, self.fresh = self._client, None, None, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # a session that cannot say goodbye is closed all the same
            with contextlib.suppress(Exception):
                client.shutdown()

    # -- connecting ------------------------------------------------------------------------

    def _open(self) -> IMAPClient:
        client = self._connect()
        try:
            self._secure_and_log_in(client)
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        self._client = client
        return client

    def _secure_and_log_in(self, client: IMAPClient) -> None:
        try:
            if self.box.starttls:
                self._starttls(client)
            self._log_in(client)
            self._capabilities = set(client.capabilities())
            self._enable_condstore(client)
        except MailroomError:
            raise
        except (imaplib.IMAP4.error, ProtocolError, OSError, EOFError) as exc:
            raise self._failure(exc, "login") from exc
        except Exception as exc:
            # Any other error may quote what was being sent: the password. Say only its kind.
            raise InfraError(
                f"mailbox {self.box.name!r}: {self.endpoint.where}: login failed "
                f"({type(exc).__name__}); check `username` and `password`"
            ) from None

    def _enable_condstore(self, client: IMAPClient) -> None:
        """Ask for HIGHESTMODSEQ in SELECT answers (RFC 7162) where offered; optional."""
        if {b"CONDSTORE", b"ENABLE"} <= self._capabilities:
            with contextlib.suppress(imaplib.IMAP4.error):  # a NO: polling works without
                client.enable("CONDSTORE")

    def _connect(self) -> IMAPClient:
        tls = self._tls_context() if self.box.protocol == "imaps" else None
        if self.trace:
            self.trace.note(f"connecting to {self.endpoint.where} ({self.box.protocol})")
        try:
            client = _Client(lambda: self._imap4(tls), self.endpoint, tls=tls is not None)
        except MailroomError:
            raise
        except Exception as exc:
            raise self._failure(exc, "the greeting") from exc
        # imapclient turns imaplib's debug to 5, which formats every line even with logging
        # off (5-7x slower); the trace, when on, sees the raw lines instead.
        client._imap.debug = 0
        client.normalise_times = False  # keep INTERNALDATE's zone: it is compared with UTC
        return client

    def _imap4(self, tls: ssl.SSLContext | None) -> imaplib.IMAP4:
        if self.trace:
            return _TracedImap4(self.endpoint, tls, self.trace)
        return _Imap4(self.endpoint, tls)

    def _tls_context(self) -> ssl.SSLContext:
        # Built per connection, so `tls.verify: false` warns at every connection.
        return net.tls_context(self.box.tls, mailbox=self.box.name)

    def _starttls(self, client: IMAPClient) -> None:
        if not client.has_capability("STARTTLS"):
            raise ConfigError(
                f"mailbox {self.box.name!r}: {self.endpoint.where} does not offer STARTTLS, "
                "so Mailroom will not send the password unencrypted: use `protocol: imaps`, "
                "or remove `starttls`"
            )
        try:
            client.starttls(self._tls_context())
        except (OSError, ssl.SSLError) as exc:
            raise net.explain(exc, self.endpoint) from exc
        self.endpoint.track(client._imap.sock)  # the TLS socket that replaced the plain one
        if self.trace:
            self.trace.note("TLS started (STARTTLS)")

    def _log_in(self, client: IMAPClient) -> None:
        if self.box.auth == "oauth":
            self._log_in_oauth(client)
            return
        if client.has_capability("LOGINDISABLED"):
            raise ConfigError(
                f"mailbox {self.box.name!r}: {self.endpoint.where} does not allow logging in "
                "without TLS: set `starttls: true`, or use `protocol: imaps`"
            )
        username, password = self.box.username or "", self.box.password or ""
        try:
            if username.isascii() and password.isascii():
                client.login(username, password)
            else:
                self._log_in_utf8(client, username, password)
        except LoginError as exc:
            raise self._refused(exc, f"username {username!r} and its password") from exc

    def _log_in_utf8(self, client: IMAPClient, username: str, password: str) -> None:
        """IMAP LOGIN takes ASCII only; SASL PLAIN carries UTF-8 (RFC 4616)."""
        if not client.has_capability("AUTH=PLAIN"):
            raise ConfigError(
                f"mailbox {self.box.name!r}: the username or password holds non-ASCII "
                f"characters, which need AUTHENTICATE PLAIN, and {self.endpoint.where} does "
                "not offer it: use an ASCII password, or enable PLAIN on the server"
            )
        client.plain_login(username, password)

    def _log_in_oauth(self, client: IMAPClient) -> None:
        if self._tokens is None:
            raise oauth_not_set_up(self.box.name)
        token = self._tokens.access_token()
        what = f"the OAuth access token for {self.box.username!r}"
        try:
            client.oauth2_login(self.box.username or "", token)
            return
        except LoginError as exc:
            refused = self._refused(exc, what)
            if not isinstance(refused, ConfigError):
                raise refused from exc
        # Refused before it expired (revoked, clocks apart): one fresh token, on the same
        # connection, which stays unauthenticated after a failed AUTHENTICATE.
        fresh = self._tokens.refreshed_token()
        if fresh == token:
            raise refused
        try:
            client.oauth2_login(self.box.username or "", fresh)
        except LoginError as exc:
            raise self._refused(exc, what) from exc

    def _refused(self, exc: LoginError, what: str) -> MailroomError:
        # imapclient wraps every failure during login in LoginError, a dropped connection too.
        if isinstance(exc.__context__, imaplib.IMAP4.abort | OSError):
            return self._failure(exc.__context__, "login")
        if self.box.auth == "oauth":
            fix = f"re-authorize with `mailroom oauth authorize {self.box.name}`"
        else:
            fix = "check `username` and `password`"
        return ConfigError(f"mailbox {self.box.name!r}: the server refused {what}: {fix}")

    # -- errors ----------------------------------------------------------------------------

    def _failure(self, exc: BaseException, doing: str) -> MailroomError:
        """One sentence for a library exception; a broken connection is dropped first.

        The TCP connect itself is explained by ``net.open_socket``; anything later that
        times out means a server that connected and then stopped answering.
        """
        where = f"mailbox {self.box.name!r}: {self.endpoint.where}"
        if isinstance(exc, imaplib.IMAP4.abort | ProtocolError):
            self._discard()
            return InfraError(
                f"{where} dropped the connection during {doing} ({exc}); what was handed off "
                "stays handed off, the rest is tried again next round"
            )
        if isinstance(exc, imaplib.IMAP4.error):
            return Refused(f"{where} refused {doing}: {exc}")
        if isinstance(exc, OSError | EOFError):
            self._discard()
        return net.explain(exc, self.endpoint)

    def _discard(self) -> None:
        client, self._client, self._selected, self.fresh = self._client, None, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()


def oauth_not_set_up(mailbox: str) -> ConfigError:
    return ConfigError(
        f"mailbox {mailbox!r}: OAuth is not set up for this mailbox: "
        f"run `mailroom oauth authorize {mailbox}`"
    )


def _number(info: dict[bytes, Any], key: bytes) -> int | None:
    value = info.get(key)  # imapclient gives these as int
    return value if isinstance(value, int) else None


def _select(client: IMAPClient, folder: str) -> dict[bytes, Any] | str:
    """The SELECT response, or the server's reason when it says NO (no such folder, no access)."""
    try:
        selected: dict[bytes, Any] = client.select_folder(folder)
        return selected
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:
        return str(exc).removeprefix("select failed: ")
