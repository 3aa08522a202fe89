"""Help-desk and mailbox settings held in memory, read again from the store only when the
settings version moved (``mailroom config apply`` raises it).

A stage asks for them with every message: that costs one small query while nothing changed,
instead of reading, validating and decrypting every setting.

Secrets are opened only with a box given for them. The stages that never log in to a mailbox
(validator, router, notifier) get no box for mailbox secrets: they read mailbox settings with
every secret left out (None). The notifier gets one for the help desks' outgoing password,
which it logs in to its outgoing server with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from contracts.settings import SECRET_FIELDS, HelpdeskSettings, MailboxSettings, problems_of
from services.runtime import tables
from services.runtime.crypto import SecretBox
from services.runtime.errors import ConfigError
from services.runtime.settings_version import settings_version
from services.runtime.store import Store

M = TypeVar("M", bound=BaseModel)

_HELPDESKS = sa.select(tables.helpdesks.c.id, tables.helpdesks.c.settings)
_MAILBOXES = sa.select(
    tables.mailboxes.c.name, tables.mailboxes.c.helpdesk_id, tables.mailboxes.c.settings
).order_by(tables.mailboxes.c.name)


@dataclass(frozen=True)
class ConfiguredMailbox:
    """A mailbox's settings and its help desk; its poll state (enabled, failures) is not
    here: that changes all the time, and the poller reads it fresh."""

    settings: MailboxSettings
    helpdesk: str


@dataclass(frozen=True)
class SettingsSnapshot:
    """The settings of one version. Stored settings that this Mailroom no longer accepts
    are kept as the sentence that says so, raised as ``ConfigError`` when asked for."""

    version: int
    helpdesks: Mapping[str, HelpdeskSettings | str]
    #: Every mailbox by name, or why one of them is not accepted.
    configured: tuple[ConfiguredMailbox, ...] | str

    def helpdesk(self, helpdesk_id: str) -> HelpdeskSettings:
        """Raises ``ConfigError`` when the help desk is not configured or not accepted."""
        found = self.helpdesks.get(helpdesk_id)
        if found is None:
            raise ConfigError(
                f"help desk {helpdesk_id!r} is not configured: run `mailroom config apply FILE`"
            )
        if isinstance(found, str):
            raise ConfigError(found)
        return found

    def mailboxes(self) -> tuple[ConfiguredMailbox, ...]:
        """By name; raises ``ConfigError`` when a stored mailbox is not accepted."""
        if isinstance(self.configured, str):
            raise ConfigError(self.configured)
        return self.configured


class CachedSettings:
    """The settings as stored now; safe to share between threads (the poller's rounds).

    ``mailbox_secrets``: the box that opens mailbox secrets (only for what logs in to
    mailboxes); without it they are None. ``outgoing_secrets``: likewise for the help
    desks' outgoing server.
    """

    def __init__(
        self,
        store: Store,
        *,
        mailbox_secrets: SecretBox | None = None,
        outgoing_secrets: SecretBox | None = None,
    ) -> None:
        self._store = store
        self._mailbox_secrets = mailbox_secrets
        self._outgoing_secrets = outgoing_secrets
        self._held: SettingsSnapshot | None = None

    def current(self) -> SettingsSnapshot:
        with self._store.transaction() as conn:
            return self.current_in(conn)

    def current_in(self, conn: sa.Connection) -> SettingsSnapshot:
        """``current`` within the caller's transaction."""
        # The version is read before the settings: settings written after it are read again
        # next time, never held under a version that does not cover them.
        version = settings_version(conn)
        held = self._held
        if held is not None and held.version == version:
            return held
        # Threads that read at once each hold theirs for a moment; the last one stays (one
        # of another version is read again at the next call).
        fresh = SettingsSnapshot(version, self._helpdesks(conn), self._mailboxes(conn))
        self._held = fresh
        return fresh

    def _helpdesks(self, conn: sa.Connection) -> dict[str, HelpdeskSettings | str]:
        found: dict[str, HelpdeskSettings | str] = {}
        for row in conn.execute(_HELPDESKS):
            data = dict(row.settings)
            try:
                if data.get("outgoing"):
                    data["outgoing"] = with_secrets(data["outgoing"], self._outgoing_secrets)
                found[row.id] = stored(HelpdeskSettings, data, f"help desk {row.id!r}")
            except ConfigError as exc:
                found[row.id] = str(exc)
        return found

    def _mailboxes(self, conn: sa.Connection) -> tuple[ConfiguredMailbox, ...] | str:
        configured = []
        try:
            for row in conn.execute(_MAILBOXES):
                data = with_secrets(dict(row.settings), self._mailbox_secrets)
                settings = stored(MailboxSettings, data, f"mailbox {row.name!r}")
                configured.append(ConfiguredMailbox(settings, row.helpdesk_id))
        except ConfigError as exc:
            return str(exc)
        return tuple(configured)


def with_secrets(data: dict[str, Any], box: SecretBox | None) -> dict[str, Any]:
    """Stored settings with their secrets opened by ``box``, or left out without one.
    Raises ``ConfigError`` when ``box`` has not the key they were sealed with."""
    if box is None:
        return {k: (None if k in SECRET_FIELDS else v) for k, v in data.items()}
    return {k: (box.unseal(v) if k in SECRET_FIELDS and v else v) for k, v in data.items()}


def stored(model: type[M], data: dict[str, Any], what: str) -> M:
    """Stored settings as ``model``; raises ``ConfigError`` when a newer Mailroom no longer
    accepts what an older one stored (the message never holds a secret)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(problems_of(exc))
        raise ConfigError(
            f"the stored settings of {what} are no longer accepted ({problems}): correct the "
            "settings file and run `mailroom config apply FILE`"
        ) from None
