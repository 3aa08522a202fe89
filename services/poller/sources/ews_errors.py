"""What an exchangelib failure means for a mailbox: one sentence, and whether to wait.

exchangelib re-raises transport failures as its own exceptions (``TransportError``,
``ErrorTimeoutExpired``) with the original one as the context; the cause is read from there.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from exchangelib import errors as ews

from contracts.settings import MailboxSettings
from services.poller.sources.ews_protocol import HttpAnswer
from services.runtime.errors import ConfigError, InfraError, MailroomError

#: Throttling statuses: waited out when the server says for how long.
_BUSY_STATUSES = (429, 503)


@dataclass(frozen=True)
class Busy:
    """The server asked to slow down; ``retry_after`` in seconds when it said."""

    retry_after: float | None


def busy_of(exc: BaseException) -> Busy | None:
    """The throttling answer ``exc`` stands for, or None."""
    if isinstance(exc, ews.ErrorServerBusy):
        return Busy(exc.back_off)
    if isinstance(exc, HttpAnswer) and exc.status in _BUSY_STATUSES:
        if exc.status == 429 or exc.retry_after is not None:
            return Busy(exc.retry_after)
    return None


def is_refusal(exc: BaseException) -> bool:
    """The server refused the credentials (HTTP 401, or an account locked out)."""
    return isinstance(exc, ews.UnauthorizedError) or (
        isinstance(exc, HttpAnswer) and exc.status == 401
    )


def refused(box: MailboxSettings) -> ConfigError:
    name = box.name
    if box.auth == "oauth":
        return ConfigError(
            f"mailbox {name!r}: the server refused the OAuth access token for {box.username!r}: "
            f"re-authorize with `mailroom oauth authorize {name}`"
        )
    return ConfigError(
        f"mailbox {name!r}: the server refused username {box.username!r} and its password: "
        "check `username` and `password`"
    )


def explain(exc: BaseException, box: MailboxSettings, what: str) -> MailroomError:
    """One sentence naming the mailbox for a failure of ``what`` (e.g. "listing the inbox")."""
    if isinstance(exc, MailroomError):
        return exc
    name, url = box.name, box.connect_url
    if is_refusal(exc):
        return refused(box)
    if isinstance(exc, HttpAnswer):
        return _http_answer(exc, box, what)
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return _certificate(cause, box)
        if isinstance(cause, requests.exceptions.ProxyError):
            return ConfigError(
                f"mailbox {name!r}: cannot reach {url} through proxy {box.proxy}: check `proxy`"
            )
        if isinstance(cause, socket.gaierror):
            host = urlsplit(url or "").hostname
            return ConfigError(f"mailbox {name!r}: unknown host {host!r}: check `connect_url`")
        if isinstance(cause, ssl.SSLError):
            return ConfigError(
                f"mailbox {name!r}: TLS with {url} failed ({cause.reason or cause}): check that "
                "`connect_url` is an https address of the Exchange server"
            )
        if isinstance(cause, requests.exceptions.ChunkedEncodingError):
            return InfraError(
                f"mailbox {name!r}: the answer of {url} was cut short while {what}; "
                "will try again next round"
            )
        if isinstance(cause, requests.exceptions.Timeout | TimeoutError):
            return InfraError(
                f"mailbox {name!r}: {url} did not answer within {box.timeout_seconds:g} s "
                f"while {what}; will try again next round"
            )
        if isinstance(cause, ConnectionRefusedError):
            return InfraError(
                f"mailbox {name!r}: {url} refused the connection: the server is down, "
                "or check the port in `connect_url`"
            )
    if type(exc) in (ews.ErrorTimeoutExpired, ews.TransportError):  # raised for the network
        return InfraError(f"mailbox {name!r}: cannot reach {url} while {what}: {exc}")
    if isinstance(exc, ews.ErrorNonExistentMailbox | ews.ErrorAccessDenied):
        return ConfigError(
            f"mailbox {name!r}: the server will not open the mailbox of {box.username!r} "
            f"({type(exc).__name__}: {exc}): check `username` (its SMTP address)"
        )
    return InfraError(f"mailbox {name!r}: {what} failed: {type(exc).__name__}: {exc}")


def _http_answer(exc: HttpAnswer, box: MailboxSettings, what: str) -> MailroomError:
    name, url, status = box.name, box.connect_url, exc.status
    if status in _BUSY_STATUSES or status >= 500:
        return InfraError(
            f"mailbox {name!r}: {url} answered HTTP {status} while {what}; "
            "will try again next round"
        )
    if status == 403:
        return ConfigError(
            f"mailbox {name!r}: {url} refused access (HTTP 403): check that EWS is enabled "
            f"for {box.username!r} and that `connect_url` is right"
        )
    answer = "a web page, not EWS" if "html" in exc.content_type.lower() else f"HTTP {status}"
    return ConfigError(
        f"mailbox {name!r}: {url} answered with {answer}: check `connect_url` "
        "(e.g. https://mail.example.com/EWS/Exchange.asmx)"
    )


def _certificate(exc: ssl.SSLCertVerificationError, box: MailboxSettings) -> ConfigError:
    name, url = box.name, box.connect_url
    if exc.verify_code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
        return ConfigError(
            f"mailbox {name!r}: the TLS certificate of {url} is not valid for its host name: "
            "use the name on the certificate in `connect_url`"
        )
    return ConfigError(
        f"mailbox {name!r}: the TLS certificate of {url} was refused "
        f"({exc.verify_message}): set tls.ca_file to the CA that signed it "
        "(or, at your own risk, tls.verify: false)"
    )


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it came from, nearest first (with urllib3's ``reason`` links)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
        for arg in current.args:
            if isinstance(arg, BaseException):
                todo.append(arg)
