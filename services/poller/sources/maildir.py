"""A local Maildir (``protocol: maildir``); the error folder is a Maildir++ sub-folder.

A mail in ``new/``, or in ``cur/`` without the ``S`` (seen) flag, is new. Handing it off moves
it to ``cur/`` with ``S`` added, as a mail client marks a mail read.

No move ever replaces a file: two files of one key (a handled mail copied back into
``new/``) are two mails Mailroom cannot tell apart, so the unread one is not downloaded and
goes to the dead-letter queue with the reason. What cannot be marked stays where it is, and
the store remembers it (``SourceState``), so it is not fetched again until moved back.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from contracts.file_kinds import file_kind
from contracts.settings import MailboxSettings
from services.poller.sources.base import Fetched, NotMarked, SourceState
from services.poller.sources.needs import SourceNeeds
from services.runtime.errors import ConfigError, InfraError
from services.runtime.mail_text import message_id_of

log = logging.getLogger(__name__)

INFO_SEP = ":2,"
#: Why the store remembers a mail that stays unread in the inbox: dead-lettered without
#: hand-off ("skipped"), or handed off but impossible to mark ("unmarked").
LEFT_IN_PLACE = ("skipped", "unmarked")
MB = 1024 * 1024
#: A file's copies by key: (flags, path) of each.
Index = dict[str, list[tuple[str, Path]]]


def split_name(name: str) -> tuple[str, str]:
    """(key, flags) of a Maildir file name: the key is the part before ``:2,``."""
    key, _, flags = name.partition(INFO_SEP)
    return key, flags


class MaildirSource:
    supports_error_folder = True

    def __init__(
        self,
        path: str | Path,
        *,
        mailbox: str,
        error_folder: str = "Errors",
        state: SourceState | None = None,
        max_mail_mb: float = 50,
    ) -> None:
        self.path = Path(path)
        self.max_mail_mb = max_mail_mb
        self.mailbox = mailbox
        self.error_folder = error_folder
        self.error_path = self.path / f".{error_folder}"
        self._state = state
        self._require_maildir()

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
        # As a mail file that is a link: new/ linked to /etc would make its files mails.
        if links := [d for d in ("cur", "new", "tmp") if (self.path / d).is_symlink()]:
            raise ConfigError(
                f"mailbox {self.mailbox!r}: {', '.join(f'{d}/' for d in links)} in {self.path} "
                "is a symbolic link, which is never followed: make it a folder"
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
                    key, flags = split_name(name)
                    yield _ref(key), flags, root / sub / name

    def _unmarked(self) -> list[tuple[str, Path]]:
        left = self._left_in_place()
        found = [
            (key, p)
            for key, flags, p in self._entries(self.path)
            if "S" not in flags and key not in left
        ]
        return sorted(found, key=lambda kp: (_mtime(kp[1]), kp[0]))

    def _left_in_place(self) -> set[str]:
        if self._state is None:
            return set()
        return set().union(*(self._state.taken_refs(reason) for reason in LEFT_IN_PLACE))

    def _index(self, root: Path) -> Index:
        index: Index = {}
        for key, flags, p in self._entries(root):
            index.setdefault(key, []).append((flags, p))
        return index

    def list_new(self, limit: int) -> list[str]:
        return [key for key, _ in self._unmarked()[:limit]]

    def fetch_raw(self, ref: str) -> bytes:
        copy = _unread(self._index(self.path).get(ref, []))
        if copy is None:
            raise InfraError(f"mail {ref} vanished from {self.path}")
        try:
            return _read_mail_file(copy[1], self.max_mail_mb)
        except NotAMailFile as exc:
            raise ConfigError(f"mail {ref} in {self.path}: {exc}") from exc
        except OSError as exc:
            raise InfraError(f"cannot read {copy[1]}: {exc.strerror}") from exc

    def fetch_many(self, refs: Sequence[str]) -> Iterator[Fetched]:
        """Each unread mail's bytes. One that cannot be read or marked comes back with
        ``raw=None`` and why; one gone meanwhile is left out."""
        index = self._index(self.path)
        for ref in refs:
            copies = index.get(ref, [])
            copy = _unread(copies)
            item = None if copy is None else self._read(ref, copy, copies)
            if item is None:
                log.info("mailbox=%s mail %s left the Maildir; skipped", self.mailbox, ref)
            else:
                yield item

    def _read(
        self, ref: str, copy: tuple[str, Path], copies: list[tuple[str, Path]]
    ) -> Fetched | None:
        flags, path = copy
        if (why := self._unmarkable(ref, flags, copies)) is not None:
            return Fetched(ref, None, skipped=why, error_class="MailUnmarkable")
        try:
            return Fetched(ref, _read_mail_file(path, self.max_mail_mb))
        except FileNotFoundError:
            return None
        except NotAMailFile as exc:
            return Fetched(ref, None, skipped=str(exc), error_class=exc.error_class)
        except OSError as exc:
            why = f"the file {_ref(str(path))} cannot be read: {exc.strerror}"
            return Fetched(ref, None, skipped=why, error_class="MailUnreadable")

    def _unmarkable(self, ref: str, flags: str, copies: list[tuple[str, Path]]) -> str | None:
        """Why this mail could not be marked as read, checked before it is handed off."""
        if len(copies) > 1:
            where = ", ".join(_ref(str(p.relative_to(self.path))) for _, p in copies)
            return (
                f"the key {ref} names {len(copies)} files ({where}): a mail copied back after "
                "it was handled, so it cannot be marked as read without replacing the other; "
                "delete the copy, or give it a new name to have it fetched as a new mail"
            )
        marked = f"{_key(copies[0][1])}{INFO_SEP}{_with_flag(flags, 'S')}"
        limit = _name_max(self.path / "cur")
        if len(os.fsencode(marked)) > limit:
            return (
                f"its file name is too long to mark it as read: {len(os.fsencode(marked))} "
                f"bytes as cur/{ref[:40]}...{INFO_SEP}S, over the file system's limit of "
                f"{limit}; give the file a shorter name to have it fetched"
            )
        return None

    def mark_handed_off(self, refs: Sequence[str]) -> None:
        """Move each unread mail to ``cur/`` with the ``S`` flag. Raises ``NotMarked`` for
        those that cannot be (after marking the rest); mails no longer unread are skipped,
        as is one moved away meanwhile (to the error folder, by a quick dead letter)."""
        index = self._index(self.path)
        failures: dict[str, str] = {}
        for ref in refs:
            if (copy := _unread(index.get(ref, []))) is None:
                continue
            flags, src = copy
            target = self.path / "cur" / f"{_key(src)}{INFO_SEP}{_with_flag(flags, 'S')}"
            if (why := _move_file(src, target)) is not None and os.path.lexists(src):
                failures[ref] = why
        if failures:
            raise NotMarked(failures)

    def move_to_error_folder(self, refs: Sequence[str]) -> None:
        self._make_error_folder()
        inbox = self._index(self.path)
        failures: dict[str, str] = {}
        for ref in refs:
            if (why := self._move_one_to_error_folder(ref, inbox)) is not None:
                failures[ref] = why
        if failures:
            detail = "; ".join(f"{ref}: {why}" for ref, why in failures.items())
            raise InfraError(f"not moved to the error folder {self.error_folder!r}: {detail}")

    def _move_one_to_error_folder(self, ref: str, inbox: Index) -> str | None:
        """Why the mail was not moved, or None. The poller may mark it read (``new/`` to
        ``cur/``) while this moves it, so a file gone meanwhile is looked for again."""
        why = None
        for _ in range(_MOVE_TRIES):
            copy = _preferred(inbox.get(ref, []))
            if copy is None:
                if ref in self._index(self.error_path):
                    return None  # in the folder already: moved by an earlier delivery
                return f"it is no longer in {self.path} (deleted or moved meanwhile)"
            flags, src = copy
            target = self.error_path / "cur" / f"{_key(src)}{INFO_SEP}{flags}"
            if (why := _move_file(src, target)) is None or os.path.lexists(src):
                return why
            inbox = self._index(self.path)
        return why

    def move_to_inbox(self, refs: Sequence[str]) -> None:
        # Back in new/ without flags: unread again, so it is fetched again.
        index = self._index(self.error_path)
        for ref in refs:
            if (copy := _preferred(index.get(ref, []))) is None:
                continue  # not in the folder: moved back already
            if (why := _move_file(copy[1], self.path / "new" / _key(copy[1]))) is not None:
                raise InfraError(f"mail {ref} not moved back to the inbox: {why}")
        if self._state is not None:
            self._state.forget(list(refs))

    def error_folder_refs(self) -> list[str]:
        return sorted({key for key, _, _ in self._entries(self.error_path)})

    def error_folder_message_ids(self) -> dict[str, str | None]:
        return {key: _message_id_in(path) for key, _, path in self._entries(self.error_path)}

    def fetch_oldest_unmarked(self) -> bytes | None:
        unmarked = self._unmarked()
        return self.fetch_raw(unmarked[0][0]) if unmarked else None

    def close(self) -> None:
        """Nothing to close: files are opened per call."""

    def _make_error_folder(self) -> None:
        inside = os.path.normpath(self.error_path)
        if os.path.dirname(inside) != os.path.normpath(self.path):
            raise ConfigError(
                f"mailbox {self.mailbox!r}: error folder {self.error_folder!r} is not a "
                f"sub-folder of {self.path}: fix `error_folder.name` (a Maildir++ name such as "
                "Errors or Errors.Failed)"
            )
        try:
            for sub in ("cur", "new", "tmp"):
                (self.error_path / sub).mkdir(parents=True, exist_ok=True)
            # Maildir++ marks a sub-folder with this file, so mail clients list it.
            (self.error_path / "maildirfolder").touch()
        except OSError as exc:
            raise InfraError(
                f"cannot make the error folder {self.error_path}: {exc.strerror}"
            ) from exc


#: How often a mail renamed under a move (marked read meanwhile) is looked for again.
_MOVE_TRIES = 3


def _ref(key: str) -> str:
    """The ref of a file name's key. A name that is not UTF-8 (its bytes arrive as
    surrogates) is spelled with ``\\xNN`` escapes, so that it can be stored, logged and
    hashed like any other; the file keeps its own name (see ``_key``)."""
    raw = key.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace")


def _key(path: Path) -> str:
    """The key in the file's own name, as the file system spells it."""
    return split_name(path.name)[0]


