"""Microsoft Graph failures as one sentence each: what happened and which setting to fix.

``ConfigError`` when a setting is wrong (``graph_endpoint``, ``username``, ``tls.ca_file``,
``proxy``, the app's permissions), ``InfraError`` when it may pass (timeouts, 5xx, a page
link that leads nowhere), ``GraphRefused`` when Graph refused one request (a mail that is
gone, a folder that exists already): the caller decides what that means.
"""

from __future__ import annotations

import ssl
from typing import Any

import requests

from contracts.settings import MailboxSettings
from services.poller.sources.base import Refused
from services.runtime.errors import ConfigError, InfraError, MailroomError

DEFAULT_ENDPOINT = "https://graph.microsoft.com"

#: Graph's 404 codes for a mailbox it does not know (not for a mail or a folder).
_UNKNOWN_MAILBOX = {
    "ErrorInvalidUser",
    "MailboxNotEnabledForRESTAPI",
    "MailboxNotSupportedForRESTAPI",
    "Request_ResourceNotFound",
    "ResourceNotFound",
}


class GraphRefused(Refused):
    """Graph answered one request with an error (``{"error": {"code", "message"}}``)."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def endpoint_of(box: MailboxSettings) -> str:
    """The base URL, as configured (national clouds, or a local server in tests)."""
    return (box.graph_endpoint or DEFAULT_ENDPOINT).rstrip("/")


def graph_error(response: requests.Response) -> tuple[str, str] | None:
    """``(code, message)`` of Graph's error body; None when the body is not one."""
    try:
        body: Any = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    return str(error.get("code") or "UnknownError"), str(error.get("message") or "")


def refused(box: MailboxSettings, response: requests.Response, what: str) -> MailroomError:
    """The error for a final answer that is not a success (401 and throttling are handled
    before this: they are retried)."""
    status, name, endpoint = response.status_code, repr(box.name), endpoint_of(box)
    error = graph_error(response)
    if error is None:
        return not_graph(box, response, what)
    code, message = error
    detail = f"{code}: {message}" if message else code
    if status == 404 and code in _UNKNOWN_MAILBOX:
        return ConfigError(
            f"mailbox {name}: Microsoft Graph at {endpoint} knows no mailbox "
            f"{box.username!r} ({detail}): check `username` (the mailbox's address) "
            "and `graph_endpoint`"
        )
    if status == 403:
        return ConfigError(
            f"mailbox {name}: Microsoft Graph refused access to mailbox {box.username!r} "
            f"({detail}): grant the app the Mail.ReadWrite permission, then re-authorize "
            f"with `mailroom oauth authorize {box.name}`"
        )
    if status >= 500:
        return InfraError(f"mailbox {name}: Microsoft Graph failed to {what} ({status} {detail})")
    return GraphRefused(f"mailbox {name}: could not {what}: {status} {detail}", status, code)


def not_graph(box: MailboxSettings, response: requests.Response, what: str) -> MailroomError:
    """An answer that is not Graph's JSON: an HTML page (a portal, a web server) or text."""
    status, endpoint = response.status_code, endpoint_of(box)
    kind = response.headers.get("Content-Type", "").split(";")[0].strip() or "no content type"
    seen = f"answered {status} with {kind} instead of Microsoft Graph's JSON"
    if status >= 500:
        return InfraError(f"mailbox {box.name!r}: {endpoint} {seen} when asked to {what}")
    return ConfigError(
        f"mailbox {box.name!r}: {endpoint} {seen} when asked to {what}: check `graph_endpoint` "
        "(e.g. https://graph.microsoft.com) and `proxy`"
    )


def unauthorized(box: MailboxSettings) -> ConfigError:
    return ConfigError(
        f"mailbox {box.name!r}: Microsoft Graph refused the access token twice "
        f"(InvalidAuthenticationToken): re-authorize with `mailroom oauth authorize {box.name}`"
    )


def explain(box: MailboxSettings, exc: requests.RequestException, what: str) -> MailroomError:
    """One sentence for a failure of ``requests`` itself (no answer, or a broken one)."""
    name, endpoint = repr(box.name), endpoint_of(box)
    if isinstance(exc, requests.exceptions.SSLError):
        return _tls_error(box, exc)
    if isinstance(exc, requests.exceptions.ProxyError):
        return ConfigError(f"mailbox {name}: proxy {box.proxy} failed: check `proxy` ({exc})")
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return ConfigError(
            f"mailbox {name}: `graph_endpoint` {endpoint!r} is not a URL "
            "(e.g. https://graph.microsoft.com)"
        )
    if isinstance(exc, requests.exceptions.InvalidSchema):
        return ConfigError(
            f"mailbox {name}: `graph_endpoint` {endpoint!r} must start with https://"
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return InfraError(
            f"mailbox {name}: {endpoint} did not answer within {box.timeout_seconds:g} s "
            f"when asked to {what}; will try again next round"
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        return InfraError(f"mailbox {name}: cannot reach {endpoint} to {what}: {_reason(exc)}")
    return InfraError(f"mailbox {name}: {endpoint}: could not {what}: {_reason(exc)}")


def _tls_error(box: MailboxSettings, exc: requests.exceptions.SSLError) -> ConfigError:
    endpoint = endpoint_of(box)
    cause = _cause(exc, ssl.SSLCertVerificationError)
    if cause is not None and "hostname" in str(cause.verify_message).lower():
        fix = "check `graph_endpoint`: the certificate names another host"
    elif cause is not None:
        fix = (
            "set tls.ca_file to the CA that signed it (or, at your own risk, tls.verify: false)"
            if box.tls.ca_file is None
            else f"tls.ca_file ({box.tls.ca_file}) does not hold the CA that signed it"
        )
    else:
        fix = "check `graph_endpoint` (https://) and tls.ca_file"
    why = cause.verify_message if cause is not None else _reason(exc)
    return ConfigError(
        f"mailbox {box.name!r}: the TLS certificate of {endpoint} was refused ({why}): {fix}"
    )


def _cause(exc: BaseException, kind: type[ssl.SSLCertVerificationError]) -> Any:
    """The first ``kind`` among the exceptions ``exc`` wraps (urllib3 nests them in args)."""
    todo, seen = [exc], set()
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        todo += [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
    return None


def _reason(exc: BaseException) -> str:
    # urllib3 nests the real reason; the innermost exception says it plainly.
    inner: BaseException = exc
    for _ in range(10):  # a bound, in case a library's exceptions wrap each other
        nested = next((a for a in getattr(inner, "args", ()) if isinstance(a, BaseException)), None)
        reason = getattr(inner, "reason", None)
        nested = nested or (reason if isinstance(reason, BaseException) else None)
        if nested is None:
            break
        inner = nested
    return str(inner) or type(inner).__name__
