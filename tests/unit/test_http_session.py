"""The HTTP sessions of EWS, Graph and token endpoints follow the mailbox's settings alone."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from contracts.settings import MailboxSettings
from services.poller.sources.http import http_session
from services.runtime.errors import ConfigError


def graph(**fields: object) -> MailboxSettings:
    base: dict[str, object] = {
        "name": "support",
        "protocol": "graph",
        "auth": "oauth",
        "username": "help@example.com",
        "client_id": "app",
        "token_url": "https://login.microsoftonline.com/contoso/oauth2/v2.0/token",
    }
    return MailboxSettings.model_validate(base | fields)


def test_certificates_are_checked_against_the_system_store_by_default():
    assert http_session(graph()).verify is True


def test_a_ca_file_is_what_certificates_are_checked_against(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")

    assert http_session(graph(tls={"ca_file": str(ca)})).verify == str(ca)


def test_a_ca_file_that_is_a_folder_is_refused_naming_the_setting(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"mailbox 'support': tls.ca_file .* is a folder"):
        http_session(graph(tls={"ca_file": str(tmp_path)}))


def test_turning_certificate_checks_off_is_loud(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING):
        session = http_session(graph(tls={"verify": False}))

    assert session.verify is False
    assert "mailbox 'support': TLS certificate verification is OFF" in caplog.text


def test_the_environment_neither_redirects_nor_loosens_a_session(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("HTTPS_PROXY", "http://intercept.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nowhere/ca.pem")
    session = http_session(graph())

    settings = session.merge_environment_settings(
        "https://graph.microsoft.com/", {}, None, None, None
    )

    assert settings["proxies"] == {} and settings["verify"] is True


def test_a_socks_proxy_resolves_names_on_the_proxy_as_for_imap():
    session = http_session(graph(proxy="socks5://127.0.0.1:1080"))

    assert session.proxies == {
        "http": "socks5h://127.0.0.1:1080",
        "https": "socks5h://127.0.0.1:1080",
    }
