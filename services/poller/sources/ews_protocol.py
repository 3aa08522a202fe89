"""exchangelib wired to one mailbox's settings: its HTTP session, credentials and retry policy.

exchangelib keeps some state per process. What this module does about each piece:

- ``Protocol`` instances are cached by a metaclass, keyed by (endpoint, credentials), for
  every caller in the process. Each mailbox gets credentials with an identity of its own, so
  its ``MailroomProtocol`` (built first, which primes that cache) is the one ``Account``
  picks up and no other mailbox ever shares it; ``forget_protocol`` drops it on close.
- The HTTP session comes from ``needs.http(box)`` (certificate checks, ``tls.ca_file``,
  proxy, no environment) for this protocol instance only; the timeout is an instance
  attribute. ``BaseProtocol.HTTP_ADAPTER_CLS`` and the class-level ``TIMEOUT`` are never set.
- The retry policy is per configuration: it fails fast and turns every HTTP answer that is
  not SOAP into ``HttpAnswer`` so the caller decides about waits (``ews_client``).
- Still process-global and left alone: exchangelib's loggers, and the
  ``close_connections`` it registers at exit.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    OAUTH2,
    UTC,
    Account,
    Build,
    Configuration,
    Credentials,
    OAuth2AuthorizationCodeCredentials,
    Version,
)
from exchangelib.protocol import FailFast, Protocol
from exchangelib.util import is_xml

from contracts.settings import MailboxSettings
from services.poller.sources.debug import ProtocolTrace
from services.poller.sources.tokens import TokenProvider

#: Exchange 2016 / Exchange Online: pinned, so nothing is probed before the first request.
EXCHANGE_2016 = Version(build=Build(15, 1))

_OPERATION = re.compile(rb"<s:Body>\s*<m:(\w+)")


class HttpAnswer(Exception):
    """An HTTP answer that carries no SOAP: an error status, or a page that is not EWS."""

    def __init__(self, status: int, retry_after: float | None, content_type: str) -> None:
        super().__init__(f"HTTP {status} ({content_type or 'no content type'})")
        self.status = status
        self.retry_after = retry_after
        self.content_type = content_type


class MailroomRetryPolicy(FailFast):  # type: ignore[misc]
    """Fails fast, and raises ``HttpAnswer`` for anything but a SOAP answer (exchangelib
    would turn a 503 into a 10 s wait of its own, drop ``Retry-After`` and fail on 429)."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now

    def raise_response_errors(self, response: requests.Response) -> None:
        content_type = response.headers.get("Content-Type", "")
        soap = "xml" in content_type.lower() or is_xml(response.content)
        if response.status_code in (200, 500) and soap:
            return  # EWS sends its SOAP faults as HTTP 500
        retry_after = _seconds(response.headers.get("Retry-After"), self._now)
        raise HttpAnswer(response.status_code, retry_after, content_type)


class _OwnIdentity:
    """Equal only to itself, with a hash that never changes: the key of exchangelib's
    protocol cache. (exchangelib hashes every attribute, some of them set lazily.)"""

    mailroom_source: str

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _OwnIdentity) and other.mailroom_source == self.mailroom_source

    def __hash__(self) -> int:
        return hash(self.mailroom_source)


class BasicCredentials(_OwnIdentity, Credentials):  # type: ignore[misc]
    """Username and password, with an identity per mailbox (see the module docstring)."""

    def __init__(self, username: str, password: str) -> None:
        super().__init__(username, password)
        self.mailroom_source = uuid.uuid4().hex

    def __repr__(self) -> str:
        return f"BasicCredentials({self.username!r}, <password>)"


class TokenCredentials(_OwnIdentity, OAuth2AuthorizationCodeCredentials):  # type: ignore[misc]
    """An access token from Mailroom's ``TokenProvider``; exchangelib never calls a token
    endpoint. ``refresh()`` asks the provider for a new token after a refusal."""

    def __init__(self, tokens: TokenProvider) -> None:
        super().__init__(access_token=None)
        self.mailroom_source = uuid.uuid4().hex
        self._tokens = tokens

    def load(self) -> None:
        """Take the provider's current token (it renews tokens that expired)."""
        self._set(self._tokens.access_token())

    def refresh(self, session: Any = None) -> None:
        self._set(self._tokens.refreshed_token())

    def bearer(self) -> str:
        token = self.access_token or {}
        return str(token.get("access_token", ""))

    def _set(self, token: str) -> None:
        with self.lock:
            self.access_token = {"access_token": token, "token_type": "Bearer"}

    def __repr__(self) -> str:
        return "TokenCredentials(<token>)"


