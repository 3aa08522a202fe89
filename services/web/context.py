"""What the admin page's handlers work with, built once by ``mailroom admin``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.admin import Admin, Publish
from services.runtime.config_store import ConfigStore
from services.runtime.crypto import SecretBox
from services.runtime.ports import Clock
from services.runtime.store import Store
from services.web.audit import AuditLog
from services.web.consents import PendingConsents
from services.web.login_limit import LoginLimiter
from services.web.passwords import AdminUsers
from services.web.sessions import Sessions


@dataclass(frozen=True)
class WebContext:
    store: Store
    box: SecretBox
    clock: Clock
    config: ConfigStore
    admin: Admin
    users: AdminUsers
    sessions: Sessions
    limiter: LoginLimiter
    audit: AuditLog
    #: Where replayed mail goes: a publish function, and what to call when done with it.
    replay_publisher: Callable[[], tuple[Publish, Callable[[], None]]]
    consents: PendingConsents
    #: Cookies only over HTTPS (``MAILROOM_ADMIN_COOKIE_SECURE``).
    cookie_secure: bool = True
    #: How often the mailbox list refreshes itself.
    refresh_seconds: float = 10
    #: The page's public address (``MAILROOM_ADMIN_URL``); None: the request's own.
    public_url: str | None = None
