"""Secret settings: every one is sealed in the store and masked when shown, from one list."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from pydantic import BaseModel

from contracts.settings import SECRET_FIELDS, SettingsFile
from services import render
from services.runtime import tables
from services.runtime.config_store import ConfigStore
from services.runtime.crypto import SecretBox
from services.runtime.store import Store

# Every secret field of the settings file, by the model that holds it. A new secret field
# must be added here, which runs it through the checks below.
SECRETS = [
    ("MailboxSettings", "password"),
    ("MailboxSettings", "client_secret"),
    ("OutgoingSettings", "password"),
]
LOOKS_SECRET = re.compile(r"password|secret|passphrase|api_key|^token$|access_token")


def settings_models(model: type[BaseModel] = SettingsFile) -> set[type[BaseModel]]:
    """``model`` and every model reachable through its fields."""
    found = {model}
    for field in model.model_fields.values():
        for inner in _models_in(field.annotation):
            if inner not in found:
                found |= settings_models(inner)
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def marked_secret() -> set[tuple[str, str]]:
    return {
        (model.__name__, name)
        for model in settings_models()
        for name in model.model_fields
        if name in SECRET_FIELDS
    }


def test_the_table_lists_every_secret_field_of_the_settings_file():
    assert marked_secret() == set(SECRETS)


def test_every_field_named_like_a_credential_is_marked_secret():
    credentials = {
        (model.__name__, name)
        for model in settings_models()
        for name in model.model_fields
        if LOOKS_SECRET.search(name)
    }

    assert credentials <= set(SECRETS)


def settings_holding(value: str, model: str, field: str) -> SettingsFile:
    box: dict[str, Any] = {"name": "support", "protocol": "imaps", "host": "mail.example.com"}
    outgoing: dict[str, Any] = {"host": "smtp.example.com", "security": "ssl"}
    (box if model == "MailboxSettings" else outgoing)[field] = value
    desk = {"id": "default", "outgoing": outgoing, "mailboxes": [box]}
    return SettingsFile.model_validate({"helpdesks": [desk]})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'mailroom.db'}")
    store.migrate()
    return store


@pytest.mark.parametrize(("model", "field"), SECRETS)
def test_a_secret_is_sealed_in_the_store_and_read_back_as_written(store, model, field):
    config = ConfigStore(store, SecretBox(Fernet.generate_key()))

    config.apply(settings_holding("Top-Secret-Value", model, field))

    with store.transaction() as conn:
        rows = [
            *conn.execute(sa.select(tables.helpdesks.c.settings)).scalars(),
            *conn.execute(sa.select(tables.mailboxes.c.settings)).scalars(),
        ]
    assert "Top-Secret-Value" not in repr(rows)
    if model == "MailboxSettings":
        assert getattr(config.mailbox("support").settings, field) == "Top-Secret-Value"
    else:
        outgoing = config.helpdesk("default").outgoing
        assert outgoing is not None
        assert getattr(outgoing, field) == "Top-Secret-Value"


@pytest.mark.parametrize(("model", "field"), [s for s in SECRETS if s[0] == "MailboxSettings"])
def test_a_mailbox_secret_is_masked_when_shown(store, model, field):
    config = ConfigStore(store, SecretBox(Fernet.generate_key()))
    config.apply(settings_holding("Top-Secret-Value", model, field))

    shown = render.mailbox_detail(config.mailbox("support"), None)

    assert shown["settings"][field] == "********"
    assert "Top-Secret-Value" not in repr(shown)
