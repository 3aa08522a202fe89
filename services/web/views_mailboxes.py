"""The mailbox list with each mailbox's status, and fetching paused or resumed."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from services.oauth.token_store import SqlTokenStore
from services.runtime.errors import ConfigError
from services.runtime.mailbox_health import MailboxHealth
from services.web.context import WebContext
from services.web.names import is_name
from services.web.pages import page
from services.web.security import context, signed_in
from services.web.status import MailboxStatus, mailbox_statuses

#: What the list says after an action (only these: the address cannot make it say anything).
DONE = {"resumed": "Fetching resumed", "paused": "Fetching paused", "saved": "Settings saved"}


def _statuses(ctx: WebContext) -> dict[str, list[MailboxStatus]]:
    return mailbox_statuses(ctx.config, SqlTokenStore(ctx.store, ctx.box), ctx.clock)


@signed_in
async def mailbox_list(request: Request) -> Response:
    ctx = context(request)
    desks = await run_in_threadpool(_statuses, ctx)
    return page(
        request,
        "mailboxes.html",
        {
            "desks": desks,
            "refresh_seconds": f"{ctx.refresh_seconds:g}",
            "done": DONE.get(request.query_params.get("done", "")),
            "done_mailbox": _named(request.query_params.get("mailbox", "")),
        },
    )


def _named(text: str) -> str:
    """A mailbox name from the address, or nothing: a link cannot make the page say more."""
    return text if is_name(text) else ""


@signed_in
async def mailbox_tables(request: Request) -> Response:
    """The list's tables alone: the page replaces its own with them every few seconds."""
    desks = await run_in_threadpool(_statuses, context(request))
    return page(request, "_mailbox_tables.html", {"desks": desks})


@signed_in
async def mailbox_status(request: Request) -> Response:
    """The list's figures as JSON, for scripts and monitors."""
    ctx = context(request)
    desks = await run_in_threadpool(_statuses, ctx)
    return JSONResponse({desk: [s.as_json() for s in boxes] for desk, boxes in desks.items()})


@signed_in
async def enable(request: Request) -> Response:
    return await _toggle(request, enabled=True)


@signed_in
async def disable(request: Request) -> Response:
    return await _toggle(request, enabled=False)


async def _toggle(request: Request, *, enabled: bool) -> Response:
    ctx = context(request)
    name = request.path_params["name"]
    admin = request.state.session.username

    def toggle() -> None:
        ctx.config.mailbox(name)  # ConfigError when unknown
        health = MailboxHealth(ctx.store)
        if enabled:
            health.resume(name)
        else:
            health.pause(name, f"paused in the admin page by {admin}; enable it to resume")
        ctx.audit.record(admin, "enable" if enabled else "disable", f"mailbox {name}", [])

    try:
        await run_in_threadpool(toggle)
    except ConfigError as exc:
        return page(
            request, "message.html", {"title": "Not found", "message": str(exc)}, status=404
        )
    done = "resumed" if enabled else "paused"
    return RedirectResponse(f"/?{urlencode({'done': done, 'mailbox': name})}", status_code=303)
