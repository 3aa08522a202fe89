"""Requests to one mailbox on Microsoft Graph: auth, throttling, paging, downloads, errors.

Every request carries ``Authorization: Bearer`` from the token provider and
``Prefer: IdType="ImmutableId"``, so a mail keeps its id when it moves between folders.
A 401 gets one fresh token and one retry; 429 and 503 with ``Retry-After`` are waited out
(``MAX_WAIT_S`` per answer, ``MAX_THROTTLED`` answers in a row) before ``Throttled``.
Nothing from ``requests`` leaves this module: failures are ``ConfigError``, ``InfraError``
or ``GraphRefused`` (see ``graph_errors``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import requests

from contracts.settings import MailboxSettings
from services.poller.sources import graph_errors as errors
from services.poller.sources.base import Throttled
from services.poller.sources.debug import REDACTED, ProtocolTrace
from services.poller.sources.tokens import TokenProvider
from services.runtime.errors import InfraError

PREFER_IMMUTABLE_IDS = 'IdType="ImmutableId"'
#: Longest wait for one throttled answer; a longer Retry-After ends the round (``Throttled``).
MAX_WAIT_S = 30.0
#: Throttled answers in a row before giving up for this round.
MAX_THROTTLED = 3
#: Retry-After when a 429 names none.
DEFAULT_WAIT_S = 2.0
_THROTTLED = {429, 503}
# Query parameters that carry server state which need not show in a trace.
_OPAQUE = {"$skiptoken", "$deltatoken"}
_CHUNK = 64 * 1024

Json = dict[str, Any]


class GraphClient:
    """One mailbox's Graph API (``{graph_endpoint}/v1.0/users/{username}``)."""

    def __init__(
        self,
        box: MailboxSettings,
        session: requests.Session,
        tokens: TokenProvider,
        *,
        trace: ProtocolTrace | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.box = box
        self.endpoint = errors.endpoint_of(box)
        self.user_url = f"{self.endpoint}/v1.0/users/{quote(box.username or '', safe='@')}"
        self._session = session
        self._tokens = tokens
        self._token: str | None = None
        self.trace = trace
        self._sleep = sleep

    def url(self, path: str) -> str:
        """The URL of ``path`` (``/mailFolders/inbox``...) in this mailbox."""
        return self.user_url + path

    def get(self, path: str, what: str, params: dict[str, str] | None = None) -> Json:
        return self._json(self.request("GET", self.url(path), what, params=params), what)

    def send(self, method: str, path: str, what: str, body: Json) -> Json:
        """POST or PATCH a JSON body; the answer's JSON ({} when empty)."""
        response = self.request(method, self.url(path), what, body=body)
        return self._json(response, what) if response.content else {}

    def pages(self, path: str, what: str, params: dict[str, str]) -> Iterator[list[Json]]:
        """Each page's ``value``, following ``@odata.nextLink`` verbatim until it is absent.

        A link that is not a URL on ``graph_endpoint``'s host, or leads to something other
        than a page, is ``InfraError``: the listing is incomplete, so nothing may be trusted.
        """
        page = self.get(path, what, params)
        while True:
            yield _values(page, self.box, what)
            link = page.get("@odata.nextLink")
            if link is None:
                return
            self._check_link(link, what)
            page = self._json(self.request("GET", str(link), what), what, link=True)

    def download(self, path: str, what: str, limit: int) -> bytes | int:
        """The raw bytes at ``path``; their size instead when over ``limit`` bytes (not read
        further). A download cut short is ``InfraError``."""
        headers = {"Accept-Encoding": "identity"}  # Content-Length then counts the mail's bytes
        response = self.request("GET", self.url(path), what, stream=True, headers=headers)
        with response:
            declared = _length(response)
            if declared is not None and declared > limit:
                return declared
            try:
                raw = bytearray()
                for chunk in response.iter_content(_CHUNK):
                    raw += chunk
                    if len(raw) > limit:
                        return len(raw)
            except requests.RequestException as exc:
                detail = f"{len(raw)} bytes received, then {type(exc).__name__}"
                raise self._cut(what, detail) from exc
            if declared is not None and len(raw) != declared:
                raise self._cut(what, f"{len(raw)} of {declared} bytes received")
        return bytes(raw)

    def close(self) -> None:
        self._session.close()

    # -- one request -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        what: str,
        *,
        params: dict[str, str] | None = None,
        body: Json | None = None,
        stream: bool = False,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """A successful (2xx) answer; a refusal raises (see the module docstring)."""
        refreshed, throttled = False, 0
        while True:
            response = self._send(method, url, what, params, body, stream, headers or {})
            if response.status_code == 401:
                response.close()
                if refreshed:
                    raise errors.unauthorized(self.box)
                self._token, refreshed = self._tokens.refreshed_token(), True
                continue
            if response.status_code in _THROTTLED and self._wait(response, what, throttled):
                throttled += 1
                continue
            if response.status_code >= 300:
                with response:
                    raise errors.refused(self.box, response, what)
            return response

    def _send(
        self,
        method: str,
        url: str,
        what: str,
        params: dict[str, str] | None,
        body: Json | None,
        stream: bool,
        extra: dict[str, str],
    ) -> requests.Response:
        if self._token is None:
            self._token = self._tokens.access_token()
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Prefer": PREFER_IMMUTABLE_IDS,
            "Accept": "application/json",
        } | extra
        try:
            response = self._session.request(
                method,
                url,
                params=params,
                json=body,
                headers=headers,
                stream=stream,
                timeout=self.box.timeout_seconds,
            )
        except requests.RequestException as exc:
            self._note(f"{method} {_shown(url, params)} failed: {type(exc).__name__}")
            raise errors.explain(self.box, exc, what) from exc
        self._note(f"{method} {_shown(url, params)} -> {response.status_code}")
        return response

    def _wait(self, response: requests.Response, what: str, throttled: int) -> bool:
        """Wait as the throttled answer asks and return True to retry; raise ``Throttled``
        when it asks too long or too often; False for a 503 without Retry-After (a failure)."""
        header = response.headers.get("Retry-After")
        if header is None and response.status_code == 503:
            return False
        response.close()
        seconds = _seconds(header)
        if seconds > MAX_WAIT_S or throttled + 1 >= MAX_THROTTLED:
            raise Throttled(
                f"mailbox {self.box.name!r}: Microsoft Graph is throttling requests "
                f"({response.status_code}, Retry-After {seconds:g} s) when asked to {what}; "
                "the next round carries on",
                retry_after=seconds,
            )
        self._note(f"throttled: waiting {seconds:g} s")
        self._sleep(seconds)
        return True

    # -- answers ---------------------------------------------------------------------------

    def _json(self, response: requests.Response, what: str, *, link: bool = False) -> Json:
        with response:
            try:
                body = response.json()
            except ValueError:
                if link:
                    raise self._bad_link(what, "it led to an answer that is not JSON") from None
                raise errors.not_graph(self.box, response, what) from None
            except requests.RequestException as exc:
                raise errors.explain(self.box, exc, what) from exc
        if not isinstance(body, dict):
            raise errors.not_graph(self.box, response, what)
        return body

    def _check_link(self, link: object, what: str) -> None:
        base = urlsplit(self.endpoint)
        parts = urlsplit(link) if isinstance(link, str) else None
        if parts is None or parts.scheme != base.scheme or not parts.netloc:
            raise self._bad_link(what, "it is not a URL")
        if parts.netloc.lower() != base.netloc.lower():
            # The token must not go to another host.
            raise self._bad_link(what, f"it points to another host, {parts.hostname}")

    def _bad_link(self, what: str, why: str) -> InfraError:
        return InfraError(
            f"mailbox {self.box.name!r}: the next page's link from {self.endpoint} is broken "
            f"({why}) when asked to {what}; nothing was taken, the next round tries again"
        )

    def _cut(self, what: str, detail: str) -> InfraError:
        return InfraError(
            f"mailbox {self.box.name!r}: the download from {self.endpoint} was cut short "
            f"when asked to {what} ({detail}); will try again next round"
        )

    def _note(self, text: str) -> None:
        if self.trace is not None:
            self.trace.note(text)


def _values(page: Json, box: MailboxSettings, what: str) -> list[Json]:
    values = page.get("value")
    if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
        raise InfraError(
            f"mailbox {box.name!r}: {errors.endpoint_of(box)} answered without a list of "
            f"items when asked to {what}"
        )
    return values


def _length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def _seconds(header: str | None) -> float:
    try:
        return max(0.0, float(header)) if header is not None else DEFAULT_WAIT_S
    except ValueError:  # an HTTP date: rare; wait the default
        return DEFAULT_WAIT_S


def _shown(url: str, params: dict[str, str] | None) -> str:
    """The URL's path and query for a trace, with opaque server tokens left out."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query) + list((params or {}).items())
    shown = [(k, REDACTED if k in _OPAQUE else v) for k, v in query]
    return parts.path + (f"?{urlencode(shown, safe='$ ,')}" if shown else "")
