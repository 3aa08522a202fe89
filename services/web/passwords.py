"""Admin users of the web page: names, argon2 password hashes, checking a login."""

from __future__ import annotations

import logging
import secrets
import unicodedata

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.runtime import tables
from services.runtime.errors import ConfigError
from services.runtime.ports import Clock
from services.runtime.store import Store, insert_ignoring_conflict
from services.safe_text import shown
from services.web.utc import utc_now

log = logging.getLogger(__name__)

MAX_NAME = 100
MIN_PASSWORD = 12
MAX_PASSWORD = 1024

_U = tables.admin_users
_S = tables.admin_sessions


def username_key(username: str) -> str:
    """The form a name is kept and compared in: without case or surrounding spaces."""
    return unicodedata.normalize("NFC", username).strip().lower()


def checked_username(username: str) -> str:
    """``username_key(username)``, or a ``ConfigError`` saying what to change."""
    name = username_key(username)
    if not name:
        raise ConfigError("the admin user name is empty: give a name of 1 to 100 characters")
    if len(name) > MAX_NAME:
        raise ConfigError(
            f"the admin user name is longer than {MAX_NAME} characters: choose a shorter one"
        )
    if shown(name) != name:
        raise ConfigError(
            "the admin user name holds control or invisible characters: choose a name of "
            "visible characters only"
        )
    return name


def checked_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ConfigError(
            f"the password is shorter than {MIN_PASSWORD} characters: choose a longer one"
        )
    if len(password) > MAX_PASSWORD:
        raise ConfigError(
            f"the password is longer than {MAX_PASSWORD} characters: choose a shorter one"
        )
    return password


class AdminUsers:
    """Each call is its own short transaction; hashing happens outside it."""

    def __init__(self, store: Store, clock: Clock, hasher: PasswordHasher | None = None) -> None:
        self._store = store
        self._clock = clock
        self._hasher = hasher or PasswordHasher()
        # Checked against when the name is unknown: such a login costs one hash as well,
        # so the time taken does not tell which names exist.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def create(self, username: str, password: str) -> None:
        """Raises ``ConfigError`` when the name is taken or not usable, or the password is
        too short or too long."""
        name = checked_username(username)
        hashed = self._hasher.hash(checked_password(password))
        now = utc_now(self._clock)
        row = dict(username=name, password_hash=hashed, created_at=now, password_changed_at=now)
        with self._store.transaction() as conn:
            created = insert_ignoring_conflict(conn, _U, row)
        if not created:
            raise ConfigError(f"admin user {name} exists already: choose another name")

    def verify(self, username: str, password: str) -> bool:
        """True when the password is the user's. A hash made with other parameters than
        the hasher's is replaced by a new one."""
        name = username_key(username)
        stored = None
        # A name ``create`` refuses (control characters: a NUL, which PostgreSQL refuses in
        # a query) is nobody's, and costs the same hash as an unknown one.
        if shown(name) == name:
            with self._store.transaction() as conn:
                stored = conn.execute(
                    sa.select(_U.c.password_hash).where(_U.c.username == name)
                ).scalar()
        # No stored password is longer: check only as much, at the cost of one hash still.
        password = password[: MAX_PASSWORD + 1]
        if stored is None:
            self._matches(self._dummy, password)
            return False
        if not self._matches(stored, password):
            return False
        if self._hasher.check_needs_rehash(stored):
            with self._store.transaction() as conn:
                # Only over the hash just checked: a password set meanwhile stays.
                conn.execute(
                    _U.update()
                    .where(_U.c.username == name, _U.c.password_hash == stored)
                    .values(password_hash=self._hasher.hash(password))
                )
        return True

    def exists_any(self) -> bool:
        with self._store.transaction() as conn:
            return conn.execute(sa.select(_U.c.username).limit(1)).first() is not None

    def set_password(self, username: str, password: str) -> None:
        """A new password; every session of the user ends. ``ConfigError`` when there is no
        such user or the password is too short or too long."""
        name = username_key(username)
        hashed = self._hasher.hash(checked_password(password))
        with self._store.transaction() as conn:
            changed = conn.execute(
                _U.update()
                .where(_U.c.username == name)
                .values(password_hash=hashed, password_changed_at=utc_now(self._clock))
            )
            if not changed.rowcount:
                raise ConfigError(
                    f"there is no admin user {shown(name)}: check the name, or create the "
                    "user with `mailroom admin create-user`"
                )
            conn.execute(_S.delete().where(_S.c.username == name))

    def _matches(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except InvalidHashError:
            log.warning("an admin user's stored password hash is unreadable; set a new one")
            return False
        except VerificationError:
            return False
