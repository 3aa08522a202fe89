"""Folder names in the settings, checked for the protocol that will use them.

A Maildir error folder is a Maildir++ sub-folder: the directory ``.NAME`` next to ``cur/``,
so its name is one path component, nested with dots (``Errors.Failed``). An IMAP folder name
goes to the server as it is, with the server's own hierarchy separator. POP has no folders.
"""

from __future__ import annotations

import unicodedata

MAX_FOLDER_CHARS = 200
# IMAP LIST takes these as wildcards, so a folder named with one cannot be looked up.
_IMAP_WILDCARDS = "*%"


def _control_character(name: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in name)


def maildir_folder_problem(name: str) -> str | None:
    """Why ``name`` cannot be a Maildir++ sub-folder, with the fix; None when it can."""
    if not name:
        return "is empty: name the folder, e.g. `Errors`"
    if "/" in name:
        example = ".".join(p for p in name.split("/") if p not in ("", ".", "..")) or "Errors"
        return (
            f"{name!r} holds `/`, but a Maildir++ folder is a sub-folder of the Maildir "
            f"and nests with dots: write e.g. `{example}`"
        )
    if _control_character(name):
        return f"{name!r} holds a control character: remove it"
    if name.startswith(".") or name.endswith(".") or ".." in name:
        return (
            f"{name!r} starts or ends with a dot, or has two in a row; a dot separates "
            "nested Maildir++ folders: write e.g. `Errors` or `Errors.Failed`"
        )
    if len(name) > MAX_FOLDER_CHARS:
        return f"is longer than {MAX_FOLDER_CHARS} characters: choose a shorter name"
    return None


def imap_folder_problem(name: str) -> str | None:
    """Why ``name`` cannot be an IMAP folder name, with the fix; None when it can."""
    if not name:
        return "is empty: name the folder, e.g. `Errors`"
    if _control_character(name):
        return f"{name!r} holds a control character: remove it"
    if wildcards := [c for c in _IMAP_WILDCARDS if c in name]:
        shown = " and ".join(f"`{c}`" for c in wildcards)
        return f"{name!r} holds {shown}, which IMAP reads as a wildcard: remove it"
    if name != name.strip():
        return f"{name!r} starts or ends with a space: remove it"
    if len(name) > MAX_FOLDER_CHARS:
        return f"is longer than {MAX_FOLDER_CHARS} characters: choose a shorter name"
    return None


def same_imap_folder(a: str, b: str) -> bool:
    """IMAP folder names compare exactly, except INBOX, which is INBOX in any case."""
    return a == b or a.upper() == b.upper() == "INBOX"
