"""Saving one mailbox from the form into the stored settings, under the settings file's
rules, refusing an edit of settings that changed since the form was opened.

The check and the write are one transaction that holds the settings version (the lock every
settings writer takes), so of two saves from one revision only the first passes, and a
refused save writes nothing.
"""

from __future__ import annotations

import copy
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from contracts.settings import HelpdeskSettings, MailboxSettings, SettingsFile
from services.runtime.config_store import ConfigStore
from services.runtime.crypto import SecretBox
from services.runtime.errors import ConfigError
from services.runtime.mailbox_health import MailboxHealth
from services.runtime.settings_version import hold_settings_version
from services.runtime.store import Store
from services.web.mailbox_fields import FIELDS, default_port
from services.web.mailbox_form import ParsedForm, parse_form
from services.web.settings_errors import Target, form_errors

PAUSED_IN_PAGE = (
    "settings changed in the admin page by {admin}; enable the mailbox to resume fetching"
)
CONFLICT = (
    "this mailbox or its help desk was changed by someone else since you opened it; reload "
    "to see their change, then make yours again"
)
GONE = (
    "help desk {desk!r} has no mailbox {name!r}: it was removed or renamed since you opened "
    "it; reload the list"
)


@dataclass(frozen=True)
class Saved:
    mailbox: str
    helpdesk: str
    #: Names of the form fields whose value changed (never their values); a secret is here
    #: when it was set or cleared.
    changed: list[str]
    #: Fetching was paused because the mailbox's own settings changed (or it is new).
    paused: bool


@dataclass(frozen=True)
class Refused:
    #: Form field -> what is wrong and the fix; "" for the form as a whole.
    errors: dict[str, str]
    #: Someone else saved since the form was opened: nothing was written.
    conflict: bool = False


class _Refusal(Exception):
    """Ends the save's transaction with nothing written."""

    def __init__(self, refused: Refused) -> None:
        super().__init__()
        self.refused = refused


