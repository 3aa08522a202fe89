"""Settings: the ``MAILROOM_*`` environment and the YAML settings file.

This is the only module that reads ``os.environ``. Everything else receives typed values.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.extensions import extension_setting
from contracts.folders import (
    imap_folder_problem,
    maildir_folder_problem,
    same_imap_folder,
)
from contracts.mailbox_oauth import (
    CLOUD_FIELDS,
    DEFAULT_GRAPH_ENDPOINT,
    DEFAULT_REDIRECT_URL,
    GOOGLE_AUTHORIZATION_URL,
    GOOGLE_TOKEN_URL,
    cloud_problems,
    default_scope,
    host_of,
    is_google,
    is_microsoft_token_url,
    is_us_government,
    microsoft_authorization_url,
)
from contracts.settings_yaml import SettingsError as SettingsError
from contracts.settings_yaml import load_yaml, read_settings_text

Protocol = Literal["pop", "pops", "imap", "imaps", "ews", "graph", "maildir"]
DEFAULT_PORTS = {"pop": 110, "pops": 995, "imap": 143, "imaps": 993}
#: Which protocols take ``auth: oauth``, which take nothing else, and which take ``idle`` and
#: ``starttls``: the rules ``MailboxSettings`` applies, named once for the forms that offer them.
OAUTH_PROTOCOLS = ("imaps", "ews", "graph")
OAUTH_ONLY_PROTOCOLS = ("graph",)
IDLE_PROTOCOLS = ("imap", "imaps")
STARTTLS_PROTOCOLS = ("imap", "pop")
#: Upper bounds of durations, sizes and counts: a value past them is a typing mistake, and
#: one past what a date or an integer column holds (``1e308`` minutes) would fail every mail
#: that uses it instead of failing here, with the field named.
WEEK_S = 7 * 24 * 3600
YEAR_S = 366 * 24 * 3600
MAX_MB = 100 * 1024
MAX_COUNT = 1_000_000


class Settings(BaseSettings):
    """Process settings from the environment (``MAILROOM_BROKER_URL`` and friends)."""

    model_config = SettingsConfigDict(env_prefix="MAILROOM_", extra="ignore")

    broker_url: str = "memory://"
    database_url: str | None = None
    #: The data folder (SQLite database, key file): one place, whichever folder a command
    #: runs in.
    var_dir: Path = Field(default_factory=lambda: _default_var_dir())
    secret_key: str | None = None
    secret_key_file: Path | None = None
    max_attempts: int = Field(default=3, ge=1, le=MAX_COUNT)
    #: How long a worker waits out an unreachable broker or store before it gives up.
    outage_limit_seconds: float = Field(default=600, gt=0, le=WEEK_S)
    #: ``/healthz`` and ``/readyz`` are served on this port when it is set (0: any free one).
    health_port: int | None = Field(default=None, ge=0, le=65535)
    health_host: str = "127.0.0.1"
    #: Parser limits against hostile mail; a mail over one is dead-lettered with the reason.
    max_mime_depth: int = Field(default=20, ge=1)
    max_mime_parts: int = Field(default=500, ge=1)
    #: Size of the top-level header block.
    max_header_kb: float = Field(default=256, gt=0, le=MAX_MB * 1024)
    #: Sum of the decoded sizes of all parts of one mail.
    max_decoded_mb: float = Field(default=100, gt=0, le=MAX_MB)
    #: Parser, validator and router take up to this many mails at a time: one store
    #: transaction and one round of broker confirms per batch. 1 handles one at a time.
    batch_size: int = Field(default=32, ge=1, le=1000)
    #: How long a batch waits for more mail after its first, before it is handled anyway.
    batch_linger_ms: float = Field(default=20, ge=0, le=10_000)
    #: ``mailroom admin``: where the admin page listens (``--host`` / ``--port`` win).
    admin_host: str = "127.0.0.1"
    admin_port: int = Field(default=8080, ge=0, le=65535)
    #: Session cookies are sent over HTTPS only; false for plain-HTTP development only.
    admin_cookie_secure: bool = True
    #: A session ends this long after sign-in, or after this long without a request.
    admin_session_hours: float = Field(default=8, gt=0, le=24 * 30)
    admin_idle_minutes: float = Field(default=30, gt=0, le=24 * 60)
    #: How often the mailbox list refreshes itself in the browser.
    admin_refresh_seconds: float = Field(default=10, ge=1, le=3600)
    #: Reverse proxies whose ``X-Forwarded-For`` names the client (the sign-in limit counts
    #: failures per client address): comma-separated addresses or networks, ``*`` for any.
    admin_trusted_proxies: str = Field(default="127.0.0.1", min_length=1, max_length=1000)
    #: The address admins reach the page at (``https://mailroom.example.com``), behind a
    #: proxy; OAuth consent redirects to its ``/oauth/callback``. Unset: the address of the
    #: request.
    admin_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")

    @field_validator("var_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        # An empty value would be the working folder: state would depend on where a command runs.
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty: set it to the data folder, or unset it for the default")
        return value

    @field_validator("admin_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # A compose file passes an unset variable on as empty (`${MAILROOM_ADMIN_URL:-}`).
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("var_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is not None:
            _check_url(value, ("sqlite", "postgresql"), "sqlite:////PATH or postgresql://HOST/DB")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        _check_url(value, ("memory", "amqp", "amqps", "pyamqp"), "memory:// or amqp://HOST//")
        return value

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'mailroom.db'}"

    @property
    def effective_key_file(self) -> Path:
        return self.secret_key_file or self.var_dir / "secret.key"


def load_environment() -> Settings:
    """The ``MAILROOM_*`` settings; raises ``SettingsError`` naming each variable to fix
    (never its value: a URL may hold a password)."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "MAILROOM_" + "_".join(map(str, err["loc"])).upper()
            lines.append(f"{name}: {err['msg'].removeprefix('Value error, ')}")
        raise SettingsError("\n".join(lines)) from None


