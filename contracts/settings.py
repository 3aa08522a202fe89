"""Settings: the ``MAILROOM_*`` environment and the YAML settings file.

This is the only module that reads ``os.environ``. Everything else receives typed values.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

Protocol = Literal["pop", "pops", "imap", "imaps", "ews", "graph", "maildir"]
DEFAULT_PORTS = {"pop": 110, "pops": 995, "imap": 143, "imaps": 993}


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
    max_attempts: int = Field(default=3, ge=1)
    #: How long a worker waits out an unreachable broker or store before it gives up.
    outage_limit_seconds: float = Field(default=600, gt=0)
    #: ``/healthz`` and ``/readyz`` are served on this port when it is set (0: any free one).
    health_port: int | None = Field(default=None, ge=0, le=65535)
    health_host: str = "127.0.0.1"
    #: Parser limits against hostile mail; a mail over one is dead-lettered with the reason.
    max_mime_depth: int = Field(default=20, ge=1)
    max_mime_parts: int = Field(default=500, ge=1)
    #: Size of the top-level header block.
    max_header_kb: float = Field(default=256, gt=0)
    #: Sum of the decoded sizes of all parts of one mail.
    max_decoded_mb: float = Field(default=100, gt=0)

    @field_validator("var_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'mailroom.db'}"

    @property
    def effective_key_file(self) -> Path:
        return self.secret_key_file or self.var_dir / "secret.key"


def _default_var_dir() -> Path:
    """``$XDG_STATE_HOME/mailroom``, else ``~/.local/state/mailroom``."""
    state = os.environ.get("XDG_STATE_HOME", "")
    base = Path(state) if os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "mailroom"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttachmentSettings(_Strict):
    max_size_mb: float = Field(default=10, gt=0)
    restricted_extensions: list[str] = ["exe", "bat", "cmd", "com", "js", "vbs", "scr", "msi"]
    allowed_extensions: list[str] = []


class ConnectivitySettings(_Strict):
    consecutive_retry_threshold: int = Field(default=5, ge=1)
    enabled: bool = True


class RateLimitSettings(_Strict):
    """At most ``per_address`` notification emails to one address in ``per_minutes``.

    Breaks mail loops with auto-responders; emails over the limit are kept, not sent.
    """

    per_address: int = Field(default=10, ge=1)
    per_minutes: float = Field(default=60, gt=0)


class NotificationSettings(_Strict):
    support_reps: list[str] = []
    admins: list[str] = []
    attachment_stripped: bool = True
    connectivity: ConnectivitySettings = ConnectivitySettings()
    rate_limit: RateLimitSettings = RateLimitSettings()


class TlsSettings(_Strict):
    verify: bool = True
    ca_file: str | None = None


class RetrySettings(_Strict):
    """When a notification email is tried again after the outgoing server failed.

    The wait doubles from ``first_delay_seconds`` up to ``max_delay_minutes``; the email is
    given up after ``max_attempts`` attempts or ``give_up_after_hours`` since it was created.
    """

    first_delay_seconds: float = Field(default=30, gt=0)
    max_delay_minutes: float = Field(default=30, gt=0)
    give_up_after_hours: float = Field(default=24, gt=0)
    max_attempts: int = Field(default=60, ge=1)

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
    username: str | None = None
    password: str | None = None
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
    stop_after: int = Field(default=50, ge=1)
    notify: bool = True


class MailboxSettings(_Strict):
    """One mailbox. Which fields apply depends on ``protocol``; wrong combinations are refused."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    protocol: Protocol
    auth: Literal["basic", "oauth"] = "basic"
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    addresses: list[str] = []
    fetch_every_minutes: float = Field(default=1, gt=0)
    #: On the first connection, which mail already in the mailbox becomes requests.
    import_existing: Literal["all", "unread", "none"] = "unread"
    folder: str = Field(default="INBOX", min_length=1)
    #: Plain IMAP/POP only: upgrade the connection with STARTTLS/STLS before logging in.
    starttls: bool = False
    timeout_seconds: float = Field(default=30, gt=0, le=600)
    #: A mail bigger than this is not downloaded: it is dead-lettered with the reason.
    max_mail_mb: float = Field(default=50, gt=0)
    tls: TlsSettings = TlsSettings()
    proxy: str | None = Field(default=None, pattern=r"^(http|socks5)://[^/:]+:\d+/?$")
    debug: bool = False
    new_requests: NewRequestSettings = NewRequestSettings()
    error_folder: ErrorFolderSettings = ErrorFolderSettings()
    enabled: bool = True
    path: str | None = None
    connect_url: str | None = None
    graph_endpoint: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    authorization_url: str | None = None
    token_url: str | None = None
    scope: str | None = None
    redirect_url: str | None = None

    @model_validator(mode="after")
    def _fits_protocol(self) -> MailboxSettings:
        for problem in _protocol_problems(self):
            raise ValueError(problem)
        return self


