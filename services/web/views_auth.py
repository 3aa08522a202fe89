"""Sign-in and sign-out."""

from __future__ import annotations

import math

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from services.web.pages import page
from services.web.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    client_address,
    context,
    form_of,
    login_csrf_ok,
    new_login_csrf,
    safe_next,
    set_cookie,
    signed_in,
)

#: Long enough to type a password, short enough to be of no use later.
LOGIN_FORM_SECONDS = 3600


async def login_form(request: Request) -> Response:
    expired = request.query_params.get("expired") == "1"
    notice = "Your session has ended. Sign in again." if expired else None
    return _form(request, notice=notice, next_path=request.query_params.get("next"))


async def login(request: Request) -> Response:
    ctx = context(request)
    form = await form_of(request)
    username = str(form.get("username", ""))[:200]
    password = str(form.get("password", ""))[:2000]
    target = safe_next(str(form.get("next", "")))
    if not login_csrf_ok(request, form.get("csrf")):
        return _form(
            request,
            error="The sign-in form had expired. Sign in again.",
            username=username,
            next_path=target,
            status=403,
        )
    address = client_address(request)
    wait = await run_in_threadpool(ctx.limiter.wait_seconds, username, address)
    if wait > 0:
        minutes = max(1, math.ceil(wait / 60))
        return _form(
            request,
            error=f"Too many failed sign-ins. Try again in {minutes} minute"
            + ("s." if minutes > 1 else "."),
            username=username,
            next_path=target,
            status=429,
        )
    if not await run_in_threadpool(ctx.users.verify, username, password):
        await run_in_threadpool(ctx.limiter.failed, username, address)
        return _form(
            request,
            error="Wrong user name or password.",
            username=username,
            next_path=target,
            status=401,
        )
    await run_in_threadpool(ctx.limiter.succeeded, username, address)
    new = await run_in_threadpool(ctx.sessions.start, username)
    response = RedirectResponse(target, status_code=303)
    lifetime = max(1, int((new.expires_at - ctx.clock.now()).total_seconds()))
    set_cookie(response, ctx, SESSION_COOKIE, new.token, lifetime)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@signed_in
async def logout(request: Request) -> Response:
    ctx = context(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    await run_in_threadpool(ctx.sessions.end, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _form(
    request: Request,
    *,
    error: str | None = None,
    notice: str | None = None,
    username: str = "",
    next_path: str | None = None,
    status: int = 200,
) -> Response:
    ctx = context(request)
    token = new_login_csrf()
    response = page(
        request,
        "login.html",
        {
            "error": error,
            "notice": notice,
            "username": username,
            "next": safe_next(next_path),
            "login_csrf": token,
        },
        status=status,
    )
    set_cookie(response, ctx, LOGIN_CSRF_COOKIE, token, LOGIN_FORM_SECONDS)
    return response