def _check_url(value: str, schemes: tuple[str, ...], example: str) -> None:
    """Refuse a URL that cannot be used, in words that never quote it (it may hold a password)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - reading it checks it: a port that is no number raises
    except ValueError:
        raise ValueError(f"is not a URL that can be read: write it as {example}") from None
    scheme = parts.scheme.partition("+")[0]
    if scheme not in schemes:
        raise ValueError(
            f"must start with {' or '.join(s + '://' for s in schemes)}, as in {example}"
        )


def _default_var_dir() -> Path:
    """``$XDG_STATE_HOME/mailroom``, else ``~/.local/state/mailroom``."""
    state = os.environ.get("XDG_STATE_HOME", "")
    base = Path(state) if os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "mailroom"


#: A help desk id or mailbox name: it names queues, leases, log lines and files in
#: `errors download`, so it is short and plain.
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _sendable(value: str | None) -> str | None:
    # The message never shows the value: it may be a password.
    if value and any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise ValueError(
            "holds a control character (a line break, tab or similar) or text that is not "
            "valid Unicode, which cannot be sent to a mail server: remove it"
        )
    return value


#: A user name or other credential sent to a server as it is.
Credential = Annotated[str | None, AfterValidator(_sendable)]
#: A credential that is sealed in the store and masked when shown (see ``SECRET_FIELDS``).
Secret = Annotated[str | None, Field(json_schema_extra={"secret": True}), AfterValidator(_sendable)]
#: A file name extension, normalised (``*.EXE`` -> ``exe``); see ``contracts.extensions``.
Extension = Annotated[str, AfterValidator(extension_setting)]


class AttachmentSettings(_Strict):
    max_size_mb: float = Field(default=10, gt=0, le=MAX_MB)
    restricted_extensions: list[Extension] = ["exe", "bat", "cmd", "com", "js", "vbs", "scr", "msi"]
    allowed_extensions: list[Extension] = []


class ConnectivitySettings(_Strict):
    consecutive_retry_threshold: int = Field(default=5, ge=1, le=MAX_COUNT)
    enabled: bool = True


class RateLimitSettings(_Strict):
    """At most ``per_address`` notification emails to one address in ``per_minutes``.

    Breaks mail loops with auto-responders; emails over the limit are kept, not sent.
    """

    per_address: int = Field(default=10, ge=1, le=MAX_COUNT)
    per_minutes: float = Field(default=60, gt=0, le=WEEK_S / 60)


class NotificationSettings(_Strict):
    support_reps: list[str] = []
    admins: list[str] = []
    attachment_stripped: bool = True
    connectivity: ConnectivitySettings = ConnectivitySettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    #: Admins are warned this many days before an OAuth refresh token is expected to lapse
    #: unused (Microsoft: 90 days after its last use).
    token_lapse_warning_days: int = Field(default=14, ge=1, le=89)


class TlsSettings(_Strict):
    verify: bool = True
    ca_file: str | None = None


class RetrySettings(_Strict):
    """When a notification email is tried again after the outgoing server failed.

    The wait doubles from ``first_delay_seconds`` up to ``max_delay_minutes``; the email is
    given up after ``max_attempts`` attempts or ``give_up_after_hours`` since it was created.
    """

    first_delay_seconds: float = Field(default=30, gt=0, le=WEEK_S)
    max_delay_minutes: float = Field(default=30, gt=0, le=WEEK_S / 60)
    give_up_after_hours: float = Field(default=24, gt=0, le=YEAR_S / 3600)
    max_attempts: int = Field(default=60, ge=1, le=MAX_COUNT)

    @model_validator(mode="after")
    def _delays_grow(self) -> RetrySettings:
        if self.max_delay_minutes * 60 < self.first_delay_seconds:
            raise ValueError(
                f"max_delay_minutes ({self.max_delay_minutes:g}) is shorter than "
                f"first_delay_seconds ({self.first_delay_seconds:g} s): raise max_delay_minutes "
                "or lower first_delay_seconds"
            )
        return self


class OutgoingSettings(_Strict):
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "none"
    username: Credential = None
    password: Secret = None
    from_address: str | None = None
    #: Certificate checks for ``starttls`` and ``ssl``.
    tls: TlsSettings = TlsSettings()
    retry: RetrySettings = RetrySettings()

    @model_validator(mode="after")
    def _tls_needs_security(self) -> OutgoingSettings:
        # Compared with the default, not the fields set: stored settings list every field.
        if self.security == "none" and self.tls != TlsSettings():
            raise ValueError(
                "`tls` applies to security starttls or ssl: set `security`, or remove `tls`"
            )
        return self


class NewRequestSettings(_Strict):
    enabled: bool = True
    allow: list[str] = []


class ErrorFolderSettings(_Strict):
    enabled: bool = True
    name: str = "Errors"
    stop_after: int = Field(default=50, ge=1, le=MAX_COUNT)
    notify: bool = True


class MailboxSettings(_Strict):
    """One mailbox. Which fields apply depends on ``protocol``; wrong combinations are refused."""

    name: Name
    protocol: Protocol
    auth: Literal["basic", "oauth"] = "basic"
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    username: Credential = None
    password: Secret = None
    addresses: list[str] = []
    fetch_every_minutes: float = Field(default=1, gt=0, le=WEEK_S / 60)
    #: On the first connection, which mail already in the mailbox becomes requests.
    import_existing: Literal["all", "unread", "none"] = "unread"
    folder: str = Field(default="INBOX", min_length=1)
    #: Plain IMAP/POP only: upgrade the connection with STARTTLS/STLS before logging in.
    starttls: bool = False
    timeout_seconds: float = Field(default=30, gt=0, le=600)
    #: A mail bigger than this is not downloaded: it is dead-lettered with the reason.
    max_mail_mb: float = Field(default=50, gt=0, le=MAX_MB)
    tls: TlsSettings = TlsSettings()
    proxy: str | None = Field(default=None, pattern=r"^(http|socks5)://[^/:]+:\d+/?$")
    debug: bool = False
    #: IMAP/IMAPS only: keep a connection in IDLE so new mail is fetched within seconds of
    #: its arrival; polling every ``fetch_every_minutes`` continues beside it.
    idle: bool = False
    new_requests: NewRequestSettings = NewRequestSettings()
    error_folder: ErrorFolderSettings = ErrorFolderSettings()
    enabled: bool = True
    path: str | None = None
    connect_url: str | None = None
    graph_endpoint: str | None = None
    client_id: str | None = None
    client_secret: Secret = None
    authorization_url: str | None = None
    token_url: str | None = None
    scope: str | None = None
    redirect_url: str | None = None

    @model_validator(mode="after")
    def _fits_protocol(self) -> MailboxSettings:
        if self.auth == "oauth":
            _fill_oauth_defaults(self)
        if self.protocol == "graph" and self.graph_endpoint is None:
            self.graph_endpoint = DEFAULT_GRAPH_ENDPOINT
        problems = _protocol_problems(self) + _url_problems(self) + _folder_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _fill_oauth_defaults(box: MailboxSettings) -> None:
    """Fill what an OAuth mailbox's provider implies: Gmail's URLs, Microsoft's authorization
    URL, and the scope of the protocol in the mailbox's cloud."""
    if box.protocol == "imaps" and is_google(box.host, box.token_url):
        box.token_url = box.token_url or GOOGLE_TOKEN_URL
        box.authorization_url = box.authorization_url or GOOGLE_AUTHORIZATION_URL
    if box.authorization_url is None and is_microsoft_token_url(box.token_url):
        box.authorization_url = microsoft_authorization_url(box.token_url or "")
    if box.scope is None:
        us = any(is_us_government(host_of(u)) for u in _cloud_fields(box).values())
        box.scope = default_scope(
            box.protocol,
            host=box.host,
            token_url=box.token_url,
            graph_endpoint=box.graph_endpoint,
            us_government=us,
        )
    box.redirect_url = box.redirect_url or DEFAULT_REDIRECT_URL


