"""Error folders (counts, the decrypted log download, moving mail back to the inbox) and the
dead-letter queue (list, the decrypted log, replay, purge): what ``mailroom errors`` and
``mailroom dlq`` do, through the same code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from services import reports
from services.admin import Publish
from services.runtime.errors import ConfigError, InfraError
from services.web.context import WebContext
from services.web.names import is_name
from services.web.pages import page
from services.web.security import context, form_of, signed_in

T = TypeVar("T")

#: What the pages say after an action: only these texts, whatever the address holds.
DONE = {
    "moved": "Mails moved back to the inbox; fetching resumed",
    "replayed": "Replayed: the mails are processed again",
    "purged": "Every dead-letter entry was forgotten; mail in error folders stays there",
}


@signed_in
async def error_folders(request: Request) -> Response:
    rows = await run_in_threadpool(context(request).admin.error_counts)
    return page(request, "errors.html", _with_done(request, {"rows": rows}))


@signed_in
async def download_logs(request: Request) -> Response:
    """The decrypted error logs and raw mails as a zip (all mailboxes, or the one named)."""
    ctx = context(request)
    form = await form_of(request)
    mailbox = str(form.get("mailbox") or "") or None
    admin = request.state.session.username
    if mailbox is not None and not is_name(mailbox):
        # Never a mailbox's name (a NUL, say, which PostgreSQL refuses in a query).
        return _refused(request, ConfigError(f"no mailbox named {mailbox[:100]!r}"))
    try:
        done = await run_in_threadpool(ctx.admin.download, mailbox)
    except ConfigError as exc:
        return _refused(request, exc)
    target = f"mailbox {mailbox}" if mailbox else "every mailbox"
    await run_in_threadpool(ctx.audit.record, admin, "download error logs", target, [])
    name = f"mailroom-errors-{mailbox or 'all'}.zip"
    return Response(
        done.archive,
        media_type="application/zip",
        headers={"content-disposition": f'attachment; filename="{_ascii(name)}"'},
    )


@signed_in
async def move_to_inbox(request: Request) -> Response:
    ctx = context(request)
    name = request.path_params["name"]
    admin = request.state.session.username

    def move(publish: Publish) -> Any:
        return ctx.admin.move_to_inbox(name, publish)

    try:
        moved = await run_in_threadpool(_publishing, ctx, move)
    except (ConfigError, InfraError) as exc:
        return _refused(request, exc)
    await run_in_threadpool(ctx.audit.record, admin, "move to inbox", f"mailbox {name}", [])
    query = urlencode({"done": "moved", "moved": moved.moved, "missing": moved.missing})
    return RedirectResponse(f"/errors?{query}", status_code=303)


@signed_in
async def dead_letters(request: Request) -> Response:
    ctx = context(request)

    def rows() -> list[dict[str, Any]]:
        with ctx.store.transaction() as conn:
            return reports.list_dead_letters(conn)

    entries = await run_in_threadpool(rows)
    return page(request, "dlq.html", _with_done(request, {"entries": entries}))


@signed_in
async def dead_letter(request: Request) -> Response:
    ctx = context(request)
    entry_id = _entry_id(request)
    if entry_id is None:
        return _refused(request, ConfigError("no such dead-letter entry"), status=404)

    def read() -> tuple[dict[str, Any], str]:
        ctx.admin.entry(entry_id)  # ConfigError when there is none
        with ctx.store.transaction() as conn:
            [data] = [d for d in reports.list_dead_letters(conn) if d["id"] == entry_id]
        try:
            log = ctx.admin.log_text(entry_id)
        except ConfigError as exc:
            log = f"(the log cannot be shown: {exc})"
        return data, log

    try:
        entry, log = await run_in_threadpool(read)
    except ConfigError as exc:
        return _refused(request, exc, status=404)
    return page(request, "dlq_entry.html", {"entry": entry, "log": log})


@signed_in
async def replay(request: Request) -> Response:
    """One entry (``/dlq/ID/replay``) or all of them (``/dlq/replay``)."""
    ctx = context(request)
    admin = request.state.session.username
    ids: list[int] | None = None
    if "id" in request.path_params:
        entry_id = _entry_id(request)
        if entry_id is None:
            return _refused(request, ConfigError("no such dead-letter entry"), status=404)
        ids = [entry_id]

    def run(publish: Publish) -> tuple[int, list[str]]:
        return ctx.admin.replay(ids, publish)

    try:
        count, skipped = await run_in_threadpool(_publishing, ctx, run)
    except (ConfigError, InfraError) as exc:
        return _refused(request, exc)
    target = f"dead-letter entry {ids[0]}" if ids else "every dead-letter entry"
    await run_in_threadpool(ctx.audit.record, admin, "replay", target, [])
    if skipped:
        return page(
            request,
            "message.html",
            {
                "title": f"Replayed {count}",
                "message": "Not replayed: " + "; ".join(skipped),
                "back": "/dlq",
            },
        )
    return RedirectResponse(f"/dlq?{urlencode({'done': 'replayed'})}", status_code=303)


@signed_in
async def purge(request: Request) -> Response:
    ctx = context(request)
    admin = request.state.session.username
    count = await run_in_threadpool(ctx.admin.purge)
    await run_in_threadpool(ctx.audit.record, admin, "purge", f"{count} dead-letter entries", [])
    return RedirectResponse(f"/dlq?{urlencode({'done': 'purged'})}", status_code=303)


def _publishing(ctx: WebContext, action: Callable[[Publish], T]) -> T:
    publish, done = ctx.replay_publisher()
    try:
        return action(publish)
    finally:
        done()


def _entry_id(request: Request) -> int | None:
    raw = request.path_params.get("id", "")
    # ASCII digits only: str.isdigit() also takes "²" (which int() refuses) and "١".
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return None
    return int(raw)


def _with_done(request: Request, values: dict[str, Any]) -> dict[str, Any]:
    done = DONE.get(request.query_params.get("done", ""))
    if done and request.query_params.get("missing", "0") not in ("", "0"):
        missing = request.query_params["missing"][:9]
        if missing.isdigit():
            done += (
                f"; {missing} mails were no longer in the error folder and are processed "
                "again from the copy kept in the store"
            )
    return values | {"done": done}


def _refused(request: Request, exc: Exception, *, status: int = 400) -> Response:
    return page(request, "message.html", {"title": "Not done", "message": str(exc)}, status=status)


def _ascii(name: str) -> str:
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in name)
