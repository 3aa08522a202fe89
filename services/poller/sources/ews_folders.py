"""The inbox and the error folder of an Exchange mailbox, found without the folder map.

exchangelib's convenient paths (``inbox / "Errors"``, ``Folder(parent=...).save()``) first
load every folder of the mailbox. Here the error folder is a shallow FindFolder under the
inbox by display name, and CreateFolder under the inbox when it is missing.
"""

from __future__ import annotations

from typing import Any

from exchangelib import Account, Folder, Q
from exchangelib.errors import ErrorFolderExists
from exchangelib.folders import SHALLOW, FolderCollection
from exchangelib.services import CreateFolder


def inbox(account: Account) -> Any:
    """The inbox (two GetFolder requests the first time; exchangelib keeps it)."""
    return account.inbox


def find_error_folder(account: Account, name: str) -> Any | None:
    """The folder ``name`` directly under the inbox, or None."""
    parent = inbox(account)
    found = FolderCollection(account=account, folders=[parent]).find_folders(
        q=Q(name=name), depth=SHALLOW
    )
    # Display names compare without case on Exchange; keep the exact one when there are both.
    matches = [f for f in found if isinstance(f, Folder)]
    exact = [f for f in matches if f.name == name]
    return (exact or matches or [None])[0]


def create_error_folder(account: Account, name: str) -> Any:
    """Create ``name`` under the inbox; when another client just made it, find that one."""
    parent = inbox(account)
    created = CreateFolder(account=account).call(
        parent_folder=parent, folders=[Folder(root=parent.root, name=name)]
    )
    for folder in created:
        if isinstance(folder, ErrorFolderExists):
            return find_error_folder(account, name)
        if isinstance(folder, Exception):
            raise folder
        return folder
    raise RuntimeError(f"CreateFolder returned nothing for {name!r}")
