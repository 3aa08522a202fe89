"""``mailroom run``, ``worker`` and ``config apply``: the pipeline and its settings."""

from __future__ import annotations

from pathlib import Path

import click

from contracts.settings import Settings
from services import render, reports
from services.cli.app import main
from services.cli.common import (
    apply_file,
    emit,
    explained,
    load_settings,
    open_store,
    outliving,
    serving_health,
)
from services.cli.monitoring import Monitoring
from services.oauth.token_store import SqlTokenStore
from services.pipeline import BUILDERS, Pipeline, RunOnce, run_worker
from services.runtime.bus import connect
from services.runtime.clock import SystemClock
from services.runtime.config_store import ApplyResult, ConfigStore
from services.runtime.crypto import SecretBox
from services.runtime.errors import ConfigError, StoreOutage
from services.runtime.outages import Outages
from services.runtime.shutdown import stop_on_signals
from services.runtime.stage import secret_box
from services.runtime.store import Store


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
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    help="Serve /healthz, /readyz and /metrics on this port (or MAILROOM_HEALTH_PORT; "
    "0: any free one).",
)
def run(config_file: Path | None, once: bool, as_json: bool, health_port: int | None) -> None:
    """Run every stage in one process."""
    settings = load_settings()
    outages = Outages(settings.outage_limit_seconds)
    stop_on_signals(outages.stop.set)  # a stop ends even a wait for the store at start-up
    stopped = _stopped_before_the_end if once else lambda: None
    monitoring = Monitoring.of(BUILDERS)
    health = serving_health(settings, outages.health, health_port, monitoring.registry)
    with explained(), health, outliving(stopped):
        store = apply_file(settings, config_file)[0] if config_file else open_store(settings)
        monitoring.watch(store)
        _require_mailboxes(settings, store)
        connection = connect(settings.broker_url)
        pipeline = Pipeline(
            settings,
            connection=connection,
            store=store,
            clock=SystemClock(),
            outages=outages,
            metrics=monitoring.metrics,
        )
        try:
            if not once:
                pipeline.run_forever()
                return
            done = pipeline.run_once()
        finally:
            pipeline.close()
        _report(settings, store, done, as_json=as_json)
        if done.interrupted:
            _stopped_before_the_end()


def _report(settings: Settings, store: Store, done: RunOnce, *, as_json: bool) -> None:
    """The summary of ``run --once``: as a table, or as JSON."""
    with store.transaction() as conn:
        summary = reports.run_summary(
            conn, done.mail_ids, since=done.started_at, recovered=done.recovered
        )
    summary.mailbox_errors = [
        {"mailbox": s.settings.name, "error": s.last_error}
        for s in ConfigStore(store, secret_box(settings)).mailboxes()
        # Polled by this run: a round may end by pausing its mailbox (a refused OAuth grant).
        if s.last_error and s.last_polled_at and s.last_polled_at >= done.started_at
    ] + [{"mailbox": name, "error": why} for name, why in done.not_polled.items()]
    if as_json:
        emit(summary.counts() | {k: getattr(summary, k) for k in reports.RunSummary.DETAILS})
    else:
        render.summary(summary)


def _stopped_before_the_end() -> None:
    click.echo("mailroom: stopped before the end; the next run takes up the rest", err=True)
    raise click.exceptions.Exit(130)


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
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    help="Serve /healthz, /readyz and /metrics on this port (or MAILROOM_HEALTH_PORT; "
    "0: any free one).",
)
def worker(stage: str, config_file: Path | None, health_port: int | None) -> None:
    """Run one stage: poller, parser, validator, router or notifier.

    Waits out an unreachable broker or store (not ready meanwhile) and exits with status 3
    only when one stays away longer than MAILROOM_OUTAGE_LIMIT_SECONDS (600 by default).
    SIGTERM or SIGINT stops it with status 0: it takes no more mail, finishes the mail in
    hand or, after 5 s, hands it back to the broker, and closes its connections.
    """
    settings = load_settings()
    outages = Outages(settings.outage_limit_seconds)
    stop_on_signals(outages.stop.set)  # a stop ends even a wait for the store at start-up
    monitoring = Monitoring.of([stage])
    health = serving_health(settings, outages.health, health_port, monitoring.registry)
    with explained(), health, outliving():

        def migrate(store: Store) -> None:
            outages.ride_out(store.migrate, kinds=(StoreOutage,))

        if config_file:
            store = apply_file(settings, config_file, migrate=migrate)[0]
        else:
            store = open_store(settings, migrate=migrate)
        monitoring.watch(store)
        run_worker(
            stage,
            settings,
            store=store,
            clock=SystemClock(),
            outages=outages,
            metrics=monitoring.metrics,
        )


@main.group()
def config() -> None:
    """Settings kept in the store."""


@config.command("apply")
@click.argument("file", type=click.Path(path_type=Path))
def config_apply(file: Path) -> None:
    """Check a settings file and load it into the store."""
    settings = load_settings()
    with explained():
        store, result = apply_file(settings, file)
        waiting = not_authorized(store, secret_box(settings))
    report_applied(file, result)
    for name in waiting:
        click.echo(
            f"mailbox {name}: not authorized yet; `mailroom oauth authorize {name}` "
            "gives consent so it can be fetched"
        )


def not_authorized(store: Store, box: SecretBox) -> list[str]:
    """The ``auth: oauth`` mailboxes that have no tokens yet."""
    authorized = SqlTokenStore(store, box).authorized()
    return [
        s.settings.name
        for s in ConfigStore(store, box).mailboxes()
        if s.settings.auth == "oauth" and s.settings.name not in authorized
    ]


def report_applied(file: Path, result: ApplyResult) -> None:
    """What applying a settings file changed, for the operator."""
    boxes = ", ".join(result.mailboxes) or "none"
    click.echo(f"applied {file}: help desks {', '.join(result.helpdesks)}; mailboxes {boxes}")
    if result.removed_mailboxes:
        click.echo(f"no longer polled: {', '.join(result.removed_mailboxes)}")
    for name in result.paused:
        click.echo(
            f"mailbox {name}: settings changed, fetching paused; "
            f"`mailroom mailbox enable {name}` resumes it"
        )
