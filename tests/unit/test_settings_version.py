"""Settings are read once and again only when ``config apply`` changed them; readers that
never log in to a mailbox read them without its secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from contracts.settings import SettingsFile
from services.runtime import tables
from services.runtime.cached_settings import CachedSettings
from services.runtime.config_store import ConfigStore
from services.runtime.crypto import SecretBox
from services.runtime.errors import ConfigError
from services.runtime.store import Store


def settings_file(
    *, allow: list[str] | None = None, password: str = "mailbox-pw", more_boxes: int = 0
) -> SettingsFile:
    support: dict[str, Any] = {
        "name": "support",
        "protocol": "imaps",
        "host": "mail.example.com",
        "username": "support",
        "password": password,
        "addresses": ["support@example.com"],
        "new_requests": {"enabled": allow is None, "allow": allow or []},
    }
    extra = [
        {"name": f"extra{i}", "protocol": "maildir", "path": f"/srv/mail/{i}"}
        for i in range(more_boxes)
    ]
    desk = {
        "id": "default",
        "outgoing": {"host": "smtp.example.com", "username": "desk", "password": "smtp-pw"},
        "mailboxes": [support, *extra],
    }
    return SettingsFile.model_validate({"helpdesks": [desk]})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'mailroom.db'}")
    store.migrate()
    return store


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(Fernet.generate_key())


def version(store: Store) -> int:
    return CachedSettings(store).current().version


def test_an_apply_that_changes_settings_raises_the_version_and_one_that_changes_nothing_not(
    store, box
):
    config = ConfigStore(store, box)
    first = version(store)

    config.apply(settings_file())
    applied = version(store)
    config.apply(settings_file())
    again = version(store)
    config.apply(settings_file(password="new-pw"))
    new_secret = version(store)
    config.apply(settings_file(password="new-pw", more_boxes=1))
    new_mailbox = version(store)

    assert applied > first
    assert again == applied, "the same file again changes nothing"
    assert new_secret > again, "a changed secret is a change, though sealed anew each time"
    assert new_mailbox > new_secret


def test_a_reader_sees_what_an_apply_changed_at_its_next_read(store, box):
    config = ConfigStore(store, box)
    config.apply(settings_file(allow=["ann@example.org"]))
    reader = CachedSettings(store)
    before = reader.current()

    config.apply(settings_file(allow=["ann@example.org", "eve@example.org"], more_boxes=1))
    after = reader.current()

    [support] = [b for b in before.mailboxes() if b.settings.name == "support"]
    assert support.settings.new_requests.allow == ["ann@example.org"]
    assert [b.settings.name for b in after.mailboxes()] == ["extra0", "support"]
    [support] = [b for b in after.mailboxes() if b.settings.name == "support"]
    assert support.settings.new_requests.allow == ["ann@example.org", "eve@example.org"]


def test_a_reader_reads_the_settings_again_only_when_their_version_moved(store, box):
    config = ConfigStore(store, box)
    config.apply(settings_file())
    reader = CachedSettings(store)
    held = reader.current()
    # A write that does not raise the version (only `config apply` writes settings)
    with store.transaction() as conn:
        conn.execute(tables.helpdesks.update().values(settings={"id": "default"}))

    assert reader.current() is held
    config.apply(settings_file())  # writes the file's settings back, which differ
    assert reader.current() is not held
    assert reader.current().helpdesk("default").outgoing is not None


def test_without_a_box_a_reader_leaves_every_secret_out(store, box):
    ConfigStore(store, box).apply(settings_file())

    current = CachedSettings(store).current()

    [support] = current.mailboxes()
    assert support.settings.password is None
    assert support.settings.username == "support"
    outgoing = current.helpdesk("default").outgoing
    assert outgoing is not None and outgoing.password is None and outgoing.host
    assert "pw" not in repr(current)


def test_a_reader_for_the_outgoing_server_opens_its_password_and_no_mailbox_secret(store, box):
    ConfigStore(store, box).apply(settings_file())

    current = CachedSettings(store, outgoing_secrets=box).current()

    outgoing = current.helpdesk("default").outgoing
    assert outgoing is not None and outgoing.password == "smtp-pw"
    [support] = current.mailboxes()
    assert support.settings.password is None


def test_a_reader_with_the_wrong_key_for_the_outgoing_server_says_so_only_for_the_help_desk(
    store, box
):
    ConfigStore(store, box).apply(settings_file())

    current = CachedSettings(store, outgoing_secrets=SecretBox(Fernet.generate_key())).current()

    assert [b.settings.name for b in current.mailboxes()] == ["support"]
    with pytest.raises(ConfigError, match="cannot decrypt"):
        current.helpdesk("default")


def test_the_poller_reads_mailbox_secrets_and_fresh_poll_state_through_the_config_store(store, box):
    config = ConfigStore(store, box)
    config.apply(settings_file())
    [before] = config.mailboxes()
    with store.transaction() as conn:  # what the poller records after a round
        conn.execute(tables.mailboxes.update().values(consecutive_failures=3, enabled=False))

    [after] = config.mailboxes()

    assert before.settings.password == after.settings.password == "mailbox-pw"
    assert (before.consecutive_failures, before.enabled) == (0, True)
    assert (after.consecutive_failures, after.enabled) == (3, False)