def _unread(copies: list[tuple[str, Path]]) -> tuple[str, Path] | None:
    return next((c for c in copies if "S" not in c[0]), None)


def _preferred(copies: list[tuple[str, Path]]) -> tuple[str, Path] | None:
    """The unread copy when there is one (the one the poller handles), else any."""
    return _unread(copies) or (copies[0] if copies else None)


def _with_flag(flags: str, flag: str) -> str:
    return "".join(sorted(set(flags) | {flag}))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _move_file(src: Path, dst: Path) -> str | None:
    """Rename ``src`` to ``dst``, never over another file; returns why it did not happen,
    or None when it did (also when another poller did it first)."""
    if os.path.lexists(dst):
        return f"{dst} is already there, and is not replaced"
    try:
        os.rename(src, dst)
    except FileNotFoundError:
        if os.path.lexists(src):
            return f"cannot move it to {dst}: {dst.parent} does not exist"
        if not os.path.lexists(dst):
            return f"it is no longer at {src} (deleted or moved meanwhile)"
    except OSError as exc:
        return f"cannot move it to {dst}: {exc.strerror}"
    return None


def _message_id_in(path: Path) -> str | None:
    """The Message-ID of the mail in ``path``, from its first 64 KiB; None when unreadable."""
    try:
        return message_id_of(_read_mail_file(path, None, head=65536))
    except (OSError, NotAMailFile):
        return None


