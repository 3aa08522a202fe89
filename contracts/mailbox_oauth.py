"""OAuth settings of a mailbox: default scopes per protocol and cloud, and one cloud per
mailbox (pure rules, used by ``MailboxSettings``).

Microsoft's clouds do not accept each other's tokens: a GCC High mailbox (``.us`` hosts)
whose token URL is the worldwide one fails at every poll with a cross-cloud error, so a mix
is refused when the settings are read.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: The redirect URL when none is set: a loopback listener ``mailroom oauth authorize`` opens.
DEFAULT_REDIRECT_URL = "http://localhost:8765/oauth/callback"

GMAIL_SCOPE = "https://mail.google.com/"
GOOGLE_AUTHORIZATION_URL = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"

#: Delegated scopes by protocol, worldwide (and GCC, which uses the worldwide hosts).
_WORLDWIDE = {
    "imaps": "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
    "ews": "https://outlook.office365.com/EWS.AccessAsUser.All offline_access",
    "graph": "Mail.ReadWrite offline_access",
}
#: GCC High and DoD: every resource is named with its ``.us`` host.
_US_GOVERNMENT = {
    "imaps": "https://outlook.office365.us/IMAP.AccessAsUser.All offline_access",
    "ews": "https://outlook.office365.us/EWS.AccessAsUser.All offline_access",
    "graph": "https://graph.microsoft.us/Mail.ReadWrite offline_access",
}
_DOD_GRAPH = "https://dod-graph.microsoft.us/Mail.ReadWrite offline_access"

GRAPH_ENDPOINTS = {
    "global": "https://graph.microsoft.com",
    "us-government": "https://graph.microsoft.us",
    "us-dod": "https://dod-graph.microsoft.us",
    "china": "https://microsoftgraph.chinacloudapi.cn",
}
DEFAULT_GRAPH_ENDPOINT = GRAPH_ENDPOINTS["global"]
#: The Microsoft identity platform in each cloud of ``GRAPH_ENDPOINTS``.
MICROSOFT_LOGIN = {
    "global": "https://login.microsoftonline.com",
    "us-government": "https://login.microsoftonline.us",
    "us-dod": "https://login.microsoftonline.us",
    "china": "https://login.chinacloudapi.cn",
}
#: The tenant a token URL names until the admin puts their own: any work or personal
#: account (an app registered for one tenant needs that tenant's id or domain instead).
ANY_TENANT = "common"

# The Microsoft identity platform's endpoints: https://HOST/TENANT/oauth2/v2.0/token.
_MICROSOFT_TOKEN_PATH = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token/?$")
_GOOGLE_HOSTS = ("oauth2.googleapis.com", "accounts.google.com", "www.googleapis.com")

#: The fields whose hosts must all be in one cloud.
CLOUD_FIELDS = ("connect_url", "authorization_url", "token_url", "graph_endpoint", "scope")


def host_of(url: str | None) -> str:
    """The lower-case host of ``url``, or "" when it names none."""
    if not url:
        return ""
    try:
        return (urlsplit(url.strip()).hostname or "").rstrip(".")
    except ValueError:
        return ""


def is_microsoft_token_url(token_url: str | None) -> bool:
    """True for a Microsoft identity platform token URL (``/TENANT/oauth2/v2.0/token``)."""
    if not token_url:
        return False
    try:
        parts = urlsplit(token_url.strip())
    except ValueError:
        return False
    return parts.scheme == "https" and bool(_MICROSOFT_TOKEN_PATH.match(parts.path))


def microsoft_token_url(cloud: str, tenant: str = ANY_TENANT) -> str:
    """The token URL of ``tenant`` in ``cloud`` (a key of ``MICROSOFT_LOGIN``)."""
    return f"{MICROSOFT_LOGIN[cloud]}/{tenant}/oauth2/v2.0/token"


def microsoft_authorization_url(token_url: str) -> str:
    """The authorization URL that goes with a Microsoft token URL."""
    return re.sub(r"/token/?$", "/authorize", token_url.strip())


def is_google(host: str | None, token_url: str | None) -> bool:
    """A Gmail mailbox: its IMAP host or its token URL is Google's."""
    server = (host or "").strip().rstrip(".").lower()
    return server in ("imap.gmail.com", "imap.googlemail.com") or host_of(token_url).endswith(
        _GOOGLE_HOSTS
    )


def is_us_government(host: str) -> bool:
    return host == "us" or host.endswith(".us")


def scope_hosts(scope: str | None) -> list[str]:
    """The hosts named by a scope string's URL scopes (``Mail.ReadWrite`` names none)."""
    words = re.split(r"[\s,]+", scope or "")
    return [h for w in words if "://" in w and (h := host_of(w))]


def default_scope(
    protocol: str,
    *,
    host: str | None,
    token_url: str | None,
    graph_endpoint: str | None,
    us_government: bool,
) -> str | None:
    """The delegated scope for ``protocol`` in the mailbox's cloud; None when unknown."""
    if protocol == "imaps" and is_google(host, token_url):
        return GMAIL_SCOPE
    if protocol == "graph" and host_of(graph_endpoint) == host_of(GRAPH_ENDPOINTS["us-dod"]):
        return _DOD_GRAPH
    table = _US_GOVERNMENT if us_government else _WORLDWIDE
    return table.get(protocol)


def cloud_problems(fields: dict[str, str | None]) -> list[tuple[str, str]]:
    """``(field, problem)`` for each field outside the cloud the others are in.

    When any field names a ``.us`` host (GCC High, DoD), every field that names a host must,
    and a scope in that cloud must name its resource's ``.us`` host.
    """
    hosts: dict[str, list[str]] = {}
    for name in CLOUD_FIELDS:
        value = fields.get(name)
        hosts[name] = scope_hosts(value) if name == "scope" else [h for h in [host_of(value)] if h]
    us = [name for name, found in hosts.items() if any(is_us_government(h) for h in found)]
    if not us:
        return []
    problems = []
    for name, found in hosts.items():
        others = [h for h in found if not is_us_government(h)]
        if others:
            problems.append(
                (
                    name,
                    f"names {others[0]}, but {us[0]} is in the US Government cloud (GCC High, "
                    "DoD), whose tokens work only with .us hosts: use the .us host here too, "
                    "or the worldwide one everywhere",
                )
            )
        elif name == "scope" and fields.get("scope") and not found:
            problems.append(
                (
                    "scope",
                    f"names no resource host, but {us[0]} is in the US Government cloud: "
                    "name the resource, e.g. https://graph.microsoft.us/Mail.ReadWrite "
                    "offline_access",
                )
            )
    return problems
