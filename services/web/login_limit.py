"""Failed logins counted per user name and per client address, in the store, so that every
replica of the web page sees the same count."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import sqlalchemy as sa

from services.runtime import tables
from services.runtime.ports import Clock
from services.runtime.store import Store, as_utc
from services.web.passwords import username_key
from services.web.utc import utc_now

_F = tables.admin_login_failures


class LoginLimiter:
    """After ``max_failures`` failed logins within ``window`` for a user name, or from a
    client address, further tries wait until the oldest of them leaves the window.

    Only the newest ``max_failures`` failures of each name or address are kept, and none
    older than the window: the table stays small whatever an attacker sends.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        max_failures: int = 5,
        window: timedelta = timedelta(minutes=15),
    ) -> None:
        self._store = store
        self._clock = clock
        self._max = max_failures
        self._window = window

    def wait_seconds(self, username: str, client_ip: str) -> float:
        """Seconds until a login may be tried; 0 when it may be now."""
        now = utc_now(self._clock)
        with self._store.transaction() as conn:
            return max(self._wait(conn, key, now) for key in _keys(username, client_ip))

    def failed(self, username: str, client_ip: str) -> None:
        """A login that was tried and failed."""
        now = utc_now(self._clock)
        with self._store.transaction() as conn:
            conn.execute(_F.delete().where(_F.c.at <= now - self._window))
            for key in _keys(username, client_ip):
                conn.execute(_F.insert().values(key=key, at=now))
                beyond = (
                    sa.select(_F.c.id)
                    .where(_F.c.key == key)
                    .order_by(_F.c.at.desc(), _F.c.id.desc())
                    .offset(self._max)
                )
                old = list(conn.execute(beyond).scalars())
                if old:
                    conn.execute(_F.delete().where(_F.c.id.in_(old)))

    def succeeded(self, username: str, client_ip: str) -> None:
        """The user's failures are forgiven; the address's stay, or an attacker with one
        account of their own could go on guessing the others' passwords."""
        now = utc_now(self._clock)
        with self._store.transaction() as conn:
            conn.execute(_F.delete().where(_F.c.at <= now - self._window))
            conn.execute(_F.delete().where(_F.c.key == _keys(username, client_ip)[0]))

    def _wait(self, conn: sa.Connection, key: str, now: datetime) -> float:
        counted = (
            sa.select(_F.c.at)
            .where(_F.c.key == key, _F.c.at > now - self._window)
            .order_by(_F.c.at.desc(), _F.c.id.desc())
            .limit(self._max)
        )
        times = list(conn.execute(counted).scalars())
        if len(times) < self._max:
            return 0.0
        oldest: datetime = as_utc(times[-1])
        return max(0.0, (oldest + self._window - now).total_seconds())


def _keys(username: str, client_ip: str) -> tuple[str, str]:
    """What is counted, as hashes: a password typed into the name field is not kept as
    typed (and not beyond the window)."""
    return _hashed("user", username_key(username)), _hashed("address", client_ip)


def _hashed(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}\0{value}".encode(errors="replace")).hexdigest()
