"""The ``mailroom`` command. The only module that loads settings; it wires and delegates."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from contracts.settings import Settings, SettingsError, load_settings_file
from services import render, reports
from services.pipeline import BUILDERS, Pipeline, run_worker
from services.poller.adapters import SqlSourceState
from services.poller.sample import describe_sample
from services.poller.sources import open_source
from services.runtime.bus import connect
from services.runtime.clock import SystemClock
from services.runtime.config_store import ApplyResult, ConfigStore
from services.runtime.errors import ConfigError, InfraError
from services.runtime.mailbox_health import MailboxHealth
from services.runtime.stage import secret_box
from services.runtime.store import SqlBlobStore, Store


class Fail(click.ClickException):
    """One line on stderr, exit status 2: what went wrong and what to fix."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"mailroom: {self.message}", err=True)


@contextmanager
def explained() -> Iterator[None]:
    """Turn our errors into one readable line instead of a traceback."""
    try:
        yield
    except (ConfigError, InfraError, SettingsError) as exc:
        raise Fail(str(exc)) from None


def _settings() -> Settings:
    return Settings()


def _store(settings: Settings) -> Store:
    store = Store(settings.effective_database_url)
    store.migrate()
    return store


def _apply(settings: Settings, store: Store, path: Path) -> ApplyResult:
    parsed = load_settings_file(path)
    return ConfigStore(store, secret_box(settings)).apply(parsed)


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@click.group()
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Mailroom: turns mail in help-desk mailboxes into requests; never loses a mail."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="Apply this settings file first.",
)
@click.option(
    "--once", is_flag=True, help="Poll every mailbox once, finish the work, print a summary, exit."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def run(config_file: Path | None, once: bool, as_json: bool) -> None:
    """Run every stage in one process."""
    settings = _settings()
    with explained():
        store = _store(settings)
        if config_file:
            _apply(settings, store, config_file)
        _require_mailboxes(settings, store)
        connection = connect(settings.broker_url)
        pipeline = Pipeline(settings, connection=connection, store=store, clock=SystemClock())
        if not once:
            pipeline.run_forever()
            return
        mail_ids = pipeline.run_once()
        with store.transaction() as conn:
            summary = reports.run_summary(conn, mail_ids)
        summary.mailbox_errors = [
            {"mailbox": s.settings.name, "error": s.last_error}
            for s in ConfigStore(store, secret_box(settings)).mailboxes()
            if s.enabled and s.last_error
        ]
    if as_json:
        _emit(summary.counts() | {k: getattr(summary, k) for k in reports.RunSummary.DETAILS})
    else:
        render.summary(summary)


def _require_mailboxes(settings: Settings, store: Store) -> None:
    if not ConfigStore(store, secret_box(settings)).mailboxes():
        raise ConfigError("no mailbox is configured: run `mailroom config apply FILE` first")


@main.command()
@click.argument("stage", type=click.Choice(list(BUILDERS)))
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="Apply this settings file first.",
)
def worker(stage: str, config_file: Path | None) -> None:
    """Run one stage: poller, parser, validator, router or notifier."""
    settings = _settings()
    with explained():
        store = _store(settings)
        if config_file:
            _apply(settings, store, config_file)
        connection = connect(settings.broker_url)
        run_worker(stage, settings, connection=connection, store=store, clock=SystemClock())


@main.group()
def config() -> None:
    """Settings kept in the store."""


@config.command("apply")
@click.argument("file", type=click.Path(path_type=Path))
def config_apply(file: Path) -> None:
    """Check a settings file and load it into the store."""
    settings = _settings()
    with explained():
        result = _apply(settings, _store(settings), file)
    boxes = ", ".join(result.mailboxes) or "none"
    click.echo(f"applied {file}: help desks {', '.join(result.helpdesks)}; mailboxes {boxes}")
    if result.removed_mailboxes:
        click.echo(f"no longer polled: {', '.join(result.removed_mailboxes)}")
    for name in result.paused:
        click.echo(
            f"mailbox {name}: settings changed, fetching paused; "
            f"`mailroom mailbox enable {name}` resumes it"
        )


@main.group()
def mailbox() -> None:
    """Mailboxes: list, show, test, enable, disable."""


def _config_store() -> tuple[Settings, Store, ConfigStore]:
    settings = _settings()
    store = _store(settings)
    return settings, store, ConfigStore(store, secret_box(settings))


@mailbox.command("list")
@click.option("--json", "as_json", is_flag=True)
def mailbox_list(as_json: bool) -> None:
    """Every configured mailbox and what came of its mail."""
    with explained():
        _, store, cfg = _config_store()
        with store.transaction() as conn:
            counts = reports.mailbox_counts(conn)
        rows = [render.mailbox_row(s, counts.get(s.settings.name)) for s in cfg.mailboxes()]
    _emit(rows) if as_json else render.mailboxes(rows)


@mailbox.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def mailbox_show(name: str, as_json: bool) -> None:
    """One mailbox's settings (secrets hidden) and state."""
    with explained():
        _, store, cfg = _config_store()
        state = cfg.mailbox(name)
        with store.transaction() as conn:
            counts = reports.mailbox_counts(conn).get(name)
        data = render.mailbox_detail(state, counts)
    _emit(data) if as_json else render.detail(data)


@mailbox.command("test")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def mailbox_test(name: str, as_json: bool) -> None:
    """Fetch a sample mail: the oldest, without marking or moving it."""
    with explained():
        _, store, cfg = _config_store()
        state = SqlSourceState(store, name, SystemClock())
        source = open_source(cfg.mailbox(name).settings, state)
        try:
            raw = source.fetch_oldest_unmarked()
        finally:
            source.close()
    if raw is None:
        click.echo(f"mailbox {name}: connected; no unread mail to show")
        return
    sample = describe_sample(raw)
    _emit(sample) if as_json else render.detail(sample)


def _toggle(name: str, enabled: bool) -> None:
    with explained():
        _, store, cfg = _config_store()
        cfg.mailbox(name)
        health = MailboxHealth(store)
        if enabled:
            health.resume(name)
        else:
            health.pause(name, f"disabled by hand; `mailroom mailbox enable {name}` resumes it")
    click.echo(f"mailbox {name}: fetching {'resumed' if enabled else 'paused'}")


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


@main.group()
def requests() -> None:
    """Requests made from mail."""


@requests.command("list")
@click.option("--json", "as_json", is_flag=True)
def requests_list(as_json: bool) -> None:
    """Every request with its mails."""
    with explained():
        settings = _settings()
        store = _store(settings)
        with store.transaction() as conn:
            rows = reports.list_requests(conn, SqlBlobStore(store))
    _emit(rows) if as_json else render.requests(rows)


@main.group()
def dlq() -> None:
    """The dead-letter queue: mails that could not be processed."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True)
def dlq_list(as_json: bool) -> None:
    """Every dead-letter entry."""
    with explained():
        settings = _settings()
        with _store(settings).transaction() as conn:
            rows = reports.list_dead_letters(conn)
    _emit(rows) if as_json else render.dead_letters(rows)


@main.group()
def notifications() -> None:
    """Bell notifications and the email outbox."""


@notifications.command("list")
@click.option("--json", "as_json", is_flag=True)
def notifications_list(as_json: bool) -> None:
    """Every notification, sent or waiting in the outbox."""
    with explained():
        settings = _settings()
        with _store(settings).transaction() as conn:
            rows = reports.list_notifications(conn)
    _emit(rows) if as_json else render.notifications(rows)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
