"""``mailroom mailbox``: list, show, test, enable, disable."""

from __future__ import annotations

import click

from services import render, reports
from services.cli.app import main
from services.cli.common import (
    config_store_for,
    emit,
    explained,
    say,
)
from services.oauth.health import token_health
from services.oauth.token_store import SqlTokenStore
from services.poller.opener import fetch_oldest_unread, mailbox_opener
from services.poller.sample import describe_sample
from services.runtime.clock import SystemClock
from services.runtime.mailbox_health import MailboxHealth
from services.runtime.stage import secret_box


@main.group()
def mailbox() -> None:
    """Mailboxes: list, show, test, enable, disable."""


@mailbox.command("list")
@click.option("--json", "as_json", is_flag=True)
def mailbox_list(as_json: bool) -> None:
    """Every configured mailbox and what came of its mail."""
    with explained():
        _, store, cfg = config_store_for()
        with store.transaction() as conn:
            counts = reports.mailbox_counts(conn)
        rows = [render.mailbox_row(s, counts.get(s.settings.name)) for s in cfg.mailboxes()]
    emit(rows) if as_json else render.mailboxes(rows)


@mailbox.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def mailbox_show(name: str, as_json: bool) -> None:
    """One mailbox's settings (secrets hidden) and state."""
    with explained():
        settings, store, cfg = config_store_for()
        state = cfg.mailbox(name)
        with store.transaction() as conn:
            counts = reports.mailbox_counts(conn).get(name)
        oauth = None
        if state.settings.auth == "oauth":
            stored = SqlTokenStore(store, secret_box(settings)).get(name)
            oauth = token_health(state.settings, stored, SystemClock().now())
        data = render.mailbox_detail(state, counts, oauth)
    emit(data) if as_json else render.detail(data)


@mailbox.command("test")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def mailbox_test(name: str, as_json: bool) -> None:
    """Fetch a sample mail: the oldest, without marking or moving it."""
    with explained():
        settings, store, cfg = config_store_for()
        opener = mailbox_opener(store, secret_box(settings))
        raw = fetch_oldest_unread(opener, store, cfg.mailbox(name))
    if raw is None:
        emit(None) if as_json else say(f"mailbox {name}: connected; no unread mail to show")
        return
    sample = describe_sample(raw)
    emit(sample) if as_json else render.detail(sample)


def _toggle(name: str, enabled: bool) -> None:
    with explained():
        _, store, cfg = config_store_for()
        cfg.mailbox(name)
        health = MailboxHealth(store)
        if enabled:
            health.resume(name)
        else:
            health.pause(name, f"disabled by hand; `mailroom mailbox enable {name}` resumes it")
    say(f"mailbox {name}: fetching {'resumed' if enabled else 'paused'}")


@mailbox.command("enable")
@click.argument("name")
def mailbox_enable(name: str) -> None:
    """Resume fetching."""
    _toggle(name, True)


@mailbox.command("disable")
@click.argument("name")
def mailbox_disable(name: str) -> None:
    """Pause fetching."""
    _toggle(name, False)
