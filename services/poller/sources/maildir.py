"""A local Maildir (``protocol: maildir``); the error folder is a Maildir++ sub-folder.

A mail in ``new/``, or in ``cur/`` without the ``S`` (seen) flag, is new. Handing it off moves
it to ``cur/`` with ``S`` added, as a mail client marks a mail read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from services.poller.sources.base import Fetched
from services.runtime.errors import ConfigError, InfraError
from services.runtime.mail_text import message_id_of

INFO_SEP = ":2,"


def split_name(name: str) -> tuple[str, str]:
    """(key, flags) of a Maildir file name: the key is the part before ``:2,``."""
    key, _, flags = name.partition(INFO_SEP)
    return key, flags


class MaildirSource:
    supports_error_folder = True

    def __init__(self, path: str | Path, *, mailbox: str, error_folder: str = "Errors") -> None:
        self.path = Path(path)
        self.mailbox = mailbox
        self.error_path = self.path / f".{error_folder}"
        self._require_maildir()
        self._require_inside(error_folder)

    def _require_inside(self, error_folder: str) -> None:
        """The error folder must be a sub-folder of this Maildir, never a path out of it."""
        resolved = Path(os.path.normpath(self.error_path))
        if resolved.parent != Path(os.path.normpath(self.path)):
            raise ConfigError(
                f"mailbox {self.mailbox!r}: error folder {error_folder!r} would be {resolved}, "
                "not a sub-folder of the Maildir: fix `error_folder.name` (a Maildir++ name "
                "such as Errors or Errors.Failed)"
            )

    def _require_maildir(self) -> None:
        missing = [d for d in ("cur", "new", "tmp") if not (self.path / d).is_dir()]
        if not self.path.is_dir():
            raise ConfigError(
                f"mailbox {self.mailbox!r}: Maildir folder {self.path} does not exist; "
                "create it or fix `path`"
            )
        if missing:
            raise ConfigError(
                f"mailbox {self.mailbox!r}: {self.path} is not a Maildir "
                f"(no {', '.join(missing)}/); "
                "point `path` at the folder that holds cur/, new/ and tmp/"
            )

    def _entries(self, root: Path) -> Iterator[tuple[str, str, Path]]:
        """(key, flags, path) for every mail under ``root``."""
        for sub in ("new", "cur"):
            try:
                names = os.listdir(root / sub)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise InfraError(f"cannot read {root / sub}: {exc.strerror}") from exc
            for name in names:
                if not name.startswith("."):
                    yield (*split_name(name), root / sub / name)

    def _unmarked(self) -> list[tuple[str, Path]]:
        found = [(key, p) for key, flags, p in self._entries(self.path) if "S" not in flags]
        return sorted(found, key=lambda kp: (_mtime(kp[1]), kp[0]))

    def _index(self, root: Path) -> dict[str, tuple[str, Path]]:
        return {key: (flags, p) for key, flags, p in self._entries(root)}

    def _find(self, root: Path, key: str) -> tuple[str, Path] | None:
        direct = root / "new" / key
        if direct.is_file():  # the common case: a new mail not yet renamed
            return "", direct
        return self._index(root).get(key)

    def list_new(self, limit: int) -> list[str]:
        return [key for key, _ in self._unmarked()[:limit]]

    def fetch_raw(self, ref: str) -> bytes:
        found = self._find(self.path, ref)
        if found is None:
            raise InfraError(f"mail {ref} vanished from {self.path}")
        try:
            return found[1].read_bytes()
        except OSError as exc:
            raise InfraError(f"cannot read {found[1]}: {exc.strerror}") from exc

    def fetch_many(self, refs: Sequence[str]) -> Iterator[Fetched]:
        for ref in refs:
            yield Fetched(ref, self.fetch_raw(ref))

    def mark_handed_off(self, refs: Sequence[str]) -> None:
        self._move(
            refs, self.path, lambda ref, flags: f"cur/{ref}{INFO_SEP}{_with_flag(flags, 'S')}"
        )

    def move_to_error_folder(self, refs: Sequence[str]) -> None:
        self._make_error_folder()
        self._move(
            refs, self.path, lambda ref, flags: f"{self.error_path.name}/cur/{ref}{INFO_SEP}{flags}"
        )

    def move_to_inbox(self, refs: Sequence[str]) -> None:
        # Back in new/ without flags: unread again, so it is fetched again.
        self._move(refs, self.error_path, lambda ref, _flags: f"new/{ref}")

    def _move(self, refs: Sequence[str], root: Path, target: Callable[[str, str], str]) -> None:
        """Rename each mail found under ``root`` to ``target(ref, flags)``, relative to the inbox;
        refs not found are skipped (already moved)."""
        index = self._index(root)
        for ref in refs:
            if (found := index.get(ref)) is not None:
                _rename(found[1], self.path / target(ref, found[0]))

    def error_folder_refs(self) -> list[str]:
        return sorted(key for key, _, _ in self._entries(self.error_path))

    def error_folder_message_ids(self) -> dict[str, str | None]:
        return {key: _message_id_in(path) for key, _, path in self._entries(self.error_path)}

    def fetch_oldest_unmarked(self) -> bytes | None:
        unmarked = self._unmarked()
        return self.fetch_raw(unmarked[0][0]) if unmarked else None

    def close(self) -> None:
        """Nothing to close: files are opened per call."""

    def _make_error_folder(self) -> None:
        for sub in ("cur", "new", "tmp"):
            (self.error_path / sub).mkdir(parents=True, exist_ok=True)
        # Maildir++ marks a sub-folder with this file, so mail clients list it.
        (self.error_path / "maildirfolder").touch()


def _with_flag(flags: str, flag: str) -> str:
    return "".join(sorted(set(flags) | {flag}))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _rename(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except FileNotFoundError:
        pass  # another poller moved it first; the move is idempotent
    except OSError as exc:
        raise InfraError(f"cannot move {src} to {dst}: {exc.strerror}") from exc


def _message_id_in(path: Path) -> str | None:
    """The Message-ID of the mail in ``path``, from its first 64 KiB; None when unreadable."""
    try:
        with path.open("rb") as mail:
            return message_id_of(mail.read(65536))
    except OSError:
        return None
