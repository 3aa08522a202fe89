"""Real SMTP servers (aiosmtpd) on loopback: plain, STARTTLS or TLS, with or without AUTH.

Example::

    server = SmtpServer(port, tls_context=certs.server_context(), login=("bot", "s3cret"))
    server.start()
    ...
    server.stop()          # the port is closed until start() opens it again
    [mail] = server.collector.mails()
"""

from __future__ import annotations

import email
import ssl
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Collector:
    """An aiosmtpd handler that keeps every mail it accepts."""

    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd hook)
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def mails(self) -> list[EmailMessage]:
        return [email.message_from_bytes(e.content, policy=default_policy) for e in self.envelopes]


class RefusingRecipients(Collector):
    """Refuses every recipient with ``reply`` (``"550 5.1.1 no such user"``, ``"450 busy"``)."""

    def __init__(self, reply: str) -> None:
        super().__init__()
        self.reply = reply

    async def handle_RCPT(self, server, session, envelope, address, options) -> str:  # noqa: N802
        return self.reply


class SmtpServer:
    """One SMTP server on 127.0.0.1:``port`` that can be stopped and started again.

    ``tls_context``: offers STARTTLS (required when ``login`` is set); ``ssl_context``: speaks
    TLS at once (SMTPS); ``login``: the only user and password AUTH accepts, and AUTH is then
    required; ``login_without_tls``: AUTH is offered on a plain connection too.
    """

    def __init__(
        self,
        port: int,
        *,
        collector: Collector | None = None,
        tls_context: ssl.SSLContext | None = None,
        ssl_context: ssl.SSLContext | None = None,
        login: tuple[str, str] | None = None,
        login_without_tls: bool = False,
    ) -> None:
        self.port = port
        self.collector = collector or Collector()
        self._options: dict[str, Any] = {"ssl_context": ssl_context, "tls_context": tls_context}
        if login:
            self._options |= {
                "authenticator": _accepting(*login),
                "auth_required": True,
                "auth_require_tls": not login_without_tls,
            }
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(
            self.collector, hostname="127.0.0.1", port=self.port, **self._options
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def _accepting(user: str, password: str):  # type: ignore[no-untyped-def]
    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            user.encode(),
            password.encode(),
        )
        # handled=False: the server answers a refusal with 535 itself.
        return AuthResult(success=ok, handled=False)

    return authenticator