class _Bearer(requests.auth.AuthBase):
    """``Authorization: Bearer`` with the token the credentials hold at the time of sending."""

    def __init__(self, credentials: TokenCredentials) -> None:
        self._credentials = credentials

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._credentials.bearer()}"
        return request


class MailroomProtocol(Protocol):  # type: ignore[misc]
    """A Protocol whose sessions are the mailbox's own (see the module docstring)."""

    def __init__(
        self,
        *,
        config: Configuration,
        box: MailboxSettings,
        http: Callable[[MailboxSettings], requests.Session],
        trace: ProtocolTrace | None,
    ) -> None:
        super().__init__(config=config)
        self.TIMEOUT = box.timeout_seconds  # this instance only
        self._box = box
        self._http = http
        self._trace = trace

    def raw_session(self, prefix: str, *args: Any, **kwargs: Any) -> requests.Session:
        session = self._http(self._box)
        session.headers.update({"Content-Type": "text/xml; charset=utf-8"})
        session.hooks["response"].append(_read_in_chunks)
        if self._trace is not None:
            session.hooks["response"].append(_tracer(self._trace))
        return session

    def create_oauth2_session(self) -> requests.Session:
        session = self.raw_session(self.service_endpoint)
        session.auth = _Bearer(self.credentials)
        return session


#: How much of a SOAP answer exchangelib's XML parser is fed at a time.
READ_CHUNK = 64 * 1024


def _read_in_chunks(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """exchangelib parses ``response.iter_content()``, whose default is one byte per step: a
    mailbox of large mails spent nine tenths of its time there. The same bytes, in chunks."""
    one_byte_steps = response.iter_content

    def iter_content(chunk_size: int | None = READ_CHUNK, decode_unicode: Any = False) -> Any:
        return one_byte_steps(chunk_size, decode_unicode)

    response.iter_content = iter_content  # type: ignore[method-assign]
    return response


def connect(
    box: MailboxSettings,
    credentials: BasicCredentials | TokenCredentials,
    *,
    http: Callable[[MailboxSettings], requests.Session],
    trace: ProtocolTrace | None,
    now: Callable[[], datetime],
) -> Account:
    """An ``Account`` for ``box``; sends nothing (exchangelib connects on first use)."""
    config = Configuration(
        service_endpoint=box.connect_url,
        credentials=credentials,
        auth_type=OAUTH2 if isinstance(credentials, TokenCredentials) else BASIC,
        version=EXCHANGE_2016,
        retry_policy=MailroomRetryPolicy(now),
    )
    MailroomProtocol(config=config, box=box, http=http, trace=trace)  # primes the cache
    try:
        return Account(
            primary_smtp_address=box.username,
            config=config,
            autodiscover=False,
            access_type=DELEGATE,
            default_timezone=UTC,
        )
    except Exception:
        forget_protocol(config)
        raise


def forget_protocol(config: Configuration) -> None:
    """Drop this configuration's protocol from exchangelib's cache and close its sessions."""
    try:
        protocol, _ = Protocol[config]
        del Protocol[config]
    except KeyError:
        return
    if isinstance(protocol, Protocol):
        protocol.close()


def _tracer(trace: ProtocolTrace) -> Callable[..., None]:
    def note(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        # The operation is read from the request; no header nor body is logged.
        body = response.request.body
        found = _OPERATION.search(body if isinstance(body, bytes) else str(body or "").encode())
        operation = found.group(1).decode() if found else "?"
        trace.note(f"POST {response.request.url} {operation} -> HTTP {response.status_code}")

    return note


def _seconds(value: str | None, now: Callable[[], datetime]) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - now()).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None
