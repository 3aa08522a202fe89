"""``mailroom admin``: the admin web page, and its users."""

from __future__ import annotations

import ipaddress
import logging
import signal
from datetime import timedelta

import click

from contracts.settings import Settings
from services.admin import Admin
from services.cli.admin_users import create_user
from services.cli.app import main
from services.cli.common import Fail, explained, load_settings, open_store
from services.replay import replay_publisher
from services.runtime.clock import SystemClock
from services.runtime.config_store import ConfigStore
from services.runtime.stage import secret_box
from services.web.audit import AuditLog
from services.web.consents import PendingConsents
from services.web.context import WebContext
from services.web.login_limit import LoginLimiter
from services.web.passwords import AdminUsers
from services.web.sessions import Sessions

log = logging.getLogger(__name__)


@main.group(invoke_without_command=True)
@click.option("--host", default=None, help="address to listen on [MAILROOM_ADMIN_HOST]")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="port to listen on [MAILROOM_ADMIN_PORT, 8080]",
)
@click.pass_context
def admin(ctx: click.Context, host: str | None, port: int | None) -> None:
    """The admin web page: mailboxes, their settings, error folders and dead letters."""
    if ctx.invoked_subcommand is not None:
        return
    with explained():
        settings = load_settings()
        web = web_context(settings)
        host = host or settings.admin_host
        port = settings.admin_port if port is None else port
        if not web.users.exists_any():
            log.warning("no admin user yet: create one with `mailroom admin create-user NAME`")
        if not settings.admin_cookie_secure and not _loopback(host):
            log.warning(
                "MAILROOM_ADMIN_COOKIE_SECURE is false and the page listens on %s: session "
                "cookies would cross the network in clear; serve it over HTTPS",
                host,
            )
    _serve(web, host, port, settings.admin_trusted_proxies)


admin.add_command(create_user)


def web_context(settings: Settings) -> WebContext:
    store = open_store(settings)
    box = secret_box(settings)
    clock = SystemClock()
    return WebContext(
        store=store,
        box=box,
        clock=clock,
        config=ConfigStore(store, box),
        admin=Admin(store, box),
        users=AdminUsers(store, clock),
        sessions=Sessions(
            store,
            clock,
            lifetime=timedelta(hours=settings.admin_session_hours),
            idle=timedelta(minutes=settings.admin_idle_minutes),
        ),
        limiter=LoginLimiter(store, clock),
        audit=AuditLog(store, clock),
        consents=PendingConsents(),
        replay_publisher=lambda: replay_publisher(settings, open_store),
        cookie_secure=settings.admin_cookie_secure,
        refresh_seconds=settings.admin_refresh_seconds,
        public_url=settings.admin_url,
    )


def _serve(web: WebContext, host: str, port: int, trusted_proxies: str) -> None:
    import uvicorn  # only this command serves HTTP

    from services.web.app import create_app

    config = uvicorn.Config(
        create_app(web),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        # Behind a reverse proxy, the client address (which the sign-in limit counts) comes
        # from its X-Forwarded-For, believed only from these addresses.
        proxy_headers=True,
        forwarded_allow_ips=trusted_proxies,
        server_header=False,
    )
    server = uvicorn.Server(config)
    # uvicorn stops on SIGTERM or SIGINT, then raises the signal again for the handler it
    # found: ignored, so a stop asked for ends with status 0, as the workers' does.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    try:
        server.run()
    except OSError as exc:
        raise Fail(
            f"cannot serve the admin page on {host}:{port}: {exc.strerror}; choose another "
            "with --port or MAILROOM_ADMIN_PORT"
        ) from None
    if not server.started:
        raise Fail(
            f"cannot serve the admin page on {host}:{port}: the address is in use or not "
            "available here; choose another with --host/--port"
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
