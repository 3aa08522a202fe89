"""The audit log: who changed what, and when (field names only, never values)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from services.web.pages import page
from services.web.security import context, signed_in

SHOWN = 200


@signed_in
async def audit_log(request: Request) -> Response:
    entries = await run_in_threadpool(context(request).audit.recent, SHOWN)
    return page(request, "audit.html", {"entries": entries})
