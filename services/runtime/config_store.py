"""Help-desk and mailbox settings kept in the store (written by ``mailroom config apply``).

Secrets (passwords, client secrets) are sealed with the ``SecretBox`` before they are written
and opened when the settings are read, here: for what logs in to mailboxes (the poller) and
for commands. Stages that never log in read them through ``CachedSettings`` without a box.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from contracts.settings import SECRET_FIELDS, HelpdeskSettings, MailboxSettings, SettingsFile
from services.runtime import tables
from services.runtime.cached_settings import (
    CachedSettings,
    ConfiguredMailbox,
    stored,
    with_secrets,
)
from services.runtime.crypto import SecretBox
from services.runtime.errors import ConfigError
from services.runtime.mailbox_health import MailboxHealth
from services.runtime.settings_version import hold_settings_version, raise_settings_version
from services.runtime.store import Store, as_utc, utcnow

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
    #: Paused because its error folder reached ``error_folder.stop_after``.
    paused_by_errors: bool = False


@dataclass(frozen=True)
class ApplyResult:
    helpdesks: list[str]
    mailboxes: list[str]
    removed_mailboxes: list[str]
    #: Mailboxes whose settings changed: their fetching is paused until enabled by hand.
    paused: list[str]


class ConfigStore:
    """Writes the settings, and reads them with their secrets opened and each mailbox's
    poll state read fresh; the settings themselves are read again only when they changed
    (see ``CachedSettings``)."""

    def __init__(self, store: Store, box: SecretBox) -> None:
        self._store = store
        self._box = box
        self._settings = CachedSettings(store, mailbox_secrets=box, outgoing_secrets=box)

    def apply(self, settings: SettingsFile) -> ApplyResult:
        """Replace the stored settings with ``settings`` (mail data is never touched).

        A mailbox that keeps its name keeps its poll state; one whose settings changed is
        paused (the reference product's rule: an edited mailbox is re-enabled by hand); one
        that is gone from the file stops being polled. The settings version is raised when
        anything a reader sees changed, and only then.
        """
        now = utcnow()
        with self._store.transaction() as conn:
            hold_settings_version(conn)
            before = self._readable(conn)
            conn.execute(tables.helpdesks.delete())
            for desk in settings.helpdesks:
                data = desk.model_dump(mode="json", exclude={"mailboxes"})
                data["outgoing"] = self._seal_dict(data.get("outgoing"))
                conn.execute(_INSERT_HELPDESK, dict(id=desk.id, settings=data, updated_at=now))
            names = [
                self._upsert_mailbox(conn, d.id, m, now)
                for d in settings.helpdesks
                for m in d.mailboxes
            ]
            gone = conn.execute(_MAILBOXES_NOT_IN, {"names": names}).scalars().all()
            conn.execute(_DELETE_MAILBOXES_NOT_IN, {"names": names})
            if _readable_of(settings) != before:
                raise_settings_version(conn)
        changed = [
            m.name
            for d in settings.helpdesks
            for m in d.mailboxes
            if m.name in before.mailboxes and _accepted(before.mailboxes[m.name]) != m
        ]
        for name in changed:
            MailboxHealth(self._store).pause(name, PAUSED_BY_EDIT.format(name=name))
        return ApplyResult([d.id for d in settings.helpdesks], names, list(gone), changed)

    def _readable(self, conn: sa.Connection) -> _Readable:
        """The stored settings as readers see them, secrets opened (None where a secret
        cannot be opened: the settings then count as changed by any apply)."""
        desks = {
            r.id: _opened_helpdesk(dict(r.settings), self._box)
            for r in conn.execute(sa.select(tables.helpdesks))
        }
        boxes = {
            r.name: (r.helpdesk_id, _opened(dict(r.settings), self._box))
            for r in conn.execute(sa.select(tables.mailboxes))
        }
        return _Readable(desks, boxes)

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

    def stored_settings(self) -> SettingsFile:
        """The settings as stored now, secrets opened, as the settings file ``apply`` would
        store again unchanged: for an edit of one part of them.

        Raises ``ConfigError`` when nothing is stored yet, or a stored setting is no longer
        accepted.
        """
        with self._store.transaction() as conn:
            snapshot = self._settings.current_in(conn)
        boxes = snapshot.mailboxes()
        desks = [
            snapshot.helpdesk(d).model_dump(mode="json", exclude={"mailboxes"})
            | {"mailboxes": [b.settings.model_dump(mode="json") for b in boxes if b.helpdesk == d]}
            for d in sorted(snapshot.helpdesks)
        ]
        if not desks:
            raise ConfigError("no settings are stored yet: run `mailroom config apply FILE`")
        return stored(SettingsFile, {"helpdesks": desks}, "the help desks")

    def helpdesk(self, helpdesk_id: str) -> HelpdeskSettings:
        """Raises ``ConfigError`` when the help desk is not configured."""
        return self._settings.current().helpdesk(helpdesk_id)

    def helpdesk_ids(self) -> list[str]:
        return sorted(self._settings.current().helpdesks)

    def mailboxes(self) -> list[MailboxState]:
        with self._store.transaction() as conn:
            configured = {b.settings.name: b for b in self._settings.current_in(conn).mailboxes()}
            rows = conn.execute(_POLL_STATES).all()
        # A mailbox added or removed since the settings were read is left for the next call.
        return [_state(configured[r.name], r) for r in rows if r.name in configured]

    def mailbox(self, name: str) -> MailboxState:
        """Raises ``ConfigError`` naming the configured mailboxes when ``name`` is unknown."""
        states = self.mailboxes()
        for state in states:
            if state.settings.name == name:
                return state
        known = ", ".join(s.settings.name for s in states) or "none"
        raise ConfigError(f"no mailbox named {name!r} (configured: {known})")


_INSERT_HELPDESK = tables.helpdesks.insert()
_MAILBOXES_NOT_IN = sa.select(tables.mailboxes.c.name).where(
    tables.mailboxes.c.name.not_in(sa.bindparam("names", expanding=True))
)
_DELETE_MAILBOXES_NOT_IN = tables.mailboxes.delete().where(
    tables.mailboxes.c.name.not_in(sa.bindparam("names", expanding=True))
)
_m = tables.mailboxes
#: What the poller keeps about each mailbox; read fresh every time.
_POLL_STATES = sa.select(
    _m.c.name,
    _m.c.enabled,
    _m.c.last_polled_at,
    _m.c.last_error,
    _m.c.consecutive_failures,
    _m.c.error_count,
    _m.c.paused_reason,
    _m.c.alerted_at,
    _m.c.paused_by_errors,
).order_by(_m.c.name)


@dataclass(frozen=True)
class _Readable:
    """Settings as readers see them, secrets opened: help desks by id; mailboxes by name,
    with their help desk."""

    helpdesks: dict[str, dict[str, Any] | None]
    mailboxes: dict[str, tuple[str, dict[str, Any] | None]]


def _readable_of(settings: SettingsFile) -> _Readable:
    """What ``apply`` stores, as ``ConfigStore._readable`` reads it back."""
    return _Readable(
        {d.id: d.model_dump(mode="json", exclude={"mailboxes"}) for d in settings.helpdesks},
        {
            m.name: (d.id, m.model_dump(mode="json"))
            for d in settings.helpdesks
            for m in d.mailboxes
        },
    )


def _opened(data: dict[str, Any], box: SecretBox) -> dict[str, Any] | None:
    """A stored mailbox's settings with their secrets opened; None when one cannot be."""
    try:
        return with_secrets(data, box)
    except ConfigError:
        return None


def _opened_helpdesk(data: dict[str, Any], box: SecretBox) -> dict[str, Any] | None:
    """A stored help desk's settings with its outgoing secrets opened; None when one cannot
    be."""
    if not data.get("outgoing"):
        return data
    outgoing = _opened(data["outgoing"], box)
    return None if outgoing is None else data | {"outgoing": outgoing}


def _accepted(stored_box: tuple[str, dict[str, Any] | None]) -> MailboxSettings | None:
    """A stored mailbox's settings; None when they cannot be read (so any apply changes them)."""
    _, data = stored_box
    if data is None:
        return None
    try:
        return stored(MailboxSettings, data, "")
    except ConfigError:
        return None


def _state(configured: ConfiguredMailbox, row: Any) -> MailboxState:
    return MailboxState(
        settings=configured.settings,
        helpdesk=configured.helpdesk,
        enabled=row.enabled,
        last_polled_at=as_utc(row.last_polled_at),
        last_error=row.last_error,
        consecutive_failures=row.consecutive_failures,
        error_count=row.error_count,
        paused_reason=row.paused_reason,
        alerted_at=as_utc(row.alerted_at),
        paused_by_errors=row.paused_by_errors,
    )