class MailboxSaver:
    """``redirect_url``: the redirect URL OAuth mailboxes saved here get (the page's own
    consent callback); None keeps each mailbox's, or the settings' default."""

    def __init__(
        self,
        store: Store,
        config: ConfigStore,
        box: SecretBox,
        health: MailboxHealth,
        *,
        redirect_url: str | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._box = box
        self._health = health
        self._redirect_url = redirect_url

    def revision(self, helpdesk_id: str, mailbox_name: str | None) -> str:
        """The content revision of a mailbox and its help desk (of the help desk alone for
        ``mailbox_name`` None), for the form to send back with ``save``. Raises
        ``ConfigError`` when either is not configured."""
        settings = self._config.stored_settings()
        _, desk = _helpdesk(settings, helpdesk_id)
        old = None if mailbox_name is None else _mailbox(desk, mailbox_name)
        return self._revision_of(desk, old)

    def save(
        self,
        helpdesk_id: str,
        original_name: str | None,
        form: Mapping[str, str],
        expected_revision: str | None,
        admin: str,
    ) -> Saved | Refused:
        """Save the form as the mailbox ``original_name`` (None: a new mailbox) of the help
        desk. ``expected_revision``: ``revision`` when the form was opened; required for an
        existing mailbox."""
        parsed, errors = parse_form(form)
        if errors:
            return Refused(errors)
        try:
            with self._store.batch():
                return self._save(helpdesk_id, original_name, parsed, expected_revision, admin)
        except _Refusal as refusal:
            return refusal.refused

    def _save(
        self,
        helpdesk_id: str,
        original_name: str | None,
        parsed: ParsedForm,
        expected_revision: str | None,
        admin: str,
    ) -> Saved:
        with self._store.transaction() as conn:
            hold_settings_version(conn)
        try:
            current = self._config.stored_settings()
            index, desk = _helpdesk(current, helpdesk_id)
        except ConfigError as exc:
            raise _Refusal(Refused({"": str(exc)})) from None
        try:
            old = None if original_name is None else _mailbox(desk, original_name)
        except ConfigError as exc:
            raise _Refusal(Refused({"": str(exc)}, conflict=True)) from None
        if old is not None and expected_revision is None:
            raise _Refusal(Refused({"": CONFLICT}, conflict=True))
        if expected_revision is not None and not hmac.compare_digest(
            expected_revision, self._revision_of(desk, old)
        ):
            raise _Refusal(Refused({"": CONFLICT}, conflict=True))
        data = _with_mailbox(current, index, old, self._mailbox_data(parsed, old))
        edited = _merged(data["helpdesks"][-1], parsed.helpdesk)
        try:
            settings = SettingsFile.model_validate(data)
        except ValidationError as exc:
            where = Target(data, len(data["helpdesks"]) - 1, len(edited["mailboxes"]) - 1)
            raise _Refusal(Refused(form_errors(exc, where))) from None
        new_desk = settings.helpdesks[-1]
        new_box = new_desk.mailboxes[-1]
        changed = _changed(desk, old, new_desk, new_box)
        paused = old is None or any(f.name in changed for f in FIELDS if f.level == "mailbox")
        if changed:
            self._config.apply(settings)
        if paused:
            self._health.pause(new_box.name, PAUSED_IN_PAGE.format(admin=admin))
        return Saved(new_box.name, helpdesk_id, changed, paused)

    def _mailbox_data(self, parsed: ParsedForm, old: MailboxSettings | None) -> dict[str, Any]:
        """The mailbox's settings from the form, with what the form does not carry taken
        from the stored mailbox: secrets left blank, whether it is enabled, its redirect
        URL, and its port when the form shows the same one."""
        data = copy.deepcopy(parsed.mailbox)
        protocol, auth = data["protocol"], data["auth"]
        for spec in FIELDS:
            if spec.kind != "secret" or not spec.applies(protocol, auth):
                continue
            stored = getattr(old, spec.path[0]) if old is not None else None
            data[spec.path[0]] = parsed.secrets.get(spec.name, stored)
        if auth == "oauth":
            data["redirect_url"] = self._redirect_url or (old.redirect_url if old else None)
        if old is None:
            return data
        data["enabled"] = old.enabled
        same_port = old.port or default_port(old.protocol)
        if protocol == old.protocol and data.get("port", same_port) == same_port:
            data["port"] = old.port  # unset stays unset: it follows the protocol's default
        return data

    def _revision_of(self, desk: HelpdeskSettings, box: MailboxSettings | None) -> str:
        # Over the settings with their secrets open, so sealing them again changes nothing;
        # keyed, so the revision tells nothing about a secret.
        content = {
            "helpdesk": desk.model_dump(mode="json", exclude={"mailboxes"}),
            "mailbox": None if box is None else box.model_dump(mode="json"),
        }
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return self._box.fingerprint(canonical.encode())


def _helpdesk(settings: SettingsFile, helpdesk_id: str) -> tuple[int, HelpdeskSettings]:
    for index, desk in enumerate(settings.helpdesks):
        if desk.id == helpdesk_id:
            return index, desk
    raise ConfigError(
        f"help desk {helpdesk_id!r} is not configured: add it to the settings file and run "
        "`mailroom config apply FILE`"
    )


def _mailbox(desk: HelpdeskSettings, name: str) -> MailboxSettings:
    for box in desk.mailboxes:
        if box.name == name:
            return box
    raise ConfigError(GONE.format(desk=desk.id, name=name))


def _with_mailbox(
    settings: SettingsFile, index: int, old: MailboxSettings | None, box: dict[str, Any]
) -> dict[str, Any]:
    """The settings file as stored, with ``box`` in place of ``old`` (or added). The help
    desk is put last and the mailbox last in it: where the file's checks between mailboxes
    (names, shared mailboxes) refuse the later of two, that is the one being saved."""
    desks = [d.model_dump(mode="json") for d in settings.helpdesks]
    desk = desks.pop(index)
    desk["mailboxes"] = [b for b in desk["mailboxes"] if old is None or b["name"] != old.name] + [
        box
    ]
    return {"helpdesks": desks + [desk]}


def _merged(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merged(target[key], value)
        else:
            target[key] = value
    return target


def _changed(
    desk: HelpdeskSettings,
    old: MailboxSettings | None,
    new_desk: HelpdeskSettings,
    new_box: MailboxSettings,
) -> list[str]:
    """Form fields whose value differs; for a new mailbox, those it has a value for."""
    changed = []
    for spec in FIELDS:
        after = spec.value_in(new_desk if spec.level == "helpdesk" else new_box)
        if spec.level == "helpdesk":
            differs = spec.value_in(desk) != after
        elif old is None:
            differs = spec.applies(new_box.protocol, new_box.auth) and after not in (None, [])
        else:
            differs = spec.value_in(old) != after
        if differs:
            changed.append(spec.name)
    return changed
