"""OAuth consent from the admin page: ``authorize`` (services/oauth/consent.py) runs on a
thread of its own, which waits for the browser to come back from the provider.

The browser is sent to the authorization URL; the provider redirects it to the page's
``/oauth/callback``, whose address is handed to the waiting flow by its ``state``. The
flow's PKCE verifier never leaves this process (one admin process serves a consent from
start to end).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from services.oauth.consent import Authorized, Redirect
from services.runtime.errors import ConfigError

#: How long a consent may take in the browser.
CONSENT_SECONDS = 600.0
#: How long the callback waits for the code exchange and the tokens stored.
FINISH_SECONDS = 60.0

Flow = Callable[[Redirect], Authorized]


@dataclass
class _Pending:
    mailbox: str
    admin: str
    redirected: queue.Queue[str] = field(default_factory=queue.Queue)
    result: queue.Queue[Authorized | Exception] = field(default_factory=queue.Queue)


class PendingConsents:
    """Consents under way, by their OAuth ``state``."""

    def __init__(self, consent_seconds: float = CONSENT_SECONDS) -> None:
        self._consent_seconds = consent_seconds
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}

    def start(self, mailbox: str, admin: str, flow: Flow) -> str:
        """Begin ``flow`` for ``mailbox``; returns the authorization URL for the browser.

        Raises what the flow raised before it had a URL (``ConfigError`` for settings)."""
        pending = _Pending(mailbox, admin)
        url: queue.Queue[str] = queue.Queue()

        def redirect(authorization_url: str) -> str:
            state = dict(parse_qsl(urlsplit(authorization_url).query)).get("state", "")
            with self._lock:
                self._pending[state] = pending
            url.put(authorization_url)
            try:
                return pending.redirected.get(timeout=self._consent_seconds)
            except queue.Empty:
                raise ConfigError(
                    f"mailbox {mailbox!r}: consent was not given within "
                    f"{self._consent_seconds / 60:g} minutes; authorize again"
                ) from None
            finally:
                with self._lock:
                    self._pending.pop(state, None)

        def run() -> None:
            try:
                pending.result.put(flow(redirect))
            except Exception as exc:  # noqa: BLE001 - handed to the callback, or the start
                pending.result.put(exc)

        threading.Thread(target=run, name=f"consent-{mailbox}", daemon=True).start()
        # The URL comes quickly (msal may read the provider's discovery document first).
        deadline = time.monotonic() + FINISH_SECONDS
        while time.monotonic() < deadline:
            try:
                return url.get(timeout=0.05)
            except queue.Empty:
                if not pending.result.empty():
                    raise _as_error(pending.result.get()) from None
        raise ConfigError(
            f"mailbox {mailbox!r}: the authorization server did not answer in time; check "
            "`authorization_url` and the proxy, then authorize again"
        )

    def finish(self, redirected_url: str, admin: str) -> Authorized:
        """Hand the provider's redirect to its flow and wait for the tokens to be stored.

        Raises ``ConfigError`` for an unknown or expired state, a consent refused, or one
        started by another admin."""
        query = dict(parse_qsl(urlsplit(redirected_url).query))
        with self._lock:
            pending = self._pending.get(query.get("state", ""))
        if pending is None:
            raise ConfigError(
                "this authorization is not under way here (it expired, was finished, or "
                "was started elsewhere): press Authorize again"
            )
        if pending.admin != admin:
            raise ConfigError("this authorization was started by another admin")
        pending.redirected.put(redirected_url)
        try:
            outcome = pending.result.get(timeout=FINISH_SECONDS)
        except queue.Empty:
            raise ConfigError(
                f"mailbox {pending.mailbox!r}: the token endpoint did not answer in time; "
                "authorize again"
            ) from None
        if isinstance(outcome, Exception):
            raise _as_error(outcome)
        return outcome


def _as_error(exc: Authorized | Exception) -> Exception:
    return exc if isinstance(exc, Exception) else RuntimeError("no authorization URL")
