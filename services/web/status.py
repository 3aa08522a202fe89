"""Each mailbox's status as the admin page lists it: per help desk, fetching or why not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.oauth.health import token_health
from services.oauth.token_store import SqlTokenStore
from services.runtime.config_store import ConfigStore, MailboxState
from services.runtime.ports import Clock


@dataclass(frozen=True)
class MailboxStatus:
    name: str
    helpdesk: str
    protocol: str
    #: "fetching", "paused" or "stopped by errors".
    status: str
    #: Why it is not fetching, with the fix; None while fetching.
    reason: str | None
    last_polled_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    error_count: int
    #: OAuth mailboxes: when the access token expires, or why there is none.
    token: str | None

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "helpdesk": self.helpdesk,
            "protocol": self.protocol,
            "status": self.status,
            "reason": self.reason,
            "last_polled_at": self.last_polled_at.isoformat() if self.last_polled_at else None,
            "last_error": self.last_error,
            "consecutive_failures": self.consecutive_failures,
            "error_count": self.error_count,
            "token": self.token,
        }


def mailbox_statuses(
    config: ConfigStore, tokens: SqlTokenStore, clock: Clock
) -> dict[str, list[MailboxStatus]]:
    """Help desk id -> its mailboxes' status, every configured help desk present."""
    desks: dict[str, list[MailboxStatus]] = {d: [] for d in config.helpdesk_ids()}
    now = clock.now()
    for state in config.mailboxes():
        desks.setdefault(state.helpdesk, []).append(_status(state, tokens, now))
    return desks


def _status(state: MailboxState, tokens: SqlTokenStore, now: datetime) -> MailboxStatus:
    box = state.settings
    if state.enabled:
        status = "fetching"
    elif state.paused_by_errors:
        status = "stopped by errors"
    else:
        status = "paused"
    return MailboxStatus(
        name=box.name,
        helpdesk=state.helpdesk,
        protocol=box.protocol,
        status=status,
        reason=None if state.enabled else state.paused_reason,
        last_polled_at=state.last_polled_at,
        last_error=state.last_error,
        consecutive_failures=state.consecutive_failures,
        error_count=state.error_count,
        token=_token(state, tokens, now) if box.auth == "oauth" else None,
    )


def _token(state: MailboxState, tokens: SqlTokenStore, now: datetime) -> str:
    health = token_health(state.settings, tokens.get(state.settings.name), now)
    if not health["authorized"]:
        return "not authorized"
    if health.get("last_refresh_failure"):
        return f"refresh failed: {health['last_refresh_failure']}"
    if health["access_token_expired"]:
        # Normal between rounds: the next round refreshes it.
        return "access token expired; renewed at the next fetch"
    return f"access token valid until {health['access_token_expires_at']}"