def _cloud_fields(box: MailboxSettings) -> dict[str, str | None]:
    return {name: getattr(box, name) for name in CLOUD_FIELDS}


def _url_problems(box: MailboxSettings) -> list[str]:
    """Each URL field checked: https (a redirect URL may be http on loopback), a host, and
    every host in one Microsoft cloud. A problem names its field."""
    found: list[tuple[str, str]] = []
    for name in ("connect_url", "graph_endpoint", "authorization_url", "token_url"):
        if (problem := _https_url_problem(getattr(box, name))) is not None:
            found.append((name, problem))
    if (problem := _redirect_url_problem(box.redirect_url)) is not None:
        found.append(("redirect_url", problem))
    if box.auth == "oauth" or box.protocol in ("ews", "graph"):
        found += cloud_problems(_cloud_fields(box))
    return [f".{name}: {problem}" for name, problem in found]


def _https_url_problem(url: str | None) -> str | None:
    if url is None:
        return None
    parts = _split_url(url)
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not a URL: write it as https://host/path"
    if parts.scheme != "https":
        return f"{url!r} is plain http, which would send credentials unencrypted: use https://"
    return None


def _redirect_url_problem(url: str | None) -> str | None:
    if url is None:
        return None
    parts = _split_url(url)
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not a URL: write it as http://localhost:8765/oauth/callback"
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme == "http" and not loopback:
        return (
            f"{url!r} is plain http on another host, which would send the authorization code "
            "unencrypted: use https://, or http://localhost"
        )
    return None


