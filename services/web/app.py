"""The admin page as an ASGI application: routes, static files and headers."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from services.runtime.errors import InfraError
from services.web import (
    views_audit,
    views_auth,
    views_failures,
    views_mailbox_actions,
    views_mailbox_form,
    views_mailboxes,
)
from services.web.context import WebContext
from services.web.pages import STATIC, page
from services.web.security import HEADERS, SecurityHeaders

log = logging.getLogger(__name__)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


def create_app(ctx: WebContext) -> Starlette:
    routes = [
        Route("/healthz", healthz),
        Route("/login", views_auth.login_form, methods=["GET"]),
        Route("/login", views_auth.login, methods=["POST"]),
        Route("/logout", views_auth.logout, methods=["POST"]),
        Route("/", views_mailboxes.mailbox_list),
        Route("/status", views_mailboxes.mailbox_status),
        Route("/mailboxes-table", views_mailboxes.mailbox_tables),
        Route("/add-mailbox", views_mailbox_form.new_mailbox, methods=["GET"]),
        Route("/add-mailbox", views_mailbox_form.save_mailbox, methods=["POST"]),
        Route("/mailboxes/{name}", views_mailbox_form.edit_mailbox, methods=["GET"]),
        Route("/mailboxes/{name}", views_mailbox_form.save_mailbox, methods=["POST"]),
        Route("/mailboxes/{name}/enable", views_mailboxes.enable, methods=["POST"]),
        Route("/mailboxes/{name}/disable", views_mailboxes.disable, methods=["POST"]),
        Route("/mailboxes/{name}/sample", views_mailbox_actions.sample, methods=["POST"]),
        Route("/mailboxes/{name}/test", views_mailbox_actions.test_connection, methods=["POST"]),
        Route(
            "/mailboxes/{name}/authorize",
            views_mailbox_actions.start_authorization,
            methods=["POST"],
        ),
        Route("/oauth/callback", views_mailbox_actions.oauth_callback),
        Route("/errors", views_failures.error_folders),
        Route("/errors/download", views_failures.download_logs, methods=["POST"]),
        Route("/errors/{name}/move-to-inbox", views_failures.move_to_inbox, methods=["POST"]),
        Route("/dlq", views_failures.dead_letters),
        Route("/dlq/replay", views_failures.replay, methods=["POST"]),
        Route("/dlq/purge", views_failures.purge, methods=["POST"]),
        Route("/dlq/{id}", views_failures.dead_letter),
        Route("/dlq/{id}/replay", views_failures.replay, methods=["POST"]),
        Route("/audit", views_audit.audit_log),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={InfraError: unavailable, Exception: server_error},
    )
    app.state.ctx = ctx
    return app


async def unavailable(request: Request, exc: Exception) -> Response:
    """The store (or broker) cannot be reached or refused a statement: a page that says so,
    and the reason in the log (with the database's address, never its password)."""
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return page(
        request,
        "message.html",
        {
            "title": "Try again in a moment",
            "message": "Mailroom's database could not be used just now, so this was not done. "
            "Try again in a moment; the admin page's log says why.",
        },
        status=503,
    )


async def server_error(request: Request, exc: Exception) -> Response:
    """Anything else: a plain page, never the traceback. Starlette raises the exception
    again after this answer, and uvicorn logs it with its traceback."""
    response = page(
        request,
        "message.html",
        {
            "title": "Something went wrong",
            "message": "The admin page failed on this request; nothing more was done. "
            "Its log holds the details.",
        },
        status=500,
    )
    # Sent from outside the middleware that adds them to every other answer.
    response.headers.update(HEADERS)
    return response
