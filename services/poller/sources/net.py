"""Sockets for mail protocols: direct or through a proxy, TLS contexts, and errors explained.

Every network failure leaves here as one sentence that says what to fix: ``ConfigError``
when a setting is wrong (host, port, certificate, proxy), ``InfraError`` when it may pass
(timeouts, a server that drops the connection).
"""

from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import dataclass, field
from typing import TypeVar

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError
from python_socks.sync import Proxy

from contracts.settings import TlsSettings
from services.runtime.errors import ConfigError, InfraError, MailroomError
from services.runtime.open_sockets import OpenSockets
from services.runtime.tls import tls_context as shared_tls_context

log = logging.getLogger(__name__)

S = TypeVar("S", bound=socket.socket)

# OpenSSL verify codes: the certificate's issuer is unknown or it signed itself.
_UNTRUSTED = {18, 19, 20, 21}
# ... or it names another host (62) or IP address (64).
_NAME_MISMATCH = {62, 64}


@dataclass(frozen=True)
class Endpoint:
    """Where a mailbox's server is, and how to reach it."""

    mailbox: str
    host: str
    port: int
    timeout: float
    proxy: str | None = None
    #: Where the connection's sockets are kept for a stop to cut (the poller's rounds).
    sockets: OpenSockets | None = field(default=None, compare=False, repr=False)

    @property
    def where(self) -> str:
        via = f" through proxy {self.proxy}" if self.proxy else ""
        return f"{self.host}:{self.port}{via}"

    def track(self, sock: S) -> S:
        """``sock``, kept to be cut when the process stops (when ``sockets`` is set)."""
        return self.sockets.track(sock) if self.sockets is not None else sock


def tls_context(tls: TlsSettings, *, mailbox: str) -> ssl.SSLContext:
    return shared_tls_context(tls, who=f"mailbox {mailbox!r}")


def open_socket(endpoint: Endpoint) -> socket.socket:
    """A connected TCP socket, through the proxy when one is set. Errors are explained."""
    try:
        if endpoint.proxy:
            proxy = Proxy.from_url(endpoint.proxy)
            sock = proxy.connect(endpoint.host, endpoint.port, timeout=endpoint.timeout)
        else:
            address = (endpoint.host, endpoint.port)
            sock = socket.create_connection(address, timeout=endpoint.timeout)
    except Exception as exc:
        raise explain(exc, endpoint, connecting=True) from exc
    return endpoint.track(sock)


def wrap_tls(sock: socket.socket, context: ssl.SSLContext, endpoint: Endpoint) -> ssl.SSLSocket:
    try:
        # Kept before the handshake, which a server that stopped answering would hold up.
        tls = endpoint.track(
            context.wrap_socket(sock, server_hostname=endpoint.host, do_handshake_on_connect=False)
        )
    except Exception as exc:
        sock.close()
        raise explain(exc, endpoint, connecting=True) from exc
    try:
        tls.do_handshake()
    except Exception as exc:
        tls.close()
        raise explain(exc, endpoint, connecting=True) from exc
    return tls


def explain(exc: BaseException, endpoint: Endpoint, *, connecting: bool = False) -> MailroomError:
    """One sentence for a network failure: what happened and what to fix."""
    if isinstance(exc, MailroomError):
        return exc
    box, where = endpoint.mailbox, endpoint.where
    if endpoint.sockets is not None and endpoint.sockets.is_cut:  # whatever the library saw
        return InfraError(f"mailbox {box!r}: connection to {where} cut: Mailroom is stopping")
    if isinstance(exc, ProxyTimeoutError | ProxyConnectionError | ProxyError):
        return _proxy_error(exc, endpoint)
    if isinstance(exc, socket.gaierror):
        return ConfigError(f"mailbox {box!r}: unknown host {endpoint.host!r}: check `host`")
    if isinstance(exc, ConnectionRefusedError):
        return ConfigError(
            f"mailbox {box!r}: {where} refused the connection: check `port` "
            "and that the mail server is running"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _certificate_error(exc, endpoint)
    if isinstance(exc, ssl.SSLError):
        return ConfigError(
            f"mailbox {box!r}: TLS with {where} failed ({exc.reason or exc}): check that "
            "`protocol` and `port` match (imaps/pops ports speak TLS at once, imap/pop do not)"
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        if connecting:
            return InfraError(
                f"mailbox {box!r}: no answer from {where} within {endpoint.timeout:g} s: the port "
                "may be filtered by a firewall, or the server is down"
            )
        return InfraError(
            f"mailbox {box!r}: {where} stopped answering for {endpoint.timeout:g} s; "
            "will try again next round"
        )
    if isinstance(exc, OSError | EOFError):
        return InfraError(
            f"mailbox {box!r}: connection to {where} failed: {exc or type(exc).__name__}"
        )
    return InfraError(f"mailbox {box!r}: {where}: {type(exc).__name__}: {exc}")


def _certificate_error(exc: ssl.SSLCertVerificationError, endpoint: Endpoint) -> ConfigError:
    box, where = endpoint.mailbox, endpoint.where
    if exc.verify_code in _NAME_MISMATCH:
        return ConfigError(
            f"mailbox {box!r}: the TLS certificate of {where} is not valid for the name "
            f"{endpoint.host!r}: set `host` to the name on the certificate"
        )
    if exc.verify_code in _UNTRUSTED:
        return ConfigError(
            f"mailbox {box!r}: the TLS certificate of {where} is self-signed or from an "
            "unknown authority: set tls.ca_file to the CA that signed it "
            "(or, at your own risk, tls.verify: false)"
        )
    return ConfigError(
        f"mailbox {box!r}: the TLS certificate of {where} was refused: {exc.verify_message}"
    )


def _proxy_error(exc: BaseException, endpoint: Endpoint) -> MailroomError:
    box = endpoint.mailbox
    if isinstance(exc, ProxyConnectionError):
        return ConfigError(
            f"mailbox {box!r}: cannot reach proxy {endpoint.proxy}: check `proxy` ({exc})"
        )
    if isinstance(exc, ProxyTimeoutError):
        return InfraError(f"mailbox {box!r}: proxy {endpoint.proxy} did not answer in time")
    return ConfigError(
        f"mailbox {box!r}: proxy {endpoint.proxy} would not connect to "
        f"{endpoint.host}:{endpoint.port}: {exc}; check `proxy` and that it allows this port"
    )
