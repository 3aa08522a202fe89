"""Relative paths in a settings file are relative to the file, as in most tools' settings:
the same file means the same folders whichever folder ``config apply`` runs in, and the
workers, which may run anywhere, get absolute paths."""

from __future__ import annotations

import os
from pathlib import Path

from contracts.settings import SettingsFile, TlsSettings


def anchored(parsed: SettingsFile, folder: Path) -> SettingsFile:
    """``parsed`` with each Maildir ``path`` and ``tls.ca_file`` made absolute from ``folder``
    (``~`` is the home folder)."""

    def at(value: str | None) -> str | None:
        if not value:
            return value
        path = Path(value).expanduser()
        return path.as_posix() if path.is_absolute() else os.path.normpath(folder / path)

    def tls(settings: TlsSettings) -> TlsSettings:
        return settings.model_copy(update={"ca_file": at(settings.ca_file)})

    helpdesks = []
    for desk in parsed.helpdesks:
        boxes = [
            box.model_copy(update={"path": at(box.path), "tls": tls(box.tls)})
            for box in desk.mailboxes
        ]
        outgoing = desk.outgoing and desk.outgoing.model_copy(
            update={"tls": tls(desk.outgoing.tls)}
        )
        helpdesks.append(desk.model_copy(update={"mailboxes": boxes, "outgoing": outgoing}))
    return parsed.model_copy(update={"helpdesks": helpdesks})
