"""What every ``mailroom`` command shares: settings, the store, errors as one line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from contracts.settings import Settings, SettingsError, load_settings_file
from services.admin import Admin
from services.runtime.config_store import ApplyResult, ConfigStore
from services.runtime.errors import ConfigError, InfraError
from services.runtime.health import Health, HealthServer
from services.runtime.outages import OutageTooLong, Stopping
from services.runtime.stage import secret_box
from services.runtime.store import Store


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


class GaveUp(Fail):
    """A worker waited out an outage for longer than its limit."""

    exit_code = 3


@contextmanager
def outliving() -> Iterator[None]:
    """A stop asked for during a wait ends the command quietly; an outage past the limit
    ends it with status 3 and what could not be reached."""
    try:
        yield
    except Stopping:
        return
    except OutageTooLong as exc:
        raise GaveUp(str(exc)) from None


@contextmanager
def serving_health(settings: Settings, health: Health, port: int | None) -> Iterator[None]:
    """``/healthz`` and ``/readyz`` on ``port``, else on ``MAILROOM_HEALTH_PORT``, if set."""
    port = settings.health_port if port is None else port
    if port is None:
        yield
        return
    try:
        server = HealthServer(health, settings.health_host, port).start()
    except OSError as exc:
        raise Fail(
            f"cannot serve health checks on {settings.health_host}:{port}: {exc.strerror}; "
            "choose another port with --health-port or MAILROOM_HEALTH_PORT"
        ) from None
    logging.getLogger(__name__).info("health checks on port %s", server.port)
    try:
        yield
    finally:
        server.close()


def load_settings() -> Settings:
    return Settings()


def open_store(settings: Settings) -> Store:
    store = Store(settings.effective_database_url)
    store.migrate()
    return store


def apply_file(settings: Settings, store: Store, path: Path) -> ApplyResult:
    parsed = load_settings_file(path)
    return ConfigStore(store, secret_box(settings)).apply(parsed)


def emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def admin_for(settings: Settings) -> tuple[Admin, Store]:
    store = open_store(settings)
    return Admin(store, secret_box(settings)), store


def config_store_for() -> tuple[Settings, Store, ConfigStore]:
    settings = load_settings()
    store = open_store(settings)
    return settings, store, ConfigStore(store, secret_box(settings))
