"""The fields of the mailbox form: which apply to each protocol and authentication, where
each is kept in the settings, and what a new mailbox starts with.

The rules come from the settings (``contracts.settings``, ``contracts.mailbox_oauth``), so
the form offers exactly what ``mailroom config apply`` accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel

from contracts.mailbox_oauth import (
    DEFAULT_REDIRECT_URL,
    GMAIL_SCOPE,
    GOOGLE_AUTHORIZATION_URL,
    GRAPH_ENDPOINTS,
    default_scope,
    host_of,
    is_us_government,
    microsoft_authorization_url,
    microsoft_token_url,
)
from contracts.settings import (
    DEFAULT_PORTS,
    IDLE_PROTOCOLS,
    OAUTH_ONLY_PROTOCOLS,
    OAUTH_PROTOCOLS,
    STARTTLS_PROTOCOLS,
    Protocol,
)

Kind = Literal["text", "number", "bool", "choice", "secret", "list", "readonly"]
#: "helpdesk": kept in the help desk's settings, so saving it changes every mailbox of it.
Level = Literal["mailbox", "helpdesk"]

_PROTOCOL_LABELS = {
    "pop": "POP",
    "pops": "POPS",
    "imap": "IMAP",
    "imaps": "IMAPS",
    "ews": "EWS",
    "graph": "Microsoft Graph",
    "maildir": "Maildir (a folder on the Mailroom server)",
}
#: Protocol -> label, in the settings' order; a protocol without a label fails at import.
PROTOCOLS: dict[str, str] = {p: _PROTOCOL_LABELS[p] for p in get_args(Protocol)}
AUTHS = {"basic": "Basic (username and password)", "oauth": "OAuth"}

_CLOUD_LABELS = {
    "global": "Global",
    "us-government": "US Government (GCC High)",
    "us-dod": "US Government (DoD)",
    "china": "China (21Vianet)",
}
#: Microsoft cloud -> label, one for each Graph endpoint the settings know.
CLOUDS: dict[str, str] = {
    cloud: f"{_CLOUD_LABELS[cloud]}: {host_of(url)}" for cloud, url in GRAPH_ENDPOINTS.items()
}
#: What the page shows beside a help-desk-level field.
HELPDESK_NOTE = "applies to every mailbox of help desk {helpdesk}"

_ALL = frozenset(PROTOCOLS)
_NETWORK = _ALL - {"maildir"}
_SERVER = frozenset(DEFAULT_PORTS)
_BOTH = frozenset(AUTHS)


def auth_choices(protocol: str) -> list[str]:
    """The authentications ``protocol`` takes, as the settings allow them."""
    if protocol in OAUTH_ONLY_PROTOCOLS:
        return ["oauth"]
    if protocol in OAUTH_PROTOCOLS:
        return ["basic", "oauth"]
    return ["basic"]


def default_port(protocol: str) -> int | None:
    """None for the protocols that name no port (EWS, Graph, Maildir)."""
    return DEFAULT_PORTS.get(protocol)


def cloud_of(graph_endpoint: str | None) -> str:
    """The Microsoft cloud of a Graph endpoint; "global" for any other."""
    host = host_of(graph_endpoint)
    return next((c for c, url in GRAPH_ENDPOINTS.items() if host_of(url) == host), "global")


@dataclass(frozen=True)
class OAuthDefaults:
    scope: str | None
    authorization_url: str | None
    token_url: str | None
    graph_endpoint: str | None


def oauth_defaults(protocol: str, cloud: str = "global") -> OAuthDefaults:
    """What an OAuth mailbox of ``protocol`` in a Microsoft ``cloud`` starts with (the
    token URL names any tenant until the admin puts theirs)."""
    if protocol not in OAUTH_PROTOCOLS:
        return OAuthDefaults(None, None, None, None)
    endpoint = GRAPH_ENDPOINTS[cloud] if protocol == "graph" else None
    token_url = microsoft_token_url(cloud)
    scope = default_scope(
        protocol,
        host=None,
        token_url=token_url,
        graph_endpoint=endpoint,
        us_government=is_us_government(host_of(token_url)),
    )
    return OAuthDefaults(scope, microsoft_authorization_url(token_url), token_url, endpoint)


def default_values(protocol: str, cloud: str = "global") -> dict[str, str]:
    """Form field -> the value a new mailbox of ``protocol`` starts with, for the page to fill
    in when the protocol or the Graph endpoint is changed."""
    oauth = oauth_defaults(protocol, cloud)
    port = default_port(protocol)
    values = {
        "port": "" if port is None else str(port),
        "scope": oauth.scope,
        "authorization_url": oauth.authorization_url,
        "token_url": oauth.token_url,
        "graph_endpoint": oauth.graph_endpoint,
        "redirect_url": DEFAULT_REDIRECT_URL if protocol in OAUTH_PROTOCOLS else None,
    }
    return {name: value for name, value in values.items() if value is not None}


def _prefilled(attribute: str) -> frozenset[str]:
    found = {
        getattr(oauth_defaults(protocol, cloud), attribute)
        for protocol in OAUTH_PROTOCOLS
        for cloud in GRAPH_ENDPOINTS
    }
    return frozenset(v for v in found if v)


#: Values the form fills in that the settings derive from the other fields when left out: a
#: scope or authorization URL left as filled in follows the protocol, cloud and provider.
DERIVED_DEFAULTS: dict[str, frozenset[str]] = {
    "scope": _prefilled("scope") | {GMAIL_SCOPE},
    "authorization_url": _prefilled("authorization_url") | {GOOGLE_AUTHORIZATION_URL},
}
#: The token URLs the form fills in (any tenant of a Microsoft cloud).
PREFILLED_TOKEN_URLS = _prefilled("token_url")


@dataclass(frozen=True)
class FieldSpec:
    """One field of the mailbox form."""

    #: The form field's name.
    name: str
    label: str
    kind: Kind
    section: str
    #: Where the value is kept: in the mailbox's settings, or the help desk's (``level``).
    path: tuple[str, ...]
    help: str = ""
    protocols: frozenset[str] = _ALL
    auths: frozenset[str] = _BOTH
    level: Level = "mailbox"
    #: ``choice``: (value, label) pairs.
    choices: tuple[tuple[str, str], ...] = ()
    #: A ``choice`` that also takes a value of its own (a Graph endpoint of a test server).
    other_allowed: bool = False

    def applies(self, protocol: str, auth: str) -> bool:
        return protocol in self.protocols and auth in self.auths

    def value_in(self, settings: BaseModel) -> Any:
        """The field's value in a mailbox's or a help desk's settings (as ``level`` says)."""
        value: Any = settings
        for part in self.path:
            value = getattr(value, part)
        return value