def _split_url(url: str) -> Any:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    return parts


def _protocol_problems(box: MailboxSettings) -> list[str]:
    p = box.protocol
    problems = []
    if p == "maildir" and not box.path:
        problems.append("protocol maildir needs `path`: the folder that holds cur/, new/, tmp/")
    if p in DEFAULT_PORTS and not box.host:
        problems.append(f"protocol {p} needs `host`: the mail server's name")
    if p == "ews" and not box.connect_url:
        problems.append("protocol ews needs `connect_url`, e.g. https://host/EWS/Exchange.asmx")
    if box.auth == "oauth" and p not in OAUTH_PROTOCOLS:
        problems.append(
            f"auth oauth is not available for protocol {p}: use auth basic, "
            "or protocol imaps/ews/graph"
        )
    if p in OAUTH_ONLY_PROTOCOLS and box.auth != "oauth":
        problems.append(f"protocol {p} takes only auth oauth: set `auth: oauth`")
    if box.auth == "oauth" and not (box.client_id and box.token_url):
        problems.append("auth oauth needs `client_id` and `token_url`")
    elif box.auth == "oauth" and not box.authorization_url:
        problems.append(
            "auth oauth needs `authorization_url`: the provider's page where the mailbox's "
            "owner consents"
        )
    if box.auth == "oauth" and not box.scope:
        problems.append(
            f"auth oauth needs `scope` for this provider (no default for protocol {p} "
            "there): set the scope its documentation names for mail access"
        )
    if box.auth == "oauth" and not box.username:
        problems.append(
            "auth oauth needs `username`: the account that consents, which Mailroom checks"
        )
    if box.idle and p not in IDLE_PROTOCOLS:
        problems.append(
            f"`idle` (push delivery by IMAP IDLE) applies to protocol imap and imaps only; "
            f"protocol {p} is polled every `fetch_every_minutes`: remove `idle`"
        )
    if box.starttls and p not in STARTTLS_PROTOCOLS:
        problems.append(
            f"`starttls` applies to plain imap and pop only; protocol {p} is already encrypted "
            "or has no STARTTLS: remove it"
        )
    return problems


