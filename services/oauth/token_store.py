"""The OAuth tokens of each mailbox in the store, sealed with the SecretBox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.oauth.grant import Grant
from services.runtime import tables
from services.runtime.crypto import SecretBox
from services.runtime.store import Store, as_utc


@dataclass(frozen=True)
class StoredTokens:
    """A mailbox's tokens, opened; ``repr`` leaves the tokens out."""

    mailbox: str
    refresh_token: str
    access_token: str | None
    access_expires_at: datetime | None
    refresh_issued_at: datetime
    refresh_used_at: datetime | None
    account: str | None
    last_failure: str | None
    last_failure_at: datetime | None
    lapse_warned_for: datetime | None

    def __repr__(self) -> str:
        return (
            f"StoredTokens(mailbox={self.mailbox!r}, account={self.account!r}, "
            f"access_expires_at={self.access_expires_at!r}, <tokens>)"
        )


class SqlTokenStore:
    """Each call is its own short transaction on the ``oauth_tokens`` row of a mailbox."""

    def __init__(self, store: Store, box: SecretBox) -> None:
        self._store = store
        self._box = box

    def get(self, mailbox: str) -> StoredTokens | None:
        t = tables.oauth_tokens
        with self._store.transaction() as conn:
            row = conn.execute(sa.select(t).where(t.c.mailbox == mailbox)).first()
        return None if row is None else self._opened(row)

    def authorized(self) -> set[str]:
        """The mailboxes that have tokens (nothing decrypted)."""
        t = tables.oauth_tokens
        with self._store.transaction() as conn:
            return set(conn.execute(sa.select(t.c.mailbox)).scalars())

    def all(self) -> list[StoredTokens]:
        with self._store.transaction() as conn:
            rows = conn.execute(sa.select(tables.oauth_tokens)).all()
        return [self._opened(r) for r in rows]

    def save_consent(self, mailbox: str, grant: Grant, account: str | None, at: datetime) -> None:
        """After a consent: new tokens replace whatever was kept, failures are forgotten."""
        if grant.refresh_token is None:
            raise ValueError("a consent without a refresh token cannot be kept")
        values = {
            "refresh_token": self._box.seal(grant.refresh_token),
            "access_token": self._box.seal(grant.access_token),
            "access_expires_at": grant.expires_at,
            "refresh_issued_at": at,
            "refresh_used_at": None,
            "account": account,
            "last_failure": None,
            "last_failure_at": None,
            "lapse_warned_for": None,
        }
        t = tables.oauth_tokens
        with self._store.transaction() as conn:
            conn.execute(t.delete().where(t.c.mailbox == mailbox))
            conn.execute(t.insert().values(mailbox=mailbox, **values))

    def save_refresh(self, mailbox: str, grant: Grant, at: datetime) -> None:
        """After a refresh: the new access token, and the refresh token when it rotated."""
        values: dict[str, Any] = {
            "access_token": self._box.seal(grant.access_token),
            "access_expires_at": grant.expires_at,
            "refresh_used_at": at,
            "last_failure": None,
            "last_failure_at": None,
        }
        if grant.refresh_token is not None:
            values["refresh_token"] = self._box.seal(grant.refresh_token)
            values["refresh_issued_at"] = at
        self._update(mailbox, **values)

    def record_failure(self, mailbox: str, error: str, at: datetime) -> None:
        self._update(mailbox, last_failure=error, last_failure_at=at)

    def mark_lapse_warned(self, mailbox: str, lapse: datetime) -> None:
        self._update(mailbox, lapse_warned_for=lapse)

    def _update(self, mailbox: str, **values: Any) -> None:
        t = tables.oauth_tokens
        with self._store.transaction() as conn:
            conn.execute(t.update().where(t.c.mailbox == mailbox).values(**values))

    def _opened(self, row: sa.Row[Any]) -> StoredTokens:
        return StoredTokens(
            mailbox=row.mailbox,
            refresh_token=self._box.unseal(row.refresh_token),
            access_token=self._box.unseal(row.access_token) if row.access_token else None,
            access_expires_at=as_utc(row.access_expires_at),
            refresh_issued_at=as_utc(row.refresh_issued_at),
            refresh_used_at=as_utc(row.refresh_used_at),
            account=row.account,
            last_failure=row.last_failure,
            last_failure_at=as_utc(row.last_failure_at),
            lapse_warned_for=as_utc(row.lapse_warned_for),
        )
