"""Sign-in state, CSRF and response headers for the admin page.

The session cookie holds a random token (the store keeps its hash); each session has a CSRF
token that every state-changing request must send back, in the form field ``csrf`` or the
``X-CSRF-Token`` header. Sign-in itself, before any session, is protected by a double-submit
cookie.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.web.context import WebContext
from services.web.sessions import Session, csrf_ok

SESSION_COOKIE = "mailroom_session"
LOGIN_CSRF_COOKIE = "mailroom_login_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The page's forms hold a few dozen short fields and never a file: anything larger is
#: refused (400) before it is kept in memory or spooled to disk.
MAX_FIELDS = 200
MAX_FIELD_BYTES = 64 * 1024

Handler = Callable[[Request], Awaitable[Response]]

#: No inline script or style, nothing from elsewhere, never framed.
HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class SecurityHeaders:
    """Adds ``HEADERS`` to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k.encode(), v.encode())
                    for k, v in HEADERS.items()
                    if k.encode() not in present
                ]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, with_headers)


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


async def current_session(request: Request) -> Session | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return await run_in_threadpool(context(request).sessions.current, token)


def signed_in(handler: Handler) -> Handler:
    """Only for a live session; a state-changing request also needs the session's CSRF token.

    Without a session, a page is sent to sign-in (and back afterwards); anything else gets
    401. A missing or wrong CSRF token gets 403 and changes nothing.
    """

    async def guarded(request: Request) -> Response:
        session = await current_session(request)
        if session is None:
            expired = SESSION_COOKIE in request.cookies
            if request.method in SAFE_METHODS and not _wants_json(request):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                query = "expired=1&" if expired else ""
                response: Response = RedirectResponse(
                    f"/login?{query}next={_quoted(target)}", status_code=303
                )
            else:
                response = PlainTextResponse(
                    "your session has ended; sign in again", status_code=401
                )
            if expired:
                response.delete_cookie(SESSION_COOKIE, path="/")
            return response
        request.state.session = session
        if request.method not in SAFE_METHODS and not await _csrf_sent(request, session):
            return PlainTextResponse(
                "the form's security token is missing or wrong; reload the page and try again",
                status_code=403,
            )
        return await handler(request)

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded


async def _csrf_sent(request: Request, session: Session) -> bool:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and _is_form(request):
        value = (await form_of(request)).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    return csrf_ok(session, sent)


async def form_of(request: Request) -> FormData:
    """The request's form, within ``MAX_FIELDS`` and ``MAX_FIELD_BYTES`` and without files
    (Starlette answers 400 beyond them). Read once: later calls get the same form."""
    return await request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES)


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _quoted(path: str) -> str:
    return quote(path, safe="/")


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a path on this site only (never ``//elsewhere``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


def login_csrf_ok(request: Request, sent: Any) -> bool:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not cookie or not isinstance(sent, str):
        return False
    return hmac.compare_digest(cookie.encode(), sent.encode())


def set_cookie(response: Response, ctx: WebContext, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=ctx.cookie_secure,
        httponly=True,
        # Lax, not Strict: the OAuth provider's redirect back is a top-level GET from
        # another site, and must arrive signed in. Every POST carries a CSRF token anyway.
        samesite="lax",
    )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
