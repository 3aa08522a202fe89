"""Where Mailroom keeps its state, and opening it: found where it was left, never made anew
by accident.

The data folder is ``MAILROOM_VAR_DIR`` (see ``Settings.var_dir``): the SQLite database and
the key file live there unless ``MAILROOM_DATABASE_URL`` and ``MAILROOM_SECRET_KEY`` say
otherwise. Only ``config apply`` (and ``run``/``worker`` with ``--config``) may create a store
and its key; any other command on a missing store says where it looked. A key file missing
next to a store that holds data is an error: a new key would not read what the old one
encrypted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from contracts.settings import Settings
from services.runtime import tables
from services.runtime.crypto import create_key_file
from services.runtime.errors import ConfigError
from services.runtime.private_files import private_file, private_folder, warn_if_shared
from services.runtime.store import Store, safe_url


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).absolute()


def open_store(
    settings: Settings,
    *,
    create: bool = False,
    migrate: Callable[[Store], None] = Store.migrate,
) -> Store:
    """The store, migrated, with its key at hand.

    Raises:
        ConfigError: no store where the settings point (and ``create`` is False), or its key
            file is missing.
    """
    url = settings.effective_database_url
    database = sqlite_file(url)
    if database is not None and not database.exists() and not create:
        where = settings.var_dir if settings.database_url is None else database
        raise ConfigError(
            f"no Mailroom data at {where}; run `mailroom config apply SETTINGS` first "
            "or set MAILROOM_VAR_DIR"
        )
    if database is not None:
        _data_folder(database.parent)
    try:
        store = Store(url)
    except OSError as exc:  # the database file cannot be made or set private there
        raise ConfigError(
            f"cannot use the database {database or safe_url(url)}: {exc.strerror}; set "
            "MAILROOM_VAR_DIR to a folder you can write"
        ) from None
    warn_if_shared(settings.var_dir)
    migrate(store)
    _check_key(settings, store, create=create)
    return store


def _check_key(settings: Settings, store: Store, *, create: bool) -> None:
    if settings.secret_key:
        return
    key_file = settings.effective_key_file
    if key_file.exists():
        private_file(key_file)
        return
    if _holds_data(store):
        raise ConfigError(
            f"the key file {key_file} is missing, but the store {safe_url(store.url)} holds "
            "passwords and error logs encrypted with it: restore the key file from a backup, "
            "or set MAILROOM_SECRET_KEY to the key. A new key would not read them, so none is "
            "made"
        )
    if not create:
        raise ConfigError(
            f"no key file at {key_file}; run `mailroom config apply SETTINGS` first "
            "or set MAILROOM_SECRET_KEY"
        )
    _data_folder(key_file.parent)
    try:
        create_key_file(key_file)
    except OSError as exc:
        raise ConfigError(f"cannot write the key file {key_file}: {exc.strerror}") from None


def _data_folder(folder: Path) -> None:
    """Make the folder (mode 0700) when absent; a clear error when it cannot be one."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"the data folder {folder} is not a folder: set MAILROOM_VAR_DIR to a folder"
        )
    try:
        private_folder(folder)
    except OSError as exc:
        raise ConfigError(
            f"cannot make the data folder {folder}: {exc.strerror}; set MAILROOM_VAR_DIR to "
            "a folder you can write"
        ) from None


def _holds_data(store: Store) -> bool:
    """Anything that may have been encrypted with a key: settings, blobs (error logs)."""
    with store.transaction() as conn:
        return any(
            conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first()
            for table in (tables.helpdesks, tables.blobs)
        )
