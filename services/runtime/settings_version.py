"""The settings version: one number in the store that every write changing help-desk or
mailbox settings raises in its own transaction; a reader holding settings in memory reads
them again only when it moved."""

from __future__ import annotations

import sqlalchemy as sa

from services.runtime import tables

_V = tables.settings_version
_READ = sa.select(_V.c.version).where(_V.c.id == 1)
# Sets the version to itself: a write, so the row (SQLite: the database) is locked until the
# transaction ends.
_HOLD = _V.update().where(_V.c.id == 1).values(version=_V.c.version)
_RAISE = _V.update().where(_V.c.id == 1).values(version=_V.c.version + 1)


def settings_version(conn: sa.Connection) -> int:
    return int(conn.execute(_READ).scalar_one())


def hold_settings_version(conn: sa.Connection) -> None:
    """Lock the version until the transaction ends: writers of settings take turns, each
    comparing the settings with what the one before it wrote."""
    conn.execute(_HOLD)


def raise_settings_version(conn: sa.Connection) -> None:
    """Within the transaction that changes the settings."""
    conn.execute(_RAISE)