def _folder_problems(box: MailboxSettings) -> list[str]:
    """Folder names checked for the protocol; a problem starting with ``.`` names a field."""
    error_folder = box.error_folder
    found: list[tuple[str, str | None]] = []
    if box.protocol == "maildir" and error_folder.enabled:
        found.append(("error_folder.name", maildir_folder_problem(error_folder.name)))
    elif box.protocol in ("imap", "imaps"):
        found.append(("folder", imap_folder_problem(box.folder)))
        if error_folder.enabled:
            problem = imap_folder_problem(error_folder.name)
            if problem is None and same_imap_folder(error_folder.name, box.folder):
                problem = (
                    f"{error_folder.name!r} is the folder mail is fetched from (`folder`): "
                    "failed mail would stay where it is; choose another name, e.g. `Errors`"
                )
            found.append(("error_folder.name", problem))
    elif box.protocol in ("pop", "pops"):
        no_folders = "POP has no folders: failed mail is kept in the dead-letter queue only"
        if error_folder.name != ErrorFolderSettings().name:
            found.append(("error_folder.name", f"{no_folders}; remove it"))
        if box.folder != "INBOX":
            found.append(("folder", f"{no_folders} and mail is read from the inbox; remove it"))
    return [f".{field}: {problem}" for field, problem in found if problem]


class HelpdeskSettings(_Strict):
    id: Name
    attachments: AttachmentSettings = AttachmentSettings()
    notifications: NotificationSettings = NotificationSettings()
    outgoing: OutgoingSettings | None = None
    mailboxes: list[MailboxSettings] = []


class SettingsFile(_Strict):
    """The whole settings file."""

    helpdesks: list[HelpdeskSettings] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> SettingsFile:
        _refuse_repeats(
            "help desk id", [(f"helpdesks[{i}].id", h.id) for i, h in enumerate(self.helpdesks)]
        )
        boxes = [
            (f"helpdesks[{i}].mailboxes[{j}].name", m.name)
            for i, h in enumerate(self.helpdesks)
            for j, m in enumerate(h.mailboxes)
        ]
        _refuse_repeats("mailbox name", boxes)
        _refuse_shared_mailboxes(self)
        return self


