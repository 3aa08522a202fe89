"""Mailroom's data is found where it was left, whichever folder a command runs in; only
`config apply` makes a new store and key, and a lost key is never replaced silently."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from contracts.settings import Settings
from services.runtime import tables
from services.runtime.data_folder import open_store
from services.runtime.errors import ConfigError
from services.runtime.stage import secret_box
from services.runtime.store import utcnow


def settings_in(folder: Path) -> Settings:
    return Settings(var_dir=folder, database_url=None, secret_key=None, secret_key_file=None)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def with_a_help_desk(settings: Settings) -> None:
    store = open_store(settings, create=True)
    with store.transaction() as conn:
        conn.execute(sa.insert(tables.helpdesks).values(id="d", settings={}, updated_at=utcnow()))


def test_the_default_data_folder_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MAILROOM_VAR_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    here = Settings().var_dir
    monkeypatch.chdir("/")

    assert Settings().var_dir == here == tmp_path / "state" / "mailroom"


def test_without_xdg_state_home_the_data_folder_is_in_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MAILROOM_VAR_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    assert Settings().var_dir == tmp_path / ".local" / "state" / "mailroom"


def test_a_relative_data_folder_is_made_absolute_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILROOM_VAR_DIR", "data")

    assert Settings().var_dir == tmp_path / "data"


def test_a_command_on_a_missing_store_says_where_it_looked_and_creates_nothing(tmp_path):
    settings = settings_in(tmp_path / "var")

    with pytest.raises(ConfigError) as caught:
        open_store(settings)

    assert str(caught.value) == (
        f"no Mailroom data at {tmp_path / 'var'}; run `mailroom config apply SETTINGS` first "
        "or set MAILROOM_VAR_DIR"
    )
    assert not (tmp_path / "var").exists()


def test_a_new_store_is_private_whatever_the_umask(tmp_path):
    settings = settings_in(tmp_path / "var")
    old = os.umask(0)
    try:
        with_a_help_desk(settings)
        open_store(settings).dispose()
    finally:
        os.umask(old)

    assert mode(tmp_path / "var") == 0o700
    files = list((tmp_path / "var").iterdir())
    assert {p.name for p in files} >= {"mailroom.db", "secret.key"}
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_an_existing_database_readable_by_others_is_tightened(tmp_path):
    settings = settings_in(tmp_path / "var")
    with_a_help_desk(settings)
    os.chmod(tmp_path / "var" / "mailroom.db", 0o644)

    open_store(settings)

    assert mode(tmp_path / "var" / "mailroom.db") == 0o600


@pytest.mark.parametrize("create", [False, True])
def test_a_lost_key_next_to_a_store_is_an_error_and_no_new_key_is_made(tmp_path, create):
    settings = settings_in(tmp_path / "var")
    with_a_help_desk(settings)
    key_file = tmp_path / "var" / "secret.key"
    key_file.unlink()

    with pytest.raises(ConfigError) as caught:
        open_store(settings, create=create)

    said = str(caught.value)
    assert f"the key file {key_file} is missing" in said
    assert "restore the key file from a backup, or set MAILROOM_SECRET_KEY" in said
    assert not key_file.exists()
    with pytest.raises(ConfigError, match="is missing"):
        secret_box(settings)
    assert not key_file.exists()


def test_a_key_in_the_environment_needs_no_key_file(tmp_path):
    from cryptography.fernet import Fernet

    settings = settings_in(tmp_path / "var")
    with_a_help_desk(settings)
    (tmp_path / "var" / "secret.key").unlink()
    settings.secret_key = Fernet.generate_key().decode()

    open_store(settings)

    assert not (tmp_path / "var" / "secret.key").exists()


def test_a_data_folder_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "var").write_text("not a folder")

    with pytest.raises(ConfigError, match="the data folder .*var is not a folder"):
        open_store(settings_in(tmp_path / "var"), create=True)


def test_a_data_folder_that_cannot_be_made_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")

    # Below a file: no one can make it, root or not
    with pytest.raises(ConfigError, match="cannot make the data folder .*MAILROOM_VAR_DIR"):
        open_store(settings_in(tmp_path / "file" / "var"), create=True)
