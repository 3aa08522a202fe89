"""The error folder of an IMAP mailbox: finding or creating it, and moving mail in and out.

``UID MOVE`` where the server has MOVE; otherwise ``UID COPY``, ``\\Deleted`` and
``UID EXPUNGE`` (UIDPLUS), which removes exactly the moved mails.
"""

from __future__ import annotations

from imapclient import IMAPClient

from services.poller.sources.imap_session import DELETED, SEEN, ImapSession
from services.runtime.errors import InfraError


class ErrorFolder:
    """The folder named by ``error_folder.name``, inside the personal namespace if needed."""

    def __init__(self, session: ImapSession) -> None:
        self._session = session
        self._name = session.box.error_folder.name
        self._found: str | None = None

    def select(self) -> int | None:
        """Select the error folder and return its UIDVALIDITY; None when it does not exist."""
        folder = self._find()
        return None if folder is None else self._session.select(folder, missing_ok=True)

    def move_in(self, uids: list[int]) -> None:
        """Move mails of the selected folder into the error folder, creating it when missing."""
        self._move(uids, self._find() or self._create())

    def move_out(self, uids: list[int], folder: str) -> None:
        """Move mails of the (selected) error folder to ``folder``, unread again."""
        self._session.run("STORE -\\Seen", lambda c: c.remove_flags(uids, [SEEN], True))
        self._move(uids, folder)

    # -- finding and creating --------------------------------------------------------------

    def _candidates(self) -> list[str]:
        """The plain name, then the name inside the personal namespace (``INBOX.Errors`` on
        servers whose folders all live under INBOX)."""
        prefix = self._personal_prefix()
        if prefix and not self._name.startswith(prefix):
            return [self._name, prefix + self._name]
        return [self._name]

    def _personal_prefix(self) -> str:
        if not self._session.has(b"NAMESPACE"):
            return ""
        personal = self._session.run("NAMESPACE", lambda c: c.namespace()).personal
        return str(personal[0][0]) if personal else ""

    def _find(self) -> str | None:
        if self._found is None:
            exists = [f for f in self._candidates() if self._exists(f)]
            self._found = exists[0] if exists else None
        return self._found

    def _exists(self, folder: str) -> bool:
        return bool(self._session.run(f"LIST {folder}", lambda c: c.folder_exists(folder)))

    def _create(self) -> str:
        folder = self._candidates()[-1]
        try:
            self._session.run(f"CREATE {folder}", lambda c: c.create_folder(folder))
        except InfraError:
            # Another poller may have created it meanwhile; only a folder still missing fails.
            if not self._exists(folder):
                raise
        self._found = folder
        return folder

    # -- moving ----------------------------------------------------------------------------

    def _move(self, uids: list[int], folder: str) -> None:
        if self._session.has(b"MOVE"):
            self._session.run(f"MOVE to {folder}", lambda c: c.move(uids, folder))
        else:
            self._session.run(f"COPY to {folder}", lambda c: _copy_and_expunge(c, uids, folder))


def _copy_and_expunge(client: IMAPClient, uids: list[int], folder: str) -> None:
    client.copy(uids, folder)
    client.add_flags(uids, [DELETED], silent=True)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)
    else:
        # Without UIDPLUS only a plain EXPUNGE exists; it also removes other mails someone
        # flagged \Deleted in this folder, which is what that flag asks for anyway.
        client.expunge()
