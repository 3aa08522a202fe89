"""Admin sessions in the store: a random token in the browser, only its hash in the store;
each session ends at the end of its lifetime or after it was left idle, whichever is first."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from services.runtime import tables
from services.runtime.ports import Clock
from services.runtime.store import Store, as_utc
from services.web.passwords import username_key
from services.web.utc import utc_now

_S = tables.admin_sessions


@dataclass(frozen=True)
class NewSession:
    """What the browser is given: the token for its cookie, the CSRF token for its forms."""

    token: str = field(repr=False)
    csrf: str = field(repr=False)
    #: The end of the session's lifetime (it may end earlier, when left idle).
    expires_at: datetime


@dataclass(frozen=True)
class Session:
    username: str
    csrf: str = field(repr=False)
    expires_at: datetime


class Sessions:
    """Each call is its own short transaction; ended and expired sessions are deleted."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        lifetime: timedelta = timedelta(hours=8),
        idle: timedelta = timedelta(minutes=30),
    ) -> None:
        self._store = store
        self._clock = clock
        self._lifetime = lifetime
        self._idle = idle

    def start(self, username: str) -> NewSession:
        """A session for a user whose password was just checked."""
        now = utc_now(self._clock)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires_at = now + self._lifetime
        with self._store.transaction() as conn:
            conn.execute(_S.delete().where(self._expired(now)))
            conn.execute(
                _S.insert().values(
                    token_sha256=_digest(token),
                    username=username_key(username),
                    csrf=csrf,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=expires_at,
                )
            )
        return NewSession(token=token, csrf=csrf, expires_at=expires_at)

    def current(self, token: str) -> Session | None:
        """The session of ``token``, used now (which holds off its idle end); None when
        there is none or it expired."""
        now = utc_now(self._clock)
        key = _S.c.token_sha256 == _digest(token)
        with self._store.transaction() as conn:
            row = conn.execute(
                sa.select(_S.c.username, _S.c.csrf, _S.c.expires_at).where(key)
            ).first()
            if row is None:
                return None
            if conn.execute(_S.delete().where(key, self._expired(now))).rowcount:
                return None
            conn.execute(_S.update().where(key).values(last_seen_at=now))
        return Session(username=row.username, csrf=row.csrf, expires_at=as_utc(row.expires_at))

    def end(self, token: str) -> None:
        with self._store.transaction() as conn:
            conn.execute(_S.delete().where(_S.c.token_sha256 == _digest(token)))

    def end_all(self, username: str) -> None:
        with self._store.transaction() as conn:
            conn.execute(_S.delete().where(_S.c.username == username_key(username)))

    def _expired(self, now: datetime) -> sa.ColumnElement[bool]:
        return sa.or_(_S.c.expires_at <= now, _S.c.last_seen_at <= now - self._idle)


def csrf_ok(session: Session, submitted: str | None) -> bool:
    """The form carried the session's CSRF token (compared in constant time)."""
    if not submitted:
        return False
    return hmac.compare_digest(session.csrf.encode(), submitted.encode(errors="replace"))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode(errors="replace")).hexdigest()
