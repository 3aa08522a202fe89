"""Files and folders Mailroom writes: its data folder, database and key, and the zips of
decrypted error logs. They hold customer mail and secrets, so they are readable by their
owner only (folders 0700, files 0600, whatever the umask), a file is written whole or not at
all, and a link at the target is never followed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tempfile
from pathlib import Path

from contracts.file_kinds import file_kind
from services.runtime.errors import ConfigError

log = logging.getLogger(__name__)

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_folder(path: Path) -> None:
    """Make ``path`` (mode 0700) if absent; an existing folder is left as it is."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another process made it first
        path.mkdir(mode=FOLDER_MODE)
        os.chmod(path, FOLDER_MODE)  # mkdir's mode is cut by the umask


def warn_if_shared(path: Path) -> None:
    """Report a data folder others can read. It is not changed: it may be shared on purpose
    (``/srv``, a home folder), and only its owner knows."""
    if path.is_dir() and stat.S_IMODE(path.stat().st_mode) & 0o077:
        log.warning(
            "data folder %s can be read by other users; `chmod 700 %s` keeps its mail and "
            "keys private",
            path,
            path,
        )


def private_file(path: Path) -> None:
    """Make ``path`` an empty file with mode 0600 if absent; tighten it to 0600 if looser."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        os.close(os.open(path, flags, FILE_MODE))
        os.chmod(path, FILE_MODE)
        return
    except FileExistsError:
        pass
    current = path.lstat()
    if stat.S_ISREG(current.st_mode) and stat.S_IMODE(current.st_mode) & 0o077:
        try:
            os.chmod(path, FILE_MODE)
        except OSError:  # not ours, or on a read-only mount: a Kubernetes or compose secret
            log.warning("%s can be read by other users; `chmod 600 %s` fixes that", path, path)


def write_file(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` to ``path`` (mode 0600) atomically: a reader sees the old file or the
    whole new one. An existing file, or a link, is replaced only with ``replace``; the link
    itself is replaced, its target is never written.

    Raises:
        ConfigError: saying what is wrong with ``path`` and what to do instead.
    """
    folder = path.parent
    if path.is_dir() and not path.is_symlink():
        raise ConfigError(f"{path} is a folder: name a file in it, e.g. {path / 'errors.zip'}")
    if not folder.exists():
        raise ConfigError(f"folder {folder} does not exist: create it or write elsewhere")
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: write to a file in a folder")
    if (kind := _special_kind(path)) is not None:
        # A device, pipe or socket (`/dev/null`) is never replaced, --force or not: replacing
        # it would break it for every program, and put customer data in its place.
        raise ConfigError(f"{path} is {kind}, not a file, and is never replaced: name a file")
    if os.path.lexists(path) and not replace:
        raise ConfigError(f"{path} exists; add --force to replace it")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)  # replaces a link itself, never what it points to
        else:
            _link_new(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _special_kind(path: Path) -> str | None:
    """What ``path`` is when it is there and neither a file nor a link."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    except OSError:
        return None  # the write itself will say why
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return None
    return file_kind(mode)


def _link_new(tmp: str, path: Path) -> None:
    """Give the written file its name unless something took that name meanwhile."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise ConfigError(f"{path} exists; add --force to replace it") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
        # A file system without hard links: claim the name, then fill it in one step.
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        except FileExistsError:
            raise ConfigError(f"{path} exists; add --force to replace it") from None
        os.replace(tmp, path)
