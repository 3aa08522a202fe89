"""The mailbox form: a new mailbox or an existing one, saved under the settings file's
rules (``MailboxSaver``), each error shown at its field."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from contracts.settings import HelpdeskSettings, MailboxSettings
from services.runtime.config_store import MailboxState
from services.runtime.errors import ConfigError
from services.runtime.mailbox_health import MailboxHealth
from services.web.context import WebContext
from services.web.mailbox_fields import (
    FIELDS,
    HELPDESK_NOTE,
    PROTOCOLS,
    auth_choices,
    default_values,
)
from services.web.mailbox_form import DEFAULT_PROTOCOL, form_values, secret_state
from services.web.mailbox_save import MailboxSaver, Refused, Saved
from services.web.pages import page
from services.web.security import context, form_of, signed_in
from services.web.views_mailbox_actions import callback_url

#: The order of the form's sections.
SECTIONS = ("Connection", "OAuth", "Fetching", "New requests", "Error folder", "Help desk")


def _saver(ctx: WebContext, request: Request) -> MailboxSaver:
    return MailboxSaver(
        ctx.store,
        ctx.config,
        ctx.box,
        MailboxHealth(ctx.store),
        redirect_url=callback_url(ctx, request),
    )


@signed_in
async def new_mailbox(request: Request) -> Response:
    ctx = context(request)
    helpdesk = request.query_params.get("helpdesk", "")[:100]
    protocol = request.query_params.get("protocol", DEFAULT_PROTOCOL)
    protocol = protocol if protocol in PROTOCOLS else DEFAULT_PROTOCOL

    def read() -> tuple[HelpdeskSettings, str]:
        return ctx.config.helpdesk(helpdesk), _saver(ctx, request).revision(helpdesk, None)

    try:
        desk, revision = await run_in_threadpool(read)
    except ConfigError as exc:
        return _not_found(request, exc)
    values = form_values(desk, None, protocol=protocol, redirect_url=callback_url(ctx, request))
    return _form(request, desk.id, None, None, values, secret_state(None), revision, {})


@signed_in
async def edit_mailbox(request: Request) -> Response:
    ctx = context(request)
    name = request.path_params["name"]

    def read() -> tuple[MailboxState, HelpdeskSettings, str]:
        state = ctx.config.mailbox(name)
        desk = ctx.config.helpdesk(state.helpdesk)
        return state, desk, _saver(ctx, request).revision(state.helpdesk, name)

    try:
        state, desk, revision = await run_in_threadpool(read)
    except ConfigError as exc:
        return _not_found(request, exc)
    box = state.settings
    values = form_values(desk, box, redirect_url=callback_url(ctx, request))
    return _form(request, desk.id, box.name, state, values, secret_state(box), revision, {})


@signed_in
async def save_mailbox(request: Request) -> Response:
    """``/add-mailbox`` (new) or ``/mailboxes/NAME`` (existing)."""
    ctx = context(request)
    original = request.path_params.get("name")
    form = await form_of(request)
    data = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    helpdesk = data.get("helpdesk", "")[:100]
    revision = data.get("revision") or None
    admin = request.state.session.username

    def save() -> Saved | Refused:
        done = _saver(ctx, request).save(helpdesk, original, data, revision, admin)
        if isinstance(done, Saved) and done.changed:
            action = "create mailbox" if original is None else "edit mailbox"
            ctx.audit.record(admin, action, f"mailbox {done.mailbox}", done.changed)
        return done

    done = await run_in_threadpool(save)
    if isinstance(done, Saved):
        state = "saved" if done.changed else "unchanged"
        return RedirectResponse(f"/mailboxes/{quote(done.mailbox, safe='')}?{state}=1", 303)
    return await _refused(request, ctx, helpdesk, original, data, done)


async def _refused(
    request: Request,
    ctx: WebContext,
    helpdesk: str,
    original: str | None,
    data: dict[str, str],
    refused: Refused,
) -> Response:
    """The form again with what was typed (never a secret) and each error at its field."""

    def read() -> tuple[MailboxState | None, MailboxSettings | None, str | None]:
        # A mailbox renamed or removed meanwhile: the form is shown as for a new one.
        try:
            state = ctx.config.mailbox(original) if original else None
        except ConfigError:
            state = None
        box = state.settings if state else None
        try:
            revision = _saver(ctx, request).revision(helpdesk, original)
        except ConfigError:
            revision = None
        return state, box, revision

    state, box, fresh = await run_in_threadpool(read)
    typed = {s.name: data.get(s.name, "") for s in FIELDS if s.kind != "secret"}
    # After a conflict the form keeps the revision it was opened with: saving it again is
    # refused again, until the admin reloads and sees the other change.
    kept = data.get("revision") or fresh
    return _form(
        request,
        helpdesk,
        original,
        state,
        typed,
        secret_state(box),
        kept,
        refused.errors,
        status=409 if refused.conflict else 400,
        conflict=refused.conflict,
    )


def _form(
    request: Request,
    helpdesk: str,
    name: str | None,
    state: MailboxState | None,
    values: dict[str, str],
    secrets: dict[str, bool],
    revision: str | None,
    errors: dict[str, str],
    *,
    status: int = 200,
    conflict: bool = False,
) -> Response:
    protocol = values.get("protocol") or DEFAULT_PROTOCOL
    auth = values.get("auth") or "basic"
    sections: dict[str, list[Any]] = {s: [] for s in SECTIONS}
    for spec in FIELDS:
        sections.setdefault(spec.section, []).append(spec)
    defaults = {p: json.dumps(default_values(p)) for p in PROTOCOLS}
    auths = {a: " ".join(p for p in PROTOCOLS if a in auth_choices(p)) for a in ("basic", "oauth")}
    query = request.query_params
    return page(
        request,
        "mailbox_form.html",
        {
            "helpdesk": helpdesk,
            "name": name,
            "state": state,
            "values": values,
            "secrets": secrets,
            "revision": revision or "",
            "errors": errors,
            "sections": sections,
            "shown_sections": {s.section for s in FIELDS if s.applies(protocol, auth)},
            "protocol": protocol,
            "auth": auth,
            "defaults": defaults,
            "auth_protocols": auths,
            "helpdesk_note": HELPDESK_NOTE.format(helpdesk=helpdesk),
            "conflict": conflict,
            "saved": query.get("saved") == "1",
            "unchanged": query.get("unchanged") == "1",
            "action": f"/mailboxes/{quote(name, safe='')}" if name else "/add-mailbox",
        },
        status=status,
    )


def _not_found(request: Request, exc: ConfigError) -> Response:
    return page(request, "message.html", {"title": "Not found", "message": str(exc)}, status=404)
