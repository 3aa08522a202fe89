"""``mailroom oauth authorize``: consent for an ``auth: oauth`` mailbox, tokens stored."""

from __future__ import annotations

import click

from services.cli.app import main
from services.cli.common import Fail, config_store_for, explained, say
from services.oauth.clients import client_for
from services.oauth.consent import Authorized, authorize
from services.oauth.redirect import LoopbackListener, is_loopback
from services.oauth.token_store import SqlTokenStore
from services.poller.sources.http import http_session
from services.runtime.clock import SystemClock
from services.runtime.errors import ConfigError
from services.runtime.mailbox_health import MailboxHealth
from services.runtime.stage import secret_box

#: Long enough to sign in with a second factor; --timeout changes it.
DEFAULT_TIMEOUT_S = 300.0


@main.group()
def oauth() -> None:
    """OAuth 2.0 for mailboxes: authorize."""


@oauth.command("authorize")
@click.argument("mailbox")
@click.option(
    "--paste",
    is_flag=True,
    help="Read the address the browser was redirected to from stdin instead of listening "
    "on the redirect URL (always so for a redirect URL that is not on this machine).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1, max=3600),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the browser to come back to the redirect URL.",
)
def oauth_authorize(mailbox: str, paste: bool, timeout: float) -> None:
    """Authorize MAILBOX: sign in and consent in a browser; its tokens are stored encrypted."""
    with explained():
        settings, store, cfg = config_store_for()
        state = cfg.mailbox(mailbox)
        box = state.settings
        if box.auth != "oauth":
            raise Fail(
                f"mailbox {mailbox!r} logs in with a password (auth {box.auth}): set "
                "`auth: oauth` and the OAuth client settings first"
            )
        if not box.redirect_url:
            raise ConfigError(
                f"mailbox {mailbox!r}: authorizing needs `redirect_url`, as registered with "
                "the OAuth client, e.g. http://localhost:8765/oauth/callback"
            )
        clock = SystemClock()
        client = client_for(box, http_session, clock)
        listen = not paste and is_loopback(box.redirect_url)
        # Bound before the address is shown: a quick browser must find it listening.
        listener = LoopbackListener(box, box.redirect_url) if listen else None

        def redirect(url: str) -> str:
            who = f" as {box.username}" if box.username else ""
            say(f"Open this address in a browser and sign in{who}:")
            click.echo(url)
            if listener is not None:
                say(f"Waiting for the browser to come back to {box.redirect_url} ...")
                return listener.wait(timeout)
            said: str = click.prompt("Paste the address the browser was sent to", err=True)
            return said

        try:
            done = authorize(
                box,
                client,
                redirect,
                SqlTokenStore(store, secret_box(settings)),
                MailboxHealth(store),
                clock,
                paused_reason=None if state.enabled else state.paused_reason,
            )
        finally:
            if listener is not None:
                listener.close()
    _report(done)


def _report(done: Authorized) -> None:
    expires = done.access_expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    if done.account:
        say(f"mailbox {done.mailbox}: authorized by {done.account}; tokens stored encrypted")
    else:
        say(
            f"mailbox {done.mailbox}: authorized; tokens stored encrypted (the provider did not "
            "name the account that consented: check that it was the mailbox's `username`)"
        )
    say(f"access token valid until {expires}; it is refreshed as needed")
    if done.resumed:
        say(f"mailbox {done.mailbox}: fetching resumed")