def _refuse_repeats(what: str, named: list[tuple[str, str]]) -> None:
    # Compared ignoring case: `Support` and `support` would be told apart by no one reading
    # a log, and are one file name on a file system that ignores case.
    seen: dict[str, tuple[str, str]] = {}
    for path, name in named:
        if (first := seen.get(name.casefold())) is not None:
            spelled = "" if first[1] == name else f" (as {first[1]!r}; case does not count)"
            raise ValueError(
                f"{path}: {what} {name!r} is already used at {first[0]}{spelled}; "
                f"every {what} must be unique"
            )
        seen[name.casefold()] = (path, name)


def _refuse_shared_mailboxes(settings: SettingsFile) -> None:
    """Two mailboxes reading one mailbox would make two requests of every mail; a mailbox
    reading another's error folder would fetch again the mail that failed there."""
    sources: dict[tuple[str, ...], tuple[str, str]] = {}
    error_folders: dict[tuple[str, ...], tuple[str, str]] = {}
    for i, desk in enumerate(settings.helpdesks):
        for j, box in enumerate(desk.mailboxes):
            where = (
                f"helpdesks[{i}].mailboxes[{j}]",
                f"help desk {desk.id!r} mailbox {box.name!r}",
            )
            source = _source_place(box)
            if source is None:
                continue
            if source in sources:
                raise ValueError(
                    f"{where[0]}: {where[1]} reads the same mailbox as {sources[source][1]} "
                    f"({_shown(source)}), so every mail would become two requests: remove one "
                    "of them, or point it at another mailbox"
                )
            sources[source] = where
            if box.error_folder.enabled and box.protocol not in ("pop", "pops"):
                if (error_folder := _source_place(box, box.error_folder.name)) is not None:
                    error_folders[error_folder] = where
    for place, (path, who) in sources.items():
        if place in error_folders:
            raise ValueError(
                f"{path}: {who} reads the error folder of {error_folders[place][1]} "
                f"({_shown(place)}): mail that failed there would be fetched again; point it "
                "at another mailbox, or rename that error folder"
            )


def _source_place(box: MailboxSettings, folder: str | None = None) -> tuple[str, ...] | None:
    """Where a mailbox reads its mail (or ``folder`` of the same account), comparable
    between mailboxes: a resolved Maildir path, or server, port, user name and folder."""
    if box.protocol == "maildir" and box.path:
        path = Path(box.path) / f".{folder}" if folder is not None else Path(box.path)
        return ("maildir", str(path.resolve()))
    if box.protocol in DEFAULT_PORTS and box.host:
        port = str(box.port or DEFAULT_PORTS[box.protocol])
        name = folder if folder is not None else box.folder
        name = "INBOX" if box.protocol in ("pop", "pops") or name.upper() == "INBOX" else name
        host = box.host.strip().rstrip(".").lower()
        return ("server", host, port, (box.username or "").casefold(), name)
    return None


def _shown(place: tuple[str, ...]) -> str:
    if place[0] == "maildir":
        return f"Maildir {place[1]}"
    _, host, port, user, folder = place
    return f"{user or '(no username)'} on {host}:{port}, folder {folder}"


# `$$` is a literal `$`; `${NAME}` takes NAME from the environment; any other `$` followed
# by a name or `{` is a mistake, most often `$NAME` meant as a variable.
_DOLLAR = re.compile(
    r"\$(?:(?P<dollar>\$)|\{(?P<var>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bad>\{|[A-Za-z_]\w*))"
)


