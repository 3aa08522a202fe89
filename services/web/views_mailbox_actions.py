"""A mailbox's buttons: fetch a sample mail, test the connection, authorize (OAuth)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from services.oauth.clients import client_for
from services.oauth.consent import Authorized, Redirect, authorize
from services.oauth.token_store import SqlTokenStore
from services.poller.opener import fetch_oldest_unread, mailbox_opener
from services.poller.sample import describe_sample
from services.poller.sources.http import http_session
from services.runtime.errors import ConfigError, InfraError
from services.runtime.mailbox_health import MailboxHealth
from services.web.context import WebContext
from services.web.pages import page
from services.web.security import context, signed_in


def _oldest(ctx: WebContext, name: str) -> bytes | None:
    opener = mailbox_opener(ctx.store, ctx.box, ctx.clock)
    return fetch_oldest_unread(opener, ctx.store, ctx.config.mailbox(name))


async def _try_oldest(request: Request, action: str) -> tuple[bytes | None, Response | None]:
    """The oldest unread mail of the mailbox in the address, or the page with the error."""
    name = request.path_params["name"]
    try:
        return await run_in_threadpool(_oldest, context(request), name), None
    except (ConfigError, InfraError) as exc:
        return None, _result(request, name, action, error=str(exc))


@signed_in
async def sample(request: Request) -> Response:
    action = "Fetch a sample mail"
    raw, failed = await _try_oldest(request, action)
    if failed is not None:
        return failed
    name = request.path_params["name"]
    if raw is None:
        return _result(request, name, action, said="Connected; there is no unread mail to show.")
    described = await run_in_threadpool(describe_sample, raw)
    return _result(request, name, action, sample=described)


@signed_in
async def test_connection(request: Request) -> Response:
    action = "Test connection"
    raw, failed = await _try_oldest(request, action)
    if failed is not None:
        return failed
    waiting = "no unread mail" if raw is None else "unread mail waiting"
    name = request.path_params["name"]
    return _result(request, name, action, said=f"Connected and signed in; {waiting}.")


@signed_in
async def start_authorization(request: Request) -> Response:
    ctx = context(request)
    name = request.path_params["name"]
    admin = request.state.session.username
    try:
        url = await run_in_threadpool(_start, ctx, name, admin)
    except (ConfigError, InfraError) as exc:
        return _result(request, name, "Authorize", error=str(exc))
    return RedirectResponse(url, status_code=303)


def _start(ctx: WebContext, name: str, admin: str) -> str:
    state = ctx.config.mailbox(name)
    box = state.settings
    if box.auth != "oauth":
        raise ConfigError(
            f"mailbox {name!r} signs in with a password: choose OAuth as the authentication "
            "type and fill in the OAuth client fields first"
        )
    if not box.redirect_url:
        raise ConfigError(f"mailbox {name!r}: the redirect URL is not set")
    paused = None if state.enabled else state.paused_reason

    def flow(redirect: Redirect) -> Authorized:
        done = authorize(
            box,
            client_for(box, http_session, ctx.clock),
            redirect,
            SqlTokenStore(ctx.store, ctx.box),
            MailboxHealth(ctx.store),
            ctx.clock,
            paused_reason=paused,
        )
        ctx.audit.record(admin, "authorize", f"mailbox {name}", ["oauth tokens"])
        return done

    return ctx.consents.start(name, admin, flow)


@signed_in
async def oauth_callback(request: Request) -> Response:
    ctx = context(request)
    admin = request.state.session.username
    try:
        done = await run_in_threadpool(ctx.consents.finish, str(request.url), admin)
    except (ConfigError, InfraError) as exc:
        return page(
            request, "message.html", {"title": "Not authorized", "message": str(exc)}, status=400
        )
    return _result(request, done.mailbox, "Authorize", authorized=done)


def callback_url(ctx: WebContext, request: Request) -> str:
    """The redirect URL to register with the OAuth client: this page's ``/oauth/callback``."""
    base = ctx.public_url or str(request.base_url)
    return base.rstrip("/") + "/oauth/callback"


def _result(request: Request, name: str, action: str, **values: Any) -> Response:
    status = 400 if values.get("error") else 200
    return page(
        request, "mailbox_result.html", {"name": name, "action": action} | values, status=status
    )
