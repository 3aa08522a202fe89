"""``mailroom notifications``: bells and the email outbox."""

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


@main.group()
def notifications() -> None:
    """Bell notifications and the email outbox."""


@notifications.command("list")
@click.option("--json", "as_json", is_flag=True)
def notifications_list(as_json: bool) -> None:
    """Every notification: sent, in the outbox, waiting for a retry, given up, or suppressed."""
    with explained():
        settings = load_settings()
        with open_store(settings).transaction() as conn:
            rows = reports.list_notifications(conn)
    emit(rows) if as_json else render.notifications(rows)
