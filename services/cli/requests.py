"""``mailroom requests``: the requests made, and the mails rejected."""

from __future__ import annotations

import click

from services import render, reports
from services.cli.app import main
from services.cli.common import (
    emit,
    explained,
    load_settings,
    open_store,
)
from services.runtime.store import SqlBlobStore


@main.group()
def requests() -> None:
    """Requests made from mail."""


@requests.command("list")
@click.option("--json", "as_json", is_flag=True)
def requests_list(as_json: bool) -> None:
    """Every request with its mails."""
    with explained():
        settings = load_settings()
        store = open_store(settings)
        with store.transaction() as conn:
            rows = reports.list_requests(conn, SqlBlobStore(store))
    emit(rows) if as_json else render.requests(rows)


@requests.command("rejected")
@click.option("--json", "as_json", is_flag=True)
def requests_rejected(as_json: bool) -> None:
    """Mail that opened no request and joined none, with the reason."""
    with explained():
        settings = load_settings()
        with open_store(settings).transaction() as conn:
            rows = reports.list_rejected(conn)
    emit(rows) if as_json else render.rejected(rows)
