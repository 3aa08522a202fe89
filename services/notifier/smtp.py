"""Sending through the help desk's outgoing SMTP server (``security``: none, starttls, ssl).

Every failure leaves as one of our errors (see ``handler.Sender``): what may pass is an
``InfraError``, a setting to fix a ``ConfigError`` (both tried again later), a permanent
refusal of the mail (SMTP 5xx) a ``MailError``.
"""

from __future__ import annotations

import base64
import logging
import smtplib
import socket
import ssl
from typing import Any

from contracts.settings import OutgoingSettings
from services.notifier.message import OutgoingMail, compose
from services.runtime.errors import ConfigError, InfraError, MailError, MailroomError
from services.runtime.open_sockets import OpenSockets
from services.runtime.tls import tls_context

log = logging.getLogger(__name__)


class SmtpSender:
    """``sockets``: where each connection is kept for a stop to cut, so that a server that
    stopped answering holds a stopping notifier up no longer than its stop (the email is
    then tried again on the help desk's schedule)."""

    def __init__(
        self,
        outgoing: OutgoingSettings,
        *,
        timeout: float = 30,
        sockets: OpenSockets | None = None,
    ) -> None:
        self._cfg = outgoing
        self._timeout = timeout
        self._sockets = sockets or OpenSockets()
        self._where = f"SMTP server {outgoing.host}:{outgoing.port}"

    def send(self, mail: OutgoingMail) -> None:
        try:
            message = compose(mail, self._cfg.from_address)
        except (ValueError, TypeError) as exc:
            raise MailError(f"the notification cannot be written as a mail: {exc}") from exc
        try:
            with self._connect() as smtp:
                if self._cfg.username:
                    self._log_in(smtp, self._cfg.username, self._cfg.password or "")
                refused = smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise self._explain(exc) from exc
        if refused:
            log.warning("%s refused %s of %s recipients", self._where, len(refused), len(mail.to))

    def _log_in(self, smtp: smtplib.SMTP, username: str, password: str) -> None:
        if username.isascii() and password.isascii():
            smtp.login(username, password)
            return
        # smtplib sends credentials as ASCII only; SASL PLAIN carries UTF-8 (RFC 4616).
        smtp.ehlo_or_helo_if_needed()
        if "PLAIN" not in smtp.esmtp_features.get("auth", "").upper().split():
            raise ConfigError(
                f"{self._where} does not offer AUTH PLAIN, which a username or password with "
                "non-ASCII characters needs: use an ASCII password, or enable PLAIN"
            )
        token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
        code, reply = smtp.docmd("AUTH", f"PLAIN {token}")
        if code not in (235, 503):  # 503: already authenticated
            raise smtplib.SMTPAuthenticationError(code, reply)

    def _connect(self) -> smtplib.SMTP:
        cfg = self._cfg
        if self._sockets.is_cut:
            raise InfraError(f"{self._where}: not connecting, the notifier is stopping")
        if cfg.security == "ssl":
            context = tls_context(cfg.tls, who="outgoing mail")
            return _KeptSmtpSsl(
                self._sockets, cfg.host, cfg.port, timeout=self._timeout, context=context
            )
        smtp = _KeptSmtp(self._sockets, cfg.host, cfg.port, timeout=self._timeout)
        try:
            if cfg.security == "starttls":
                smtp.starttls(context=tls_context(cfg.tls, who="outgoing mail"))
                if smtp.sock is not None:  # the TLS socket that replaced the plain one
                    self._sockets.track(smtp.sock)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _explain(self, exc: BaseException) -> MailroomError:
        where = self._where
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return ConfigError(
                f"{where} refused the login ({_reply(exc)}): "
                "check outgoing.username and outgoing.password"
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return ConfigError(
                f"{where}: {exc}: check outgoing.security (the server may offer AUTH or "
                "STARTTLS only on another port or after STARTTLS)"
            )
        if isinstance(exc, ssl.SSLCertVerificationError):
            return ConfigError(
                f"{where}: its TLS certificate was refused ({exc.verify_message}): set "
                "outgoing.tls.ca_file to the CA that signed it, or outgoing.host to the name "
                "on the certificate"
            )
        if isinstance(exc, smtplib.SMTPSenderRefused) and exc.smtp_code == 530:
            return ConfigError(
                f"{where} requires a login ({_reply(exc)}): "
                "set outgoing.username and outgoing.password"
            )
        if isinstance(exc, smtplib.SMTPSenderRefused):
            fix = "check outgoing.from_address"
            return _by_code(exc.smtp_code, f"{where} refused the sender ({_reply(exc)})", fix)
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            # One temporary refusal among them is worth another try.
            code = min((c for c, _text in exc.recipients.values()), default=0)
            return _by_code(code, f"{where} refused every recipient")
        if isinstance(exc, smtplib.SMTPDataError):
            return _by_code(exc.smtp_code, f"{where} refused the mail ({_reply(exc)})")
        return InfraError(f"{where} did not take the mail: {exc or type(exc).__name__}")


class _KeptSmtp(smtplib.SMTP):
    """smtplib's client, its socket kept in ``sockets`` from the moment it connects (before
    the server's greeting, which a hung server never sends)."""

    def __init__(self, sockets: OpenSockets, *args: Any, **kwargs: Any) -> None:
        self._kept = sockets  # set first: the constructor connects
        super().__init__(*args, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        return self._kept.track(sock)


class _KeptSmtpSsl(smtplib.SMTP_SSL):
    """``_KeptSmtp`` over TLS from the start."""

    def __init__(self, sockets: OpenSockets, *args: Any, **kwargs: Any) -> None:
        self._kept = sockets
        super().__init__(*args, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        return self._kept.track(sock)


def _by_code(code: int, what: str, fix: str | None = None) -> MailroomError:
    """SMTP's rule: 4xx may pass (try again), 5xx will not: a setting to fix, or the mail."""
    if 400 <= code < 500:
        return InfraError(f"{what}; it may take it later")
    return ConfigError(f"{what}: {fix}") if fix else MailError(what)


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else ""
    return f"{exc.smtp_code} {text}".strip()
