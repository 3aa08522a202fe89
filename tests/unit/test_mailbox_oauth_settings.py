"""OAuth settings of a mailbox: scopes filled in per protocol and cloud, one Microsoft cloud
per mailbox, and the combinations that cannot work refused with the fix."""

from __future__ import annotations

import pytest

from contracts.mailbox_oauth import DEFAULT_REDIRECT_URL
from contracts.settings import MailboxSettings, SettingsError, parse_settings

BOX = "helpdesks[0].mailboxes[0]"

ENTRA = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
ENTRA_US = "https://login.microsoftonline.us/contoso.onmicrosoft.us/oauth2/v2.0/token"


def settings_with(mailbox: str) -> str:
    return f"helpdesks:\n  - id: default\n    mailboxes:\n      - {mailbox}\n"


def refusal(text: str) -> str:
    with pytest.raises(SettingsError) as caught:
        parse_settings(text, env={})
    return str(caught.value)


def box(**fields: object) -> MailboxSettings:
    base: dict[str, object] = {"name": "support", "username": "support@contoso.com"}
    return MailboxSettings.model_validate(base | fields)


def oauth(protocol: str, **fields: object) -> MailboxSettings:
    defaults: dict[str, object] = {"protocol": protocol, "auth": "oauth", "client_id": "app"}
    if protocol == "imaps":
        defaults["host"] = "outlook.office365.com"
    if protocol == "ews":
        defaults["connect_url"] = "https://outlook.office365.com/EWS/Exchange.asmx"
    return box(**(defaults | {"token_url": ENTRA} | fields))


@pytest.mark.parametrize(
    ("protocol", "scope"),
    [
        ("imaps", "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"),
        ("ews", "https://outlook.office365.com/EWS.AccessAsUser.All offline_access"),
        ("graph", "Mail.ReadWrite offline_access"),
    ],
)
def test_each_protocol_gets_its_microsoft_scope(protocol, scope):
    assert oauth(protocol).scope == scope


def test_gmail_gets_its_scope_and_google_urls_without_being_told():
    gmail = box(protocol="imaps", host="imap.gmail.com", auth="oauth", client_id="app")

    assert gmail.scope == "https://mail.google.com/"
    assert gmail.token_url == "https://oauth2.googleapis.com/token"
    assert gmail.authorization_url == "https://accounts.google.com/o/oauth2/v2/auth"


def test_a_scope_that_is_set_is_kept_verbatim():
    # Zoho wants its scopes comma-separated: nothing may re-join them.
    zoho = oauth(
        "imaps",
        token_url="https://accounts.zoho.eu/oauth/v2/token",
        authorization_url="https://accounts.zoho.eu/oauth/v2/auth",
        scope="ZohoMail.messages.ALL,ZohoMail.accounts.READ",
    )

    assert zoho.scope == "ZohoMail.messages.ALL,ZohoMail.accounts.READ"


def test_the_microsoft_authorization_url_and_the_redirect_url_are_filled_in():
    graph = oauth("graph")

    assert graph.authorization_url == ENTRA.replace("/token", "/authorize")
    assert graph.redirect_url == DEFAULT_REDIRECT_URL
    assert graph.graph_endpoint == "https://graph.microsoft.com"


@pytest.mark.parametrize(
    ("protocol", "fields", "scope"),
    [
        (
            "imaps",
            {"host": "outlook.office365.us"},
            "https://outlook.office365.us/IMAP.AccessAsUser.All offline_access",
        ),
        (
            "ews",
            {"connect_url": "https://outlook.office365.us/EWS/Exchange.asmx"},
            "https://outlook.office365.us/EWS.AccessAsUser.All offline_access",
        ),
        (
            "graph",
            {"graph_endpoint": "https://graph.microsoft.us"},
            "https://graph.microsoft.us/Mail.ReadWrite offline_access",
        ),
        (
            "graph",
            {"graph_endpoint": "https://dod-graph.microsoft.us"},
            "https://dod-graph.microsoft.us/Mail.ReadWrite offline_access",
        ),
    ],
)
def test_gcc_high_mailboxes_get_the_us_government_scope(protocol, fields, scope):
    assert oauth(protocol, token_url=ENTRA_US, **fields).scope == scope


def test_a_us_endpoint_with_the_worldwide_token_url_is_refused_naming_the_field():
    message = refusal(
        settings_with(
            "{name: g, protocol: graph, auth: oauth, username: u@contoso.us, client_id: app,"
            f" token_url: '{ENTRA}', graph_endpoint: 'https://graph.microsoft.us'}}"
        )
    )

    assert f"{BOX}.token_url" in message
    assert "login.microsoftonline.com" in message and "US Government" in message


def test_a_worldwide_scope_in_the_us_cloud_is_refused_naming_the_scope():
    message = refusal(
        settings_with(
            "{name: e, protocol: ews, auth: oauth, username: u@contoso.us, client_id: app,"
            f" token_url: '{ENTRA_US}', connect_url: 'https://outlook.office365.us/EWS/Exchange.asmx',"
            " scope: 'https://outlook.office365.com/EWS.AccessAsUser.All offline_access'}"
        )
    )

    assert f"{BOX}.scope" in message
    assert "outlook.office365.com" in message


def test_a_bare_scope_in_the_us_cloud_is_refused_saying_to_name_the_resource():
    message = refusal(
        settings_with(
            "{name: g, protocol: graph, auth: oauth, username: u@contoso.us, client_id: app,"
            f" token_url: '{ENTRA_US}', graph_endpoint: 'https://graph.microsoft.us',"
            " scope: 'Mail.ReadWrite offline_access'}"
        )
    )

    assert f"{BOX}.scope" in message
    assert "https://graph.microsoft.us/Mail.ReadWrite" in message


def test_plain_imap_with_oauth_is_refused_saying_to_use_imaps():
    message = refusal(
        settings_with(
            f"{{name: i, protocol: imap, host: h, auth: oauth, client_id: c, token_url: '{ENTRA}'}}"
        )
    )

    assert "auth oauth is not available for protocol imap" in message
    assert "imaps" in message


@pytest.mark.parametrize("field", ["token_url", "connect_url", "graph_endpoint"])
def test_an_http_url_that_would_carry_credentials_is_refused(field):
    with pytest.raises(ValueError, match=f"{field}.*plain http"):
        oauth("ews" if field == "connect_url" else "graph", **{field: "http://example.com/x"})


def test_a_redirect_url_may_be_http_only_on_loopback():
    assert oauth("graph", redirect_url="http://127.0.0.1:9000/cb").redirect_url
    with pytest.raises(ValueError, match="redirect_url.*plain http on another host"):
        oauth("graph", redirect_url="http://helpdesk.example.com/cb")


def test_a_url_that_is_no_url_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="connect_url.*is not a URL"):
        oauth("ews", connect_url="outlook.office365.com")


def test_oauth_without_a_username_is_refused_because_the_consenting_account_is_checked():
    with pytest.raises(ValueError, match="needs `username`"):
        oauth("graph", username=None)


def test_an_unknown_provider_needs_its_authorization_url_and_scope():
    with pytest.raises(ValueError) as refused:
        oauth("imaps", host="imap.example.org", token_url="https://idp.example.org/token")

    assert "`authorization_url`" in str(refused.value)
