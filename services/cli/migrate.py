"""``mailroom migrate``: the one-shot step before the workers of a deployment start."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path

import click

from contracts.settings import Settings
from services.cli.app import main
from services.cli.common import (
    Fail,
    apply_file,
    explained,
    load_settings,
    outliving,
    say,
    serving_health,
)
from services.cli.run import report_applied
from services.runtime import data_folder
from services.runtime.errors import StoreOutage
from services.runtime.outages import Outages
from services.runtime.shutdown import stop_on_signals
from services.runtime.store import Store

log = logging.getLogger(__name__)


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="Then apply this settings file, as `mailroom config apply` does.",
)
def migrate(config_file: Path | None) -> None:
    """Bring the store's schema to the newest revision (and apply a settings file).

    Run it before the workers of a new version start. It waits for a database that cannot
    be reached yet (up to MAILROOM_OUTAGE_LIMIT_SECONDS), so it may start together with
    the database; run again, it finds nothing to do.
    """
    settings = load_settings()
    outages = Outages(settings.outage_limit_seconds)
    stop_on_signals(outages.stop.set)
    applied: list[str] = []

    def upgrade(store: Store) -> None:
        applied.extend(outages.ride_out(store.upgrade, kinds=(StoreOutage,)))

    with explained(), ExitStack() as stack, outliving():
        _serve_health_if_possible(stack, settings, outages)
        if config_file:
            result = apply_file(settings, config_file, migrate=upgrade)[1]
        else:
            data_folder.open_store(settings, create=True, migrate=upgrade)
        say(migration_done(applied))
        if config_file:
            report_applied(config_file, result)


def migration_done(applied: list[str]) -> str:
    if not applied:
        return "the store is already at the newest revision; nothing to do"
    return f"migrated the store to revision {applied[-1]} (applied {', '.join(applied)})"


def _serve_health_if_possible(stack: ExitStack, settings: Settings, outages: Outages) -> None:
    """/healthz and /readyz while waiting for the database, when MAILROOM_HEALTH_PORT is set.
    A port already taken (a worker in the same container) is no reason to not migrate."""
    try:
        stack.enter_context(serving_health(settings, outages.health, None))
    except Fail as exc:
        log.warning("%s; migrating without serving health checks", exc.message)
