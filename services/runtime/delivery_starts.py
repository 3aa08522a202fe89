"""``DeliveryStarts`` in the store: one row per redelivered message that is being handled."""

from __future__ import annotations

import sqlalchemy as sa

from services.runtime import tables
from services.runtime.ports import Clock
from services.runtime.store import Store, insert_ignoring_conflict


class SqlDeliveryStarts:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def begin(self, key: str) -> int:
        t = tables.delivery_starts
        now = self._clock.now()
        with self._store.transaction() as conn:
            if not insert_ignoring_conflict(conn, t, dict(key=key, starts=1, last_at=now)):
                conn.execute(
                    t.update().where(t.c.key == key).values(starts=t.c.starts + 1, last_at=now)
                )
            return int(conn.execute(sa.select(t.c.starts).where(t.c.key == key)).scalar_one())

    def forgive(self, key: str) -> None:
        t = tables.delivery_starts
        with self._store.transaction() as conn:
            conn.execute(t.update().where(t.c.key == key).values(starts=t.c.starts - 1))
            conn.execute(t.delete().where(t.c.key == key, t.c.starts <= 0))

    def finish(self, key: str) -> None:
        t = tables.delivery_starts
        with self._store.transaction() as conn:
            conn.execute(t.delete().where(t.c.key == key))
