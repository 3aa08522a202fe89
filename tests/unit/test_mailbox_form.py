"""The mailbox form: the fields each protocol and authentication shows, the values it starts
with, form data read back into settings with an error at each wrong field, and secrets that
never go back to the browser."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.settings import HelpdeskSettings, MailboxSettings
from services.web.mailbox_form import (
    CLOUDS,
    FIELDS,
    MAX_CHARS,
    PROTOCOLS,
    auth_choices,
    default_port,
    default_values,
    fields_for,
    form_values,
    parse_form,
    secret_state,
)

DESK = HelpdeskSettings.model_validate(
    {
        "id": "desk",
        "attachments": {"max_size_mb": 12.5, "restricted_extensions": ["exe", "js"]},
        "notifications": {"connectivity": {"consecutive_retry_threshold": 7, "enabled": False}},
    }
)


def names(protocol: str, auth: str) -> set[str]:
    return {f.name for f in fields_for(protocol, auth)}


def imaps_form(**fields: str) -> dict[str, str]:
    form = {
        "name": "support",
        "protocol": "imaps",
        "auth": "basic",
        "host": "imap.example.com",
        "port": "993",
        "username": "support",
        "fetch_every_minutes": "2",
    }
    return form | fields


def test_the_protocols_are_those_of_the_reference_product_plus_maildir():
    assert list(PROTOCOLS.values())[:6] == [
        "POP",
        "POPS",
        "IMAP",
        "IMAPS",
        "EWS",
        "Microsoft Graph",
    ]
    assert "Maildir" in PROTOCOLS["maildir"]


def minimal(protocol: str) -> dict[str, Any]:
    where = {
        "ews": {"connect_url": "https://mail.example.com/EWS/Exchange.asmx"},
        "maildir": {"path": "/srv/mail"},
        "graph": {},
    }.get(protocol, {"host": "mail.example.com"})
    return where | {
        "name": "box",
        "protocol": protocol,
        "username": "support@example.com",
        "client_id": "app",
        "token_url": "https://login.microsoftonline.com/contoso/oauth2/v2.0/token",
    }


@pytest.mark.parametrize(
    ("protocol", "auth"), list(itertools.product(PROTOCOLS, ["basic", "oauth"]))
)
def test_the_authentications_offered_are_exactly_those_the_settings_accept(protocol, auth):
    try:
        MailboxSettings.model_validate(minimal(protocol) | {"auth": auth})
        accepted = True
    except ValidationError:
        accepted = False

    assert (auth in auth_choices(protocol)) == accepted


def test_an_imaps_mailbox_with_basic_authentication_shows_server_and_password():
    shown = names("imaps", "basic")

    assert {"host", "port", "username", "password", "addresses", "idle", "proxy"} <= shown
    assert {"debug", "fetch_every_minutes", "new_requests_enabled", "new_requests_allow"} <= shown
    assert {"error_folder_enabled", "error_folder_name", "error_folder_stop_after"} <= shown
    assert not shown & {"client_id", "client_secret", "token_url", "connect_url", "path"}
    assert not shown & {"graph_endpoint", "starttls"}


def test_oauth_shows_the_client_and_its_urls_instead_of_the_password():
    shown = names("imaps", "oauth")

    assert {"client_id", "client_secret", "authorization_url", "token_url", "scope"} <= shown
    assert {"redirect_url", "username"} <= shown
    assert "password" not in shown
    assert next(f for f in FIELDS if f.name == "redirect_url").kind == "readonly"


def test_ews_is_reached_by_its_connect_url_and_graph_by_an_endpoint_of_a_cloud():
    assert "connect_url" in names("ews", "basic")
    assert not names("ews", "basic") & {"host", "port", "idle", "graph_endpoint"}
    graph = next(f for f in fields_for("graph", "oauth") if f.name == "graph_endpoint")
    assert graph.kind == "choice"
    assert [label for _, label in graph.choices] == list(CLOUDS.values())
    assert any("graph.microsoft.us" in label for label in CLOUDS.values())
    assert "connect_url" not in names("graph", "oauth")


def test_pop_has_no_error_folder_name_no_idle_and_starttls_only_when_plain():
    assert not names("pop", "basic") & {"error_folder_name", "idle", "folder"}
    assert {"error_folder_stop_after", "error_folder_notify"} <= names("pop", "basic")
    assert "starttls" in names("pop", "basic")
    assert "starttls" not in names("pops", "basic")


def test_a_maildir_mailbox_shows_its_folder_and_nothing_to_log_in_with():
    shown = names("maildir", "basic")

    assert "path" in shown
    assert not shown & {"auth", "host", "username", "password", "proxy", "client_id"}


@pytest.mark.parametrize(("protocol", "auth"), [("pop", "basic"), ("graph", "oauth")])
def test_every_mailbox_shows_the_help_desk_fields_marked_as_such(protocol, auth):
    desk = {f.name for f in fields_for(protocol, auth) if f.level == "helpdesk"}

    assert desk == {
        "connectivity_alerts",
        "connectivity_threshold",
        "attachment_stripped_notify",
        "attachment_max_mb",
        "restricted_extensions",
        "allowed_extensions",
    }


def test_each_server_protocol_has_its_default_port_and_the_others_none():
    assert [default_port(p) for p in ("pop", "pops", "imap", "imaps")] == [110, 995, 143, 993]
    assert default_port("ews") is None and default_port("graph") is None


@pytest.mark.parametrize(
    ("protocol", "cloud"),
    [("imaps", "global"), ("ews", "global"), ("graph", "global"), ("graph", "us-dod")],
)
def test_the_oauth_values_filled_in_are_those_the_settings_would_derive(protocol, cloud):
    filled = default_values(protocol, cloud)
    settings = MailboxSettings.model_validate(
        minimal(protocol)
        | {"auth": "oauth", "token_url": filled["token_url"]}
        | ({"graph_endpoint": filled["graph_endpoint"]} if protocol == "graph" else {})
    )

    assert filled["scope"] == settings.scope
    assert filled["authorization_url"] == settings.authorization_url


def test_a_new_mailbox_starts_from_the_defaults_and_the_help_desk_as_it_is():
    values = form_values(DESK, None, protocol="imaps")

    assert values["port"] == "993"
    assert values["folder"] == "INBOX"
    assert values["fetch_every_minutes"] == "1"
    assert values["scope"] == default_values("imaps")["scope"]
    assert values["connectivity_threshold"] == "7"
    assert values["connectivity_alerts"] == "false"
    assert values["attachment_max_mb"] == "12.5"
    assert values["restricted_extensions"] == "exe, js"


def test_a_stored_mailbox_fills_the_form_with_its_values_but_never_its_secrets():
    box = MailboxSettings.model_validate(
        {
            "name": "support",
            "protocol": "ews",
            "auth": "oauth",
            "connect_url": "https://outlook.office365.com/EWS/Exchange.asmx",
            "username": "support@contoso.com",
            "password": "hunter2-password",
            "client_id": "app",
            "client_secret": "s3cret-client-value",
            "token_url": "https://login.microsoftonline.com/contoso/oauth2/v2.0/token",
            "addresses": ["support@contoso.com", "help@contoso.com"],
        }
    )

    values = form_values(DESK, box)

    assert values["addresses"] == "support@contoso.com, help@contoso.com"
    assert values["client_id"] == "app"
    assert "password" not in values and "client_secret" not in values
    assert not [v for v in values.values() if "hunter2" in v or "s3cret" in v]
    assert secret_state(box) == {"password": True, "client_secret": True}
    assert secret_state(None) == {"password": False, "client_secret": False}


def test_form_data_becomes_mailbox_settings_and_a_help_desk_patch():
    parsed, errors = parse_form(
        imaps_form(
            addresses="support@example.com, help@example.com\nsales@example.com",
            idle="on",
            connectivity_threshold="9",
            connectivity_alerts="on",
            restricted_extensions="exe, .BAT",
        )
    )

    assert errors == {}
    box = MailboxSettings.model_validate(parsed.mailbox)
    assert box.port == 993 and box.idle and box.fetch_every_minutes == 2
    assert box.addresses == ["support@example.com", "help@example.com", "sales@example.com"]
    assert box.error_folder.enabled is False  # a checkbox not sent is off
    desk = HelpdeskSettings.model_validate({"id": "desk"} | parsed.helpdesk)
    assert desk.notifications.connectivity.consecutive_retry_threshold == 9
    assert desk.attachments.restricted_extensions == ["exe", "bat"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", "abc"),
        ("port", "70000"),
        ("port", "0"),
        ("port", "99.5"),
        ("fetch_every_minutes", "0"),
        ("fetch_every_minutes", "nan"),
        ("fetch_every_minutes", "inf"),
        ("fetch_every_minutes", "1e400"),
        ("connectivity_threshold", "1.5"),
        ("attachment_max_mb", "-1"),
        ("idle", "maybe"),
        ("protocol", "smtp"),
        ("import_existing", "everything"),
        ("host", "imap.example.com\r\nA001 LOGOUT"),
    ],
)
def test_a_value_of_the_wrong_type_or_out_of_range_is_an_error_at_its_field(field, value):
    _, errors = parse_form(imaps_form(**{field: value}))

    assert list(errors) == [field]


def test_a_number_out_of_range_says_the_range():
    _, errors = parse_form(imaps_form(port="70000"))

    assert "65535" in errors["port"] and "1" in errors["port"]


@pytest.mark.parametrize("kind", ["text", "list", "secret", "number"])
def test_every_value_is_bounded_in_length(kind):
    field = {"text": "host", "list": "addresses", "secret": "password", "number": "port"}[kind]

    _, errors = parse_form(imaps_form(**{field: "9" * (MAX_CHARS[kind] + 1)}))

    assert "longer than" in errors[field]


def test_oauth_on_pop_and_graph_with_basic_authentication_are_errors_at_auth():
    _, pop = parse_form(imaps_form(protocol="pop", auth="oauth"))
    _, graph = parse_form(imaps_form(protocol="graph", auth="basic"))

    assert list(pop) == ["auth"] and "OAuth is not available for POP" in pop["auth"]
    assert list(graph) == ["auth"] and "OAuth only" in graph["auth"]


def test_keys_the_form_does_not_have_or_that_do_not_apply_are_ignored():
    parsed, errors = parse_form(
        imaps_form(enabled="false", paused_reason="x", connect_url="https://x", client_id="app")
    )

    assert errors == {}
    assert not {"enabled", "paused_reason", "connect_url", "client_id"} & set(parsed.mailbox)


def test_a_blank_secret_keeps_the_stored_one_and_clear_removes_it():
    blank, _ = parse_form(imaps_form(password=""))
    typed, _ = parse_form(imaps_form(password="new-password"))
    cleared, _ = parse_form(imaps_form(password="", clear_password="on"))
    _, both = parse_form(imaps_form(password="new-password", clear_password="on"))

    assert blank.secrets == {}
    assert typed.secrets == {"password": "new-password"}
    assert cleared.secrets == {"password": None}
    assert "password" in both
    assert "new-password" not in repr(typed) and "password" not in typed.mailbox


def test_values_filled_in_for_another_protocol_follow_the_chosen_one():
    imaps = form_values(DESK, None, protocol="imaps")
    switched = imaps | {"name": "graph", "protocol": "graph", "auth": "oauth", "client_id": "c"}
    parsed, errors = parse_form(switched | {"username": "help@contoso.com"})

    assert errors == {}
    graph = MailboxSettings.model_validate(parsed.mailbox)
    assert graph.scope == default_values("graph")["scope"]
    pops, _ = parse_form(imaps_form(protocol="pops", port="993"))
    assert pops.mailbox["port"] == 995