def _oauth(name: str, label: str, kind: Kind = "text", help: str = "") -> FieldSpec:
    return FieldSpec(
        name,
        label,
        kind,
        "OAuth",
        (name,),
        help,
        protocols=frozenset(OAUTH_PROTOCOLS),
        auths=frozenset({"oauth"}),
    )


def _desk(name: str, label: str, kind: Kind, path: tuple[str, ...], help: str) -> FieldSpec:
    return FieldSpec(name, label, kind, "Help desk", path, help, level="helpdesk")


_PORTS = ", ".join(f"{PROTOCOLS[p]} {port}" for p, port in DEFAULT_PORTS.items())

FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "name",
        "Mailbox name",
        "text",
        "Connection",
        ("name",),
        "Letters, digits, '.', '_' and '-'; names the mailbox in logs, alerts and commands.",
    ),
    FieldSpec(
        "protocol",
        "Connection protocol",
        "choice",
        "Connection",
        ("protocol",),
        choices=tuple(PROTOCOLS.items()),
    ),
    FieldSpec(
        "auth",
        "Authentication type",
        "choice",
        "Connection",
        ("auth",),
        "OAuth for IMAPS, EWS and Microsoft Graph; Microsoft Graph takes OAuth only.",
        protocols=_NETWORK,
        choices=tuple(AUTHS.items()),
    ),
    FieldSpec("host", "Server", "text", "Connection", ("host",), protocols=_SERVER),
    FieldSpec("port", "Port", "number", "Connection", ("port",), f"Default: {_PORTS}.", _SERVER),
    FieldSpec(
        "starttls",
        "Upgrade the connection with STARTTLS",
        "bool",
        "Connection",
        ("starttls",),
        protocols=frozenset(STARTTLS_PROTOCOLS),
    ),
    FieldSpec(
        "connect_url",
        "Connect URL",
        "text",
        "Connection",
        ("connect_url",),
        "The Exchange Web Services address, e.g. https://outlook.office365.com/EWS/Exchange.asmx",
        frozenset({"ews"}),
    ),
    FieldSpec(
        "graph_endpoint",
        "Graph endpoint",
        "choice",
        "Connection",
        ("graph_endpoint",),
        "The global service, or a national cloud.",
        frozenset({"graph"}),
        choices=tuple((GRAPH_ENDPOINTS[c], label) for c, label in CLOUDS.items()),
        other_allowed=True,
    ),
    FieldSpec(
        "path",
        "Maildir folder",
        "text",
        "Connection",
        ("path",),
        "The folder that holds cur/, new/ and tmp/, on the Mailroom server.",
        frozenset({"maildir"}),
    ),
    FieldSpec(
        "folder",
        "Folder",
        "text",
        "Connection",
        ("folder",),
        "The folder mail is fetched from.",
        frozenset(IDLE_PROTOCOLS),
    ),
    FieldSpec(
        "username",
        "Username",
        "text",
        "Connection",
        ("username",),
        "With OAuth: the account that consents, which Mailroom checks.",
        _NETWORK,
    ),
    FieldSpec(
        "password",
        "Password",
        "secret",
        "Connection",
        ("password",),
        protocols=_NETWORK,
        auths=frozenset({"basic"}),
    ),
    FieldSpec(
        "addresses",
        "Email addresses",
        "list",
        "Connection",
        ("addresses",),
        "The mailbox's addresses (aliases), comma-separated.",
    ),
    FieldSpec(
        "tls_verify",
        "Check the server's certificate",
        "bool",
        "Connection",
        ("tls", "verify"),
        protocols=_NETWORK,
    ),
    FieldSpec(
        "tls_ca_file",
        "CA file",
        "text",
        "Connection",
        ("tls", "ca_file"),
        "A PEM file on the Mailroom server, for a server certified by a private CA.",
        _NETWORK,
    ),
    FieldSpec(
        "timeout_seconds",
        "Timeout (seconds)",
        "number",
        "Connection",
        ("timeout_seconds",),
        "Bounds the connection and every command.",
        _NETWORK,
    ),
    _oauth("client_id", "Client ID"),
    _oauth("client_secret", "Client secret", "secret"),
    _oauth(
        "authorization_url",
        "Authorization URL",
        help="Where the mailbox's owner consents; left as filled in, it follows the token URL.",
    ),
    _oauth(
        "token_url",
        "Token URL",
        help="Put your tenant's id or domain in place of `common` for an app registered "
        "for one tenant.",
    ),
    _oauth("scope", "Scope", help="Left as filled in, it follows the protocol and the cloud."),
    _oauth(
        "redirect_url",
        "Redirect URL",
        "readonly",
        "Register this address with the OAuth application.",
    ),
    FieldSpec(
        "fetch_every_minutes",
        "Fetch interval (minutes)",
        "number",
        "Fetching",
        ("fetch_every_minutes",),
    ),
    FieldSpec(
        "import_existing",
        "Mail already there on the first connection",
        "choice",
        "Fetching",
        ("import_existing",),
        choices=(
            ("unread", "Import unread mail"),
            ("all", "Import all mail"),
            ("none", "Import none"),
        ),
    ),
    FieldSpec(
        "idle",
        "Push delivery (IMAP IDLE)",
        "bool",
        "Fetching",
        ("idle",),
        "Fetches new mail within seconds of its arrival; polling continues beside it.",
        frozenset(IDLE_PROTOCOLS),
    ),
    FieldSpec(
        "max_mail_mb",
        "Largest mail (MB)",
        "number",
        "Fetching",
        ("max_mail_mb",),
        "A bigger mail is not downloaded but dead-lettered with the reason.",
    ),
    FieldSpec(
        "proxy",
        "Proxy",
        "text",
        "Fetching",
        ("proxy",),
        "http://host:port or socks5://host:port; blank: none.",
        _NETWORK,
    ),
    FieldSpec(
        "debug",
        "Email debug",
        "bool",
        "Fetching",
        ("debug",),
        "Writes each fetched mail's structure and headers, and a protocol trace with "
        "credentials redacted, to the log.",
    ),
    FieldSpec(
        "new_requests_enabled",
        "Create new requests from email",
        "bool",
        "New requests",
        ("new_requests", "enabled"),
        "Replies to existing requests are always accepted.",
    ),
    FieldSpec(
        "new_requests_allow",
        "Allowlist",
        "list",
        "New requests",
        ("new_requests", "allow"),
        "While creation is off, these may still open requests: addresses "
        "(heather@zylker.com) and domains (*@zylker.com), comma-separated.",
    ),
    FieldSpec(
        "error_folder_enabled",
        "Error folder",
        "bool",
        "Error folder",
        ("error_folder", "enabled"),
        "Mail that fails is moved there (POP has no folders: it stays in the dead-letter queue).",
    ),
    FieldSpec(
        "error_folder_name",
        "Error folder name",
        "text",
        "Error folder",
        ("error_folder", "name"),
        protocols=_ALL - {"pop", "pops"},
    ),
    FieldSpec(
        "error_folder_stop_after",
        "Stop fetching after this many error mails",
        "number",
        "Error folder",
        ("error_folder", "stop_after"),
    ),
    FieldSpec(
        "error_folder_notify",
        "Notify support reps of each error mail",
        "bool",
        "Error folder",
        ("error_folder", "notify"),
    ),
    _desk(
        "connectivity_alerts",
        "Connectivity alerts",
        "bool",
        ("notifications", "connectivity", "enabled"),
        "Admins and support reps are told when a mailbox cannot be reached.",
    ),
    _desk(
        "connectivity_threshold",
        "Alert after this many failed connections in a row",
        "number",
        ("notifications", "connectivity", "consecutive_retry_threshold"),
        "",
    ),
    _desk(
        "attachment_stripped_notify",
        "Notify when an attachment is stripped",
        "bool",
        ("notifications", "attachment_stripped"),
        "The sender and support reps are told why an attachment was dropped.",
    ),
    _desk(
        "attachment_max_mb",
        "Largest attachment (MB)",
        "number",
        ("attachments", "max_size_mb"),
        "",
    ),
    _desk(
        "restricted_extensions",
        "Restricted extensions",
        "list",
        ("attachments", "restricted_extensions"),
        "Attachments with these extensions are dropped, comma-separated (exe, bat).",
    ),
    _desk(
        "allowed_extensions",
        "Allowed extensions",
        "list",
        ("attachments", "allowed_extensions"),
        "When set, only attachments with these extensions are kept.",
    ),
)

FIELDS_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}


def fields_for(protocol: str, auth: str) -> list[FieldSpec]:
    """The fields a mailbox of ``protocol`` and ``auth`` shows, help-desk fields included."""
    return [f for f in FIELDS if f.level == "helpdesk" or f.applies(protocol, auth)]
