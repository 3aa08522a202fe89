"""Saving a mailbox from the admin form: the settings file's rules, each refusal at its field
with nothing written, secrets kept or cleared, the mailbox paused with the reason, and an
edit of settings someone else changed meanwhile refused."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from pydantic import ValidationError

from contracts.settings import SettingsFile
from services.runtime import tables
from services.runtime.config_store import ConfigStore
from services.runtime.crypto import SecretBox
from services.runtime.mailbox_health import MailboxHealth
from services.runtime.store import Store
from services.web.mailbox_form import form_values
from services.web.mailbox_save import MailboxSaver, Refused, Saved
from services.web.settings_errors import Target, form_errors

SETTINGS: dict[str, Any] = {
    "helpdesks": [
        {
            "id": "desk",
            "outgoing": {"host": "smtp.example.com", "username": "desk", "password": "smtp-pw"},
            "mailboxes": [
                {
                    "name": "sales",
                    "protocol": "imaps",
                    "host": "mail.example.com",
                    "username": "sales",
                    "password": "sales-password",
                },
                {"name": "local", "protocol": "maildir", "path": "/srv/mail/local"},
            ],
        },
        {
            "id": "other-desk",
            "mailboxes": [
                {
                    "name": "billing",
                    "protocol": "pop",
                    "host": "pop.example.com",
                    "username": "billing",
                    "password": "billing-password",
                }
            ],
        },
    ]
}


ENTRA = {"client_id": "app", "token_url": "https://login.microsoftonline.com/t/oauth2/v2.0/token"}
US = {
    "auth": "oauth",
    "username": "u",
    "client_id": "app",
    "token_url": "https://login.microsoftonline.us/t/oauth2/v2.0/token",
}


@pytest.fixture
def key() -> SecretBox:
    return SecretBox(Fernet.generate_key())


@pytest.fixture
def config(store: Store, key: SecretBox) -> ConfigStore:
    config = ConfigStore(store, key)
    config.apply(SettingsFile.model_validate(SETTINGS))
    return config


@pytest.fixture
def saver(store: Store, config: ConfigStore, key: SecretBox) -> MailboxSaver:
    return MailboxSaver(store, config, key, MailboxHealth(store))


def fresh(store: Store, key: SecretBox) -> ConfigStore:
    """A reader of its own, as another process would read the settings."""
    return ConfigStore(store, key)


def new_imaps(**fields: str) -> dict[str, str]:
    desk = SettingsFile.model_validate(SETTINGS).helpdesks[0]
    form = form_values(desk, None, protocol="imaps")
    form |= {
        "name": "support",
        "host": "imap.example.com",
        "username": "support@example.com",
        "password": "support-password",
        "addresses": "support@example.com, help@example.com",
        "tls_verify": "on",
        "new_requests_enabled": "on",
        "error_folder_enabled": "on",
        "error_folder_notify": "on",
        "connectivity_alerts": "on",
        "attachment_stripped_notify": "on",
    }
    return form | fields


def edit_form(config: ConfigStore, mailbox: str, **fields: str) -> dict[str, str]:
    state = config.mailbox(mailbox)
    form = form_values(config.helpdesk(state.helpdesk), state.settings)
    checked = {k: "on" for k, v in form.items() if v == "true"}
    return form | checked | fields


def saved(result: Saved | Refused) -> Saved:
    assert isinstance(result, Saved), result
    return result


def refused(result: Saved | Refused) -> Refused:
    assert isinstance(result, Refused), result
    return result


def stored_rows(store: Store) -> list[Any]:
    with store.transaction() as conn:
        desks = conn.execute(sa.select(tables.helpdesks).order_by(tables.helpdesks.c.id)).all()
        boxes = conn.execute(sa.select(tables.mailboxes).order_by(tables.mailboxes.c.name)).all()
        version = conn.execute(sa.select(tables.settings_version.c.version)).scalar_one()
    return [desks, boxes, version]


def test_a_new_imaps_mailbox_is_stored_paused_with_the_reason(store, key, saver):
    result = saved(saver.save("desk", None, new_imaps(), None, "alice"))

    state = fresh(store, key).mailbox("support")
    assert state.helpdesk == "desk"
    assert state.settings.protocol == "imaps" and state.settings.port == 993
    assert state.settings.password == "support-password"
    assert state.settings.addresses == ["support@example.com", "help@example.com"]
    assert not state.enabled
    assert state.paused_reason is not None
    assert "admin page by alice" in state.paused_reason and "enable" in state.paused_reason
    assert result.paused and result.mailbox == "support"


def test_the_changed_fields_are_named_without_their_values(store, config, saver):
    rev = saver.revision("desk", "sales")
    form = edit_form(config, "sales", password="another-password", port="1993")

    result = saved(saver.save("desk", "sales", form, rev, "alice"))

    assert result.changed == ["port", "password"]
    assert "another-password" not in repr(result)


def test_an_edit_with_the_password_left_blank_keeps_the_stored_one(store, key, config, saver):
    rev = saver.revision("desk", "sales")
    form = edit_form(config, "sales", password="", fetch_every_minutes="5")

    result = saved(saver.save("desk", "sales", form, rev, "bob"))

    box = fresh(store, key).mailbox("sales").settings
    assert box.password == "sales-password"
    assert box.fetch_every_minutes == 5
    assert result.changed == ["fetch_every_minutes"]


def test_clear_removes_the_stored_password(store, key, config, saver):
    rev = saver.revision("desk", "sales")
    form = edit_form(config, "sales", password="", clear_password="on")

    result = saved(saver.save("desk", "sales", form, rev, "bob"))

    assert fresh(store, key).mailbox("sales").settings.password is None
    assert result.changed == ["password"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"protocol": "graph", "auth": "basic"}, "auth"),
        ({"protocol": "pop", "auth": "oauth"}, "auth"),
        ({"port": "70000"}, "port"),
        ({"port": "abc"}, "port"),
        ({"name": "sales"}, "name"),
        ({"name": "BILLING"}, "name"),
        ({"name": "bad name!"}, "name"),
        ({"host": ""}, "host"),
        ({"protocol": "ews", "auth": "basic"}, "connect_url"),
        ({"auth": "oauth", "client_id": "", "token_url": ""}, "client_id"),
        (
            {"auth": "oauth", "client_id": "app", "token_url": "http://login.example.com/t"},
            "token_url",
        ),
        ({"proxy": "ftp://proxy.example.com"}, "proxy"),
        ({"error_folder_name": "INBOX"}, "error_folder_name"),
        ({"new_requests_allow": "a@x.com, b@\tx.com"}, "new_requests_allow"),
        ({"restricted_extensions": "exe, a/b"}, "restricted_extensions"),
        ({"host": "mail.example.com", "username": "sales"}, "host"),
    ],
)
def test_a_refusal_lands_on_its_field_and_nothing_is_written(store, saver, fields, field):
    before = stored_rows(store)

    result = refused(saver.save("desk", None, new_imaps(**fields), None, "alice"))

    assert field in result.errors, result.errors
    assert not result.conflict
    assert stored_rows(store) == before


@pytest.mark.parametrize(
    ("mailbox", "field", "words"),
    [
        ({"protocol": "graph", "auth": "basic", "username": "u"}, "auth", "auth oauth"),
        ({"protocol": "pop", "auth": "oauth", "host": "h", "username": "u"}, "auth", "pop"),
        ({"protocol": "imaps", "host": "h", "port": 70000}, "port", "65535"),
        ({"protocol": "imaps", "host": "h", "idle": "sometimes"}, "idle", "boolean"),
        ({"protocol": "imaps", "host": "h", "auth": "oauth", **ENTRA}, "username", "consents"),
        (
            {"protocol": "ews", "connect_url": "https://a.example.com/EWS", **US},
            "connect_url",
            ".us",
        ),
        # The form shows no `idle` for POP: the refusal is the form's, naming the field.
        ({"protocol": "pop", "host": "h", "idle": True}, "", "Push delivery (IMAP IDLE): `idle`"),
    ],
)
def test_the_settings_files_own_refusals_are_placed_at_the_fields(mailbox, field, words):
    data = {"helpdesks": [{"id": "desk", "mailboxes": [{"name": "box"} | mailbox]}]}
    with pytest.raises(ValidationError) as caught:
        SettingsFile.model_validate(data)

    errors = form_errors(caught.value, Target(data, 0, 0))

    assert list(errors) == [field]
    assert words in errors[field]


def test_a_second_save_from_the_same_revision_is_a_conflict_and_writes_nothing(
    store, key, config, saver
):
    rev = saver.revision("desk", "sales")
    saved(saver.save("desk", "sales", edit_form(config, "sales", port="1993"), rev, "alice"))
    before = stored_rows(store)

    second = refused(
        saver.save("desk", "sales", edit_form(config, "sales", port="2993"), rev, "bob")
    )

    assert second.conflict
    assert "someone else" in second.errors[""] and "reload" in second.errors[""]
    assert fresh(store, key).mailbox("sales").settings.port == 1993
    assert stored_rows(store) == before


class ReadingHook(ConfigStore):
    """Runs ``hook`` once, right after the settings are read: inside a save, that is between
    its check of the revision and its write."""

    hook: Callable[[], None] | None = None

    def stored_settings(self) -> SettingsFile:
        settings = super().stored_settings()
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return settings


def test_a_save_made_while_another_is_between_check_and_write_is_a_conflict(store, key):
    config = ReadingHook(store, key)
    config.apply(SettingsFile.model_validate(SETTINGS))
    saver = MailboxSaver(store, config, key, MailboxHealth(store))
    rev = saver.revision("desk", "sales")
    forms = [edit_form(config, "sales", port=str(port)) for port in (1993, 2993)]
    second: list[Saved | Refused] = []
    other = threading.Thread(
        target=lambda: second.append(saver.save("desk", "sales", forms[1], rev, "b"))
    )

    def let_the_other_save_run() -> None:
        other.start()
        # Were the settings not locked, the other save would pass its check now and finish.
        other.join(timeout=1)

    config.hook = let_the_other_save_run
    first = saved(saver.save("desk", "sales", forms[0], rev, "a"))
    other.join()

    assert first.changed == ["port"]
    assert refused(second[0]).conflict
    assert fresh(store, key).mailbox("sales").settings.port == 1993


def test_a_new_mailbox_opened_before_its_help_desk_changed_is_a_conflict(store, config, saver):
    rev = saver.revision("desk", None)
    form = edit_form(config, "sales", connectivity_threshold="9")
    saved(saver.save("desk", "sales", form, saver.revision("desk", "sales"), "alice"))
    before = stored_rows(store)

    result = refused(saver.save("desk", None, new_imaps(), rev, "bob"))

    assert result.conflict
    assert stored_rows(store) == before


def test_an_edit_needs_the_revision_it_was_opened_at(config, saver):
    result = refused(saver.save("desk", "sales", edit_form(config, "sales"), None, "alice"))

    assert result.conflict


def test_a_mailbox_removed_meanwhile_is_a_conflict(config, saver):
    form = edit_form(config, "sales")
    rev = saver.revision("desk", "sales")

    result = refused(saver.save("desk", "gone", form, rev, "alice"))

    assert result.conflict and "gone" in result.errors[""]


def test_a_help_desk_field_reaches_the_other_mailboxes_of_that_desk_only(store, key, config, saver):
    rev = saver.revision("desk", "sales")
    form = edit_form(config, "sales", connectivity_threshold="9")

    result = saved(saver.save("desk", "sales", form, rev, "alice"))

    reader = fresh(store, key)
    assert reader.helpdesk("desk").notifications.connectivity.consecutive_retry_threshold == 9
    assert reader.helpdesk("other-desk").notifications.connectivity.consecutive_retry_threshold == 5
    assert result.changed == ["connectivity_threshold"] and not result.paused
    assert reader.mailbox("sales").enabled and reader.mailbox("local").enabled
    assert reader.helpdesk("desk").outgoing is not None
    assert reader.helpdesk("desk").outgoing.password == "smtp-pw"


def test_a_mailbox_may_be_renamed_to_a_free_name(store, key, config, saver):
    rev = saver.revision("desk", "sales")

    result = saved(saver.save("desk", "sales", edit_form(config, "sales", name="sales2"), rev, "a"))

    names = [s.settings.name for s in fresh(store, key).mailboxes()]
    assert "sales" not in names and "sales2" in names
    assert fresh(store, key).mailbox("sales2").settings.password == "sales-password"
    assert result.mailbox == "sales2" and "name" in result.changed and result.paused


def test_saving_an_unchanged_form_writes_nothing_and_pauses_nothing(store, config, saver):
    before = stored_rows(store)

    result = saved(
        saver.save(
            "desk", "sales", edit_form(config, "sales"), saver.revision("desk", "sales"), "a"
        )
    )

    assert result.changed == [] and not result.paused
    assert stored_rows(store) == before


def test_the_revision_follows_the_content_not_how_secrets_are_sealed(store, config, saver):
    first = saver.revision("desk", "sales")
    config.apply(config.stored_settings())  # seals every secret again

    assert saver.revision("desk", "sales") == first
    assert saver.revision("desk", "local") != first
    other = saver.revision("desk", "local")
    saved(saver.save("desk", "local", edit_form(config, "local", debug="on"), other, "a"))
    assert saver.revision("desk", "sales") == first  # another mailbox's edit
    rev = saver.revision("desk", "sales")
    form = edit_form(config, "sales", attachment_max_mb="20")
    saved(saver.save("desk", "sales", form, rev, "a"))
    assert saver.revision("desk", "sales") != first
    assert saver.revision("desk", "local") != other  # the help desk changed under it too


def test_stored_settings_are_what_was_applied_with_secrets_opened(config):
    def by_name(settings: SettingsFile) -> dict[str, Any]:
        return {
            d.id: (d.model_copy(update={"mailboxes": []}), {b.name: b for b in d.mailboxes})
            for d in settings.helpdesks
        }

    stored = config.stored_settings()

    assert by_name(stored) == by_name(SettingsFile.model_validate(SETTINGS))
    assert stored.helpdesks[0].mailboxes[1].password == "sales-password"
