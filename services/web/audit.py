"""The audit log of the admin web page: who changed what, when, and which fields."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from services.runtime import tables
from services.runtime.ports import Clock
from services.runtime.store import Store, as_utc
from services.web.utc import utc_now

_A = tables.admin_audit


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    admin: str
    action: str
    target: str
    #: The names of the fields changed, never their values.
    fields: list[str]


class AuditLog:
    """Entries are kept: the log is the record of every change made on the page."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def record(self, admin: str, action: str, target: str, fields: list[str]) -> None:
        """``fields``: names only. Record it in the transaction of the change when there is
        one (inside ``store.batch()``), so that a change is never without its entry."""
        with self._store.transaction() as conn:
            conn.execute(
                _A.insert().values(
                    at=utc_now(self._clock),
                    admin=admin,
                    action=action,
                    target=target,
                    fields=list(fields),
                )
            )

    def recent(self, limit: int = 100) -> list[AuditEntry]:
        """The newest entries first."""
        query = sa.select(_A).order_by(_A.c.at.desc(), _A.c.id.desc()).limit(limit)
        with self._store.transaction() as conn:
            rows = conn.execute(query).all()
        return [
            AuditEntry(
                at=as_utc(row.at),
                admin=row.admin,
                action=row.action,
                target=row.target,
                fields=list(row.fields),
            )
            for row in rows
        ]