class _Variables:
    """Replaces ``${NAME}`` in the settings with values from ``env``; collects mistakes."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = env
        self.missing: set[str] = set()
        self.empty: set[str] = set()
        self.problems: list[str] = []

    def expand(self, value: Any, path: str = "", key: str = "") -> Any:
        if isinstance(value, str):
            return _DOLLAR.sub(lambda m: self._replace(m, path, key), value)
        if isinstance(value, list):
            return [self.expand(v, f"{path}[{i}]", key) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {
                k: self.expand(v, f"{path}.{k}" if path else str(k), str(k))
                for k, v in value.items()
            }
        return value

    def _replace(self, match: re.Match[str], path: str, key: str) -> str:
        if match["dollar"]:
            return "$"
        if name := match["var"]:
            value = self._env.get(name)
            if value is None:
                self.missing.add(name)
            elif not value:
                self.empty.add(name)
            return value or ""
        bad = match["bad"]
        if key in SECRET_FIELDS:  # never show any part of a secret
            written, name = "holds `$` followed by a name or `{`, which is kept as written", "NAME"
        elif bad == "{":
            written, name = "holds `${` without a variable name and `}`", "NAME"
        else:
            written, name = f"holds `${bad}`, which is kept as written", bad
        self.problems.append(
            f"{path}: {written}: write `${{{name}}}` to take the environment variable {name}, "
            "or `$$` for a literal `$`"
        )
        return match[0]

    def refusal(self) -> str | None:
        lines = list(dict.fromkeys(self.problems))
        if self.missing:
            names = ", ".join(sorted(self.missing))
            lines.append(f"environment variable(s) not set: {names}; export them or edit the file")
        if self.empty:
            names = ", ".join(sorted(self.empty))
            lines.append(f"environment variable(s) empty: {names}; set them or edit the file")
        return "\n".join(lines) or None


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not str(part).startswith("function-"):
            path += f".{part}" if path else str(part)
    return path


def problems_of(exc: ValidationError) -> list[str]:
    """One line per problem, each naming the field's path and the fix, never a secret."""
    return [line for err in exc.errors() for line in _describe(err).split("\n")]


def _describe(err: ErrorDetails) -> str:
    path = _field_path(err["loc"])
    kind = err["type"]
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return f"{path or '(top level)'}: unknown field; remove it or check its spelling"
    if kind == "missing":
        return f"{path or '(top level)'}: required field is missing; add it"
    return "\n".join(_placed(path, line) for line in msg.split("\n"))


def _placed(path: str, line: str) -> str:
    if line.startswith("helpdesks["):  # the check named the exact field itself
        return line
    if line.startswith("."):  # a field inside the one validated: `.error_folder.name: ...`
        return path + line if path else line[1:]
    return f"{path or '(top level)'}: {line}"


def parse_settings(text: str, *, env: dict[str, str] | None = None) -> SettingsFile:
    """Validate a YAML settings text; ``${VAR}`` takes its value from ``env``.

    Raises:
        SettingsError: with one line per problem, each naming the field's path and the fix.
    """
    data = load_yaml(text)
    if not isinstance(data, dict):
        raise SettingsError("the settings file must be a mapping with a `helpdesks:` list")
    variables = _Variables(dict(os.environ) if env is None else env)
    data = variables.expand(data)
    if refusal := variables.refusal():
        raise SettingsError(refusal)
    try:
        return SettingsFile.model_validate(data)
    except ValidationError as exc:
        raise SettingsError("\n".join(problems_of(exc))) from None


def load_settings_file(path: Path, *, env: dict[str, str] | None = None) -> SettingsFile:
    """Read and validate a settings file (UTF-8, at most 1 MiB); see ``parse_settings``."""
    return parse_settings(read_settings_text(path), env=env)


def _settings_models(model: type[BaseModel] = SettingsFile) -> set[type[BaseModel]]:
    found = {model}
    for field in model.model_fields.values():
        for inner in _models_in(field.annotation):
            if inner not in found:
                found |= _settings_models(inner)
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


#: Names of the fields declared ``Secret`` in the settings file: sealed in the store and
#: masked when shown, both from this one list.
SECRET_FIELDS: frozenset[str] = frozenset(
    name
    for model in _settings_models()
    for name, field in model.model_fields.items()
    if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("secret")
)
