"""Settings stored by an older Mailroom that are no longer accepted are named, and can be
replaced by applying a corrected file."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from contracts.settings import SettingsFile
from services.runtime import tables
from services.runtime.config_store import ConfigStore
from services.runtime.crypto import SecretBox
from services.runtime.errors import ConfigError
from services.runtime.store import Store

SETTINGS = SettingsFile.model_validate(
    {
        "helpdesks": [
            {
                "id": "default",
                "attachments": {"restricted_extensions": ["exe"]},
                "mailboxes": [{"name": "support", "protocol": "maildir", "path": "/srv/mail"}],
            }
        ]
    }
)


@pytest.fixture
def config(tmp_path: Path) -> ConfigStore:
    store = Store(f"sqlite:///{tmp_path / 'mailroom.db'}")
    store.migrate()
    config = ConfigStore(store, SecretBox(Fernet.generate_key()))
    config.apply(SETTINGS)
    # As stored before folder names and extensions were checked.
    with store.transaction() as conn:
        [settings] = conn.execute(sa.select(tables.mailboxes.c.settings)).scalars()
        settings = settings | {"error_folder": settings["error_folder"] | {"name": "../x"}}
        conn.execute(tables.mailboxes.update().values(settings=settings))
        [desk] = conn.execute(sa.select(tables.helpdesks.c.settings)).scalars()
        desk = desk | {"attachments": desk["attachments"] | {"restricted_extensions": ["P S1"]}}
        conn.execute(tables.helpdesks.update().values(settings=desk))
    return config


def test_a_stored_mailbox_no_longer_accepted_is_named_with_the_fix(config):
    with pytest.raises(ConfigError) as caught:
        config.mailboxes()

    message = str(caught.value)
    assert "mailbox 'support'" in message
    assert "error_folder.name" in message
    assert "mailroom config apply" in message


def test_a_stored_help_desk_no_longer_accepted_is_named_with_the_fix(config):
    with pytest.raises(ConfigError) as caught:
        config.helpdesk("default")

    message = str(caught.value)
    assert "help desk 'default'" in message
    assert "restricted_extensions[0]" in message
    assert "mailroom config apply" in message


def test_a_corrected_file_can_be_applied_over_them(config):
    result = config.apply(SETTINGS)

    assert result.paused == ["support"]
    assert config.mailbox("support").settings.error_folder.name == "Errors"
    assert config.helpdesk("default").attachments.restricted_extensions == ["exe"]
