"""Files Mailroom writes: readable by their owner only, written whole, never through a link."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.runtime.errors import ConfigError
from services.runtime.private_files import (
    private_file,
    private_folder,
    warn_if_shared,
    write_file,
)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: modes must not depend on it."""
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_is_written_with_mode_0600_whatever_the_umask(tmp_path, open_umask):
    out = tmp_path / "errors.zip"

    write_file(out, b"zip")

    assert out.read_bytes() == b"zip"
    assert mode(out) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["errors.zip"], "no temporary file is left"


def test_an_existing_file_is_kept_unless_replacing_is_asked_for(tmp_path):
    out = tmp_path / "errors.zip"
    out.write_bytes(b"twelve logs")

    with pytest.raises(ConfigError, match=r"errors.zip exists; add --force to replace it"):
        write_file(out, b"")

    assert out.read_bytes() == b"twelve logs"
    write_file(out, b"new", replace=True)
    assert out.read_bytes() == b"new" and mode(out) == 0o600


def test_a_symlink_at_the_target_is_never_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    link = tmp_path / "errors.zip"
    link.symlink_to(victim)

    with pytest.raises(ConfigError, match="exists"):
        write_file(link, b"zip")
    write_file(link, b"zip", replace=True)

    assert victim.read_bytes() == b"precious"
    assert not link.is_symlink() and link.read_bytes() == b"zip"


def test_a_dangling_symlink_is_not_written_through(tmp_path):
    link = tmp_path / "errors.zip"
    link.symlink_to(tmp_path / "elsewhere.zip")

    with pytest.raises(ConfigError, match="exists"):
        write_file(link, b"zip")

    assert not (tmp_path / "elsewhere.zip").exists()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (".", r"is a folder: name a file in it, e\.g\. .*/errors\.zip"),
        ("missing/errors.zip", r"folder .*missing does not exist: create it or write elsewhere"),
        ("file.txt/errors.zip", r"file\.txt is not a folder"),
    ],
)
def test_a_target_that_cannot_be_a_file_is_a_clear_error(tmp_path, target, message):
    (tmp_path / "file.txt").write_text("x")

    with pytest.raises(ConfigError, match=message):
        write_file(tmp_path / target, b"zip", replace=True)


def test_a_folder_without_write_permission_is_a_clear_error():
    locked = Path("/sys")  # refuses new files to every user, root included

    with pytest.raises(ConfigError, match="cannot write /sys/errors.zip: Permission denied"):
        write_file(locked / "errors.zip", b"zip")


def test_a_private_folder_is_made_0700_and_a_private_file_0600(tmp_path, open_umask):
    folder = tmp_path / "state" / "mailroom"

    private_folder(folder)
    private_file(folder / "mailroom.db")

    assert mode(folder) == 0o700
    assert mode(folder / "mailroom.db") == 0o600


def test_a_looser_file_is_tightened_and_a_looser_folder_is_reported(tmp_path, caplog):
    folder = tmp_path / "var"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    db = folder / "mailroom.db"
    db.write_bytes(b"")
    os.chmod(db, 0o644)

    private_folder(folder)
    warn_if_shared(folder)
    private_file(db)

    assert mode(db) == 0o600
    assert mode(folder) == 0o755, "a folder may be shared: it is not changed behind one's back"
    assert f"chmod 700 {folder}" in caplog.text


def test_a_looser_file_that_cannot_be_changed_is_used_and_reported(tmp_path, caplog, monkeypatch):
    """A key file mounted read-only (a Kubernetes secret through subPath, a compose secret)
    is the operator's to set: Mailroom uses it and says what is loose, never stops on it."""
    key = tmp_path / "secret-key"
    key.write_bytes(b"key")
    os.chmod(key, 0o444)

    def read_only(path: object, mode: int) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(os, "chmod", read_only)
    private_file(key)

    assert mode(key) == 0o444
    assert f"chmod 600 {key}" in caplog.text


def test_a_named_pipe_is_never_replaced_even_with_force(tmp_path):
    # As /dev/null would be: replacing it puts customer data where every program writes
    pipe = tmp_path / "errors.zip"
    os.mkfifo(pipe)

    with pytest.raises(ConfigError, match="is a named pipe, not a file, and is never replaced"):
        write_file(pipe, b"zip", replace=True)

    assert stat.S_ISFIFO(pipe.lstat().st_mode)
    assert os.listdir(tmp_path) == ["errors.zip"], "no temporary file is left"
