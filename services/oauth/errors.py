"""What went wrong at an authorization server, as one sentence naming the mailbox and the fix.

No sentence ever holds a token, a code or a secret: only error codes, the server's own
description (which never echoes them) and the configured URLs.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import requests

from contracts.settings import MailboxSettings
from services.poller.sources.tokens import ReauthorizeNeeded
from services.runtime.errors import ConfigError, InfraError, MailroomError

#: The server's description is cut here: Entra adds trace ids and timestamps.
MAX_DESCRIPTION = 200


def reauthorize(box: MailboxSettings) -> str:
    return f"re-authorize with `mailroom oauth authorize {box.name}`"


def answer_error(
    box: MailboxSettings, answer: dict[str, Any], *, refreshing: bool
) -> MailroomError:
    """An error answer of the token endpoint (``{"error": ..., "error_description": ...}``)."""
    code = str(answer.get("error") or "error")
    description = _description(answer)
    said = f"{code}: {description}" if description else code
    where = f"mailbox {box.name!r}"
    if "AADSTS90002" in description or "AADSTS900023" in description:
        return wrong_tenant(box)
    if code == "invalid_client":
        return ReauthorizeNeeded(
            f"{where}: the authorization server refused the OAuth client ({said}); check "
            "`client_id` and `client_secret` (the secret may have expired), then "
            f"{reauthorize(box)}"
        )
    if code == "invalid_grant" and refreshing:
        return ReauthorizeNeeded(
            f"{where}: the authorization server refused the stored refresh token ({said}): "
            f"it was revoked or has lapsed; {reauthorize(box)}"
        )
    if code == "invalid_grant":
        return ConfigError(
            f"{where}: the authorization server refused the authorization code ({said}); "
            f"run `mailroom oauth authorize {box.name}` again"
        )
    if code in ("invalid_scope", "unauthorized_client", "unsupported_grant_type"):
        return ConfigError(
            f"{where}: the authorization server refused the request ({said}); check `scope` "
            "and the app registration of `client_id`"
        )
    if code in ("temporarily_unavailable", "server_error"):
        return InfraError(f"{where}: the authorization server failed ({said}); tried again later")
    return ConfigError(
        f"{where}: the authorization server refused the request ({said}); check the OAuth "
        f"settings, then {reauthorize(box)}"
    )


def wrong_tenant(box: MailboxSettings) -> ConfigError:
    return ConfigError(
        f"mailbox {box.name!r}: the authorization server does not know tenant "
        f"{tenant_of(box.token_url or '')!r}: correct the tenant in `token_url` ({box.token_url})"
    )


def not_json(box: MailboxSettings, response: requests.Response, what: str) -> ConfigError:
    kind = response.headers.get("Content-Type", "no content type").split(";")[0]
    return ConfigError(
        f"mailbox {box.name!r}: the {what} {response.url} answered HTTP {response.status_code} "
        f"with {kind} instead of an OAuth answer in JSON: check `token_url`"
    )


def checked_answer(
    box: MailboxSettings, response: requests.Response, *, refreshing: bool
) -> dict[str, Any]:
    """The JSON answer of the token endpoint; an error answer or anything else raised."""
    if response.status_code >= 500:
        raise InfraError(
            f"mailbox {box.name!r}: the token endpoint {box.token_url} failed with HTTP "
            f"{response.status_code}; tried again later"
        )
    if response.status_code == 404:
        if _looks_like_tenant_url(box.token_url or ""):
            raise wrong_tenant(box)
        raise ConfigError(
            f"mailbox {box.name!r}: the token endpoint {box.token_url} answered HTTP 404 (not "
            "found): check `token_url`"
        )
    try:
        answer = json.loads(response.text)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise not_json(box, response, "token endpoint")
    if "error" in answer:
        raise answer_error(box, answer, refreshing=refreshing)
    if not answer.get("access_token"):
        raise ConfigError(
            f"mailbox {box.name!r}: the token endpoint {box.token_url} answered without an "
            "access token: check `token_url`"
        )
    return answer


def transport_error(box: MailboxSettings, exc: requests.RequestException) -> MailroomError:
    """A token endpoint that could not be reached: a certificate is a setting, the rest passes."""
    host = urlsplit(box.token_url or "").netloc
    where = f"mailbox {box.name!r}: the authorization server {host}"
    if isinstance(exc, requests.exceptions.SSLError):
        return ConfigError(
            f"{where} failed the certificate check ({_first_line(exc)}): trust its CA with "
            "`tls.ca_file`"
        )
    if isinstance(exc, requests.Timeout):
        return InfraError(f"{where} did not answer in time; tried again later")
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return InfraError(f"{where} failed with HTTP {exc.response.status_code}; tried again later")
    return InfraError(f"{where} cannot be reached ({_first_line(exc)}); tried again later")


def tenant_of(token_url: str) -> str:
    parts = urlsplit(token_url).path.strip("/").split("/")
    return parts[0] if parts and parts[0] else ""


def _looks_like_tenant_url(token_url: str) -> bool:
    return "/oauth2/" in urlsplit(token_url).path


def _description(answer: dict[str, Any]) -> str:
    text = str(answer.get("error_description") or "").strip().splitlines()
    first = text[0] if text else ""
    return first[:MAX_DESCRIPTION]


def _first_line(exc: BaseException) -> str:
    # urllib3's reasons nest the whole chain; the last part says what happened.
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[-MAX_DESCRIPTION:]
