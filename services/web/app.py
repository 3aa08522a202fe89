"""The admin page as an ASGI application: routes, static files and headers."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from services.web import (
    views_audit,
    views_auth,
    views_failures,
    views_mailbox_actions,
    views_mailbox_form,
    views_mailboxes,
)
from services.web.context import WebContext
from services.web.pages import STATIC
from services.web.security import SecurityHeaders


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
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
    app.state.ctx = ctx
    return app