def _protocol_problems(box: MailboxSettings) -> list[str]:
    p = box.protocol
    problems = []
    if p == "maildir" and not box.path:
        problems.append("protocol maildir needs `path`: the folder that holds cur/, new/, tmp/")
    if p in DEFAULT_PORTS and not box.host:
        problems.append(f"protocol {p} needs `host`: the mail server's name")
    if p == "ews" and not box.connect_url:
        problems.append("protocol ews needs `connect_url`, e.g. https://host/EWS/Exchange.asmx")
    if box.auth == "oauth" and p not in ("imaps", "ews", "graph"):
        problems.append(
            f"auth oauth is not available for protocol {p}: use auth basic, "
            "or protocol imaps/ews/graph"
        )
    if p == "graph" and box.auth != "oauth":
        problems.append("protocol graph takes only auth oauth: set `auth: oauth`")
    if box.auth == "oauth" and not (box.client_id and box.token_url):
        problems.append("auth oauth needs `client_id` and `token_url`")
    if box.starttls and p not in ("imap", "pop"):
        problems.append(
            f"`starttls` applies to plain imap and pop only; protocol {p} is already encrypted "
            "or has no STARTTLS: remove it"
        )
    return problems


class HelpdeskSettings(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
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
        return self


def _refuse_repeats(what: str, named: list[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for path, name in named:
        if name in seen:
            raise ValueError(
                f"{path}: {what} {name!r} is already used at {seen[name]}; "
                f"every {what} must be unique"
            )
        seen[name] = path


class SettingsError(Exception):
    """A settings file that cannot be used; the message names each field and the fix."""


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: Any, env: dict[str, str], missing: list[str]) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                missing.append(m.group(1))
                return ""
            return env[m.group(1)]

        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [_expand(v, env, missing) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, env, missing) for k, v in value.items()}
    return value


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not str(part).startswith("function-"):
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _describe(err: ErrorDetails) -> str:
    path = _field_path(err["loc"])
    kind = err["type"]
    msg = err["msg"].removeprefix("Value error, ")
    if msg.startswith("helpdesks["):  # the check named the exact field itself
        return msg
    if kind == "extra_forbidden":
        return f"{path}: unknown field; remove it or check its spelling"
    if kind == "missing":
        return f"{path}: required field is missing; add it"
    if kind == "literal_error":
        return f"{path}: {msg}"
    return f"{path}: {msg}"


def parse_settings(text: str, *, env: dict[str, str] | None = None) -> SettingsFile:
    """Validate a YAML settings text; ``${VAR}`` takes its value from ``env``.

    Raises:
        SettingsError: with one line per problem, each naming the field's path and the fix.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError("the settings file must be a mapping with a `helpdesks:` list")
    missing: list[str] = []
    data = _expand(data, dict(os.environ) if env is None else env, missing)
    if missing:
        names = ", ".join(sorted(set(missing)))
        raise SettingsError(
            f"environment variable(s) not set: {names}; export them or edit the file"
        )
    try:
        return SettingsFile.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        raise SettingsError("\n".join(lines)) from None


def load_settings_file(path: Path, *, env: dict[str, str] | None = None) -> SettingsFile:
    """Read and validate a settings file; see ``parse_settings``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror}") from exc
    return parse_settings(text, env=env)
