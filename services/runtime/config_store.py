"""Help-desk and mailbox settings kept in the store (written by ``mailroom config apply``).

Secrets (passwords, client secrets) are sealed with the ``SecretBox`` before they are written
and opened only when a mailbox is read for use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from contracts.settings import (
    SECRET_FIELDS,
    HelpdeskSettings,
    MailboxSettings,
    SettingsFile,
    problems_of,
)
from services.runtime import tables
from services.runtime.crypto import SecretBox
from services.runtime.errors import ConfigError
from services.runtime.mailbox_health import MailboxHealth
from services.runtime.store import Store, as_utc, utcnow

M = TypeVar("M", bound=BaseModel)

PAUSED_BY_EDIT = (
    "settings changed; check them, then `mailroom mailbox enable {name}` resumes fetching"
)


@dataclass(frozen=True)
class MailboxState:
    """A mailbox's settings plus what the poller keeps about it."""

    settings: MailboxSettings
    helpdesk: str
    enabled: bool
    last_polled_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    error_count: int = 0
    paused_reason: str | None = None
    alerted_at: datetime | None = None


@dataclass(frozen=True)
class ApplyResult:
    helpdesks: list[str]
    mailboxes: list[str]
    removed_mailboxes: list[str]
    #: Mailboxes whose settings changed: their fetching is paused until enabled by hand.
    paused: list[str]


class ConfigStore:
    def __init__(self, store: Store, box: SecretBox) -> None:
        self._store = store
        self._box = box

    def apply(self, settings: SettingsFile) -> ApplyResult:
        """Replace the stored settings with ``settings`` (mail data is never touched).

        A mailbox that keeps its name keeps its poll state; one whose settings changed is
        paused (the reference product's rule: an edited mailbox is re-enabled by hand); one
        that is gone from the file stops being polled.
        """
        now = utcnow()
        before = self._settings_before()
        with self._store.transaction() as conn:
            conn.execute(tables.helpdesks.delete())
            for desk in settings.helpdesks:
                data = desk.model_dump(mode="json", exclude={"mailboxes"})
                data["outgoing"] = self._seal_dict(data.get("outgoing"))
                conn.execute(
                    tables.helpdesks.insert().values(id=desk.id, settings=data, updated_at=now)
                )
            names = [
                self._upsert_mailbox(conn, d.id, m, now)
                for d in settings.helpdesks
                for m in d.mailboxes
            ]
            gone = (
                conn.execute(
                    sa.select(tables.mailboxes.c.name).where(tables.mailboxes.c.name.not_in(names))
                )
                .scalars()
                .all()
            )
            conn.execute(tables.mailboxes.delete().where(tables.mailboxes.c.name.not_in(names)))
        changed = [
            m.name
            for d in settings.helpdesks
            for m in d.mailboxes
            if m.name in before and before[m.name] != m
        ]
        for name in changed:
            MailboxHealth(self._store).pause(name, PAUSED_BY_EDIT.format(name=name))
        return ApplyResult([d.id for d in settings.helpdesks], names, list(gone), changed)

    def _settings_before(self) -> dict[str, MailboxSettings | None]:
        """Stored mailbox settings by name; None for those no longer accepted (changed)."""
        with self._store.transaction() as conn:
            rows = conn.execute(sa.select(tables.mailboxes)).all()
        before: dict[str, MailboxSettings | None] = {}
        for row in rows:
            try:
                before[row.name] = self._state(row).settings
            except ConfigError:
                before[row.name] = None
        return before

    def _upsert_mailbox(
        self, conn: sa.Connection, desk: str, box: MailboxSettings, now: datetime
    ) -> str:
        data = self._seal_dict(box.model_dump(mode="json"))
        values = dict(helpdesk_id=desk, protocol=box.protocol, settings=data, updated_at=now)
        table = tables.mailboxes
        if conn.execute(sa.select(table.c.name).where(table.c.name == box.name)).first():
            conn.execute(table.update().where(table.c.name == box.name).values(**values))
        else:
            conn.execute(
                table.insert().values(
                    name=box.name, enabled=box.enabled, consecutive_failures=0, **values
                )
            )
        return box.name

    def _seal_dict(self, data: dict[str, Any] | None) -> dict[str, Any] | None:
        if data is None:
            return None
        return {k: (self._box.seal(v) if k in SECRET_FIELDS and v else v) for k, v in data.items()}

    def _open_dict(self, data: dict[str, Any]) -> dict[str, Any]:
        return {
            k: (self._box.unseal(v) if k in SECRET_FIELDS and v else v) for k, v in data.items()
        }

    def helpdesk(self, helpdesk_id: str) -> HelpdeskSettings:
        """Raises ``ConfigError`` when the help desk is not configured."""
        with self._store.transaction() as conn:
            row = conn.execute(
                sa.select(tables.helpdesks).where(tables.helpdesks.c.id == helpdesk_id)
            ).first()
        if row is None:
            raise ConfigError(
                f"help desk {helpdesk_id!r} is not configured: run `mailroom config apply FILE`"
            )
        data = dict(row.settings)
        if data.get("outgoing"):
            data["outgoing"] = self._open_dict(data["outgoing"])
        return _stored(HelpdeskSettings, data, f"help desk {helpdesk_id!r}")

    def mailboxes(self) -> list[MailboxState]:
        with self._store.transaction() as conn:
            rows = conn.execute(sa.select(tables.mailboxes).order_by(tables.mailboxes.c.name)).all()
        return [self._state(r) for r in rows]

    def mailbox(self, name: str) -> MailboxState:
        """Raises ``ConfigError`` naming the configured mailboxes when ``name`` is unknown."""
        for state in self.mailboxes():
            if state.settings.name == name:
                return state
        known = ", ".join(s.settings.name for s in self.mailboxes()) or "none"
        raise ConfigError(f"no mailbox named {name!r} (configured: {known})")

    def _state(self, row: sa.Row[Any]) -> MailboxState:
        return MailboxState(
            settings=_stored(
                MailboxSettings, self._open_dict(dict(row.settings)), f"mailbox {row.name!r}"
            ),
            helpdesk=row.helpdesk_id,
            enabled=row.enabled,
            last_polled_at=as_utc(row.last_polled_at),
            last_error=row.last_error,
            consecutive_failures=row.consecutive_failures,
            error_count=row.error_count,
            paused_reason=row.paused_reason,
            alerted_at=as_utc(row.alerted_at),
        )


def _stored(model: type[M], data: dict[str, Any], what: str) -> M:
    """Stored settings as ``model``; raises ``ConfigError`` when a newer Mailroom no longer
    accepts what an older one stored (the message never holds a secret)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(problems_of(exc))
        raise ConfigError(
            f"the stored settings of {what} are no longer accepted ({problems}): correct the "
            "settings file and run `mailroom config apply FILE`"
        ) from None
