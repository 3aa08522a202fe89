"""What the poller keeps about each mailbox's health: poll rounds, error count, pauses, alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.runtime import tables
from services.runtime.store import Store


class MailboxHealth:
    """Each call is its own short transaction on the ``mailboxes`` row."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def record_poll(self, name: str, at: datetime, error: str | None) -> int:
        """Record a poll round (``error`` None: it succeeded); returns the consecutive
        failure count after it."""
        t = tables.mailboxes
        with self._store.transaction() as conn:
            row = conn.execute(sa.select(t.c.consecutive_failures).where(t.c.name == name)).first()
            if row is None:
                return 0
            failures = 0 if error is None else row.consecutive_failures + 1
            success = {"last_success_at": at} if error is None else {}
            self._set(
                conn,
                name,
                last_polled_at=at,
                last_error=error,
                consecutive_failures=failures,
                **success,
            )
        return failures

    def reset_failures(self, name: str) -> None:
        """After an alert the count starts again, so a long outage alerts every N rounds."""
        self._update(name, consecutive_failures=0)

    def count_error(self, name: str) -> int:
        """One more mail in the error folder; returns the new count."""
        t = tables.mailboxes
        with self._store.transaction() as conn:
            self._set(conn, name, error_count=t.c.error_count + 1)
            row = conn.execute(sa.select(t.c.error_count).where(t.c.name == name)).first()
        return int(row.error_count) if row else 0

    def reset_errors(self, name: str) -> None:
        self._update(name, error_count=0)

    def pause(self, name: str, reason: str, *, by_errors: bool = False) -> None:
        """Stop fetching; ``by_errors``: because the error folder reached its limit."""
        self._update(name, enabled=False, paused_reason=reason, paused_by_errors=by_errors)

    def resume(self, name: str) -> None:
        self._update(name, enabled=True, paused_reason=None, paused_by_errors=False)

    def set_alerted(self, name: str, at: datetime | None) -> None:
        self._update(name, alerted_at=at)

    def _update(self, name: str, **values: Any) -> None:
        with self._store.transaction() as conn:
            self._set(conn, name, **values)

    @staticmethod
    def _set(conn: sa.Connection, name: str, **values: Any) -> None:
        conn.execute(
            tables.mailboxes.update().where(tables.mailboxes.c.name == name).values(**values)
        )