class NotAMailFile(Exception):
    """A Maildir entry that is no mail to read: why, as a sentence for the DLQ."""

    def __init__(self, why: str, error_class: str = "MailUnreadable") -> None:
        super().__init__(why)
        self.error_class = error_class


def _read_mail_file(path: Path, max_mail_mb: float | None, *, head: int | None = None) -> bytes:
    """The bytes of the regular file at ``path`` (its first ``head`` bytes when given).

    Anyone who can write to the Maildir can put anything in it. A named pipe would block
    the round for ever, a device would be read for ever, and a symbolic link could hand any
    file on this host (``/etc/shadow``) to a request: only a regular file is read, opened
    without following a link or waiting on a pipe, and one over ``max_mail_mb`` is refused by
    its size before any of it is read.
    """
    _require_regular(path, os.lstat(path).st_mode)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    with os.fdopen(os.open(path, flags), "rb") as mail:
        info = os.fstat(mail.fileno())  # the file opened, should it have been swapped
        _require_regular(path, info.st_mode)
        if max_mail_mb is not None and info.st_size > max_mail_mb * MB:
            raise NotAMailFile(
                f"the mail is {info.st_size / MB:.1f} MB, over this mailbox's limit of "
                f"{max_mail_mb:g} MB (max_mail_mb)",
                error_class="MailTooLarge",
            )
        return mail.read() if head is None else mail.read(head)


def _require_regular(path: Path, mode: int) -> None:
    if stat.S_ISLNK(mode):
        raise NotAMailFile(
            f"{_ref(path.name)!r} is a symbolic link, which is never followed: put the mail "
            "itself in the Maildir"
        )
    if not stat.S_ISREG(mode):
        raise NotAMailFile(
            f"{_ref(path.name)!r} is {file_kind(mode)}, not a mail file: remove it from "
            f"{_ref(path.parent.name)}/"
        )


def open_maildir(box: MailboxSettings, state: SourceState, needs: SourceNeeds) -> MaildirSource:
    """The ``SOURCES`` factory for ``maildir``.

    A Maildir keeps its state in file names (the S flag); the store remembers only mail left
    unread because it could not be marked."""
    return MaildirSource(
        box.path or "",
        mailbox=box.name,
        error_folder=box.error_folder.name,
        state=state,
        max_mail_mb=box.max_mail_mb,
    )
