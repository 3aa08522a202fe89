"""What every ``mailroom`` command shares: settings, the store, errors as one line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from prometheus_client import CollectorRegistry

from contracts.settings import Settings, SettingsError, load_environment, load_settings_file
from services.admin import Admin
from services.runtime import data_folder
from services.runtime.config_store import ApplyResult, ConfigStore
from services.runtime.errors import ConfigError, InfraError
from services.runtime.health import Health, HealthServer
from services.runtime.outages import OutageTooLong, Stopping
from services.runtime.shutdown import Abandoned, stopped
from services.runtime.stage import secret_box
from services.runtime.store import Store
from services.safe_text import json_text, shown
from services.settings_paths import anchored

Migrate = Callable[[Store], None]


class Fail(click.ClickException):
    """One line on stderr, exit status 2: what went wrong and what to fix."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"mailroom: {shown(self.message, keep_lines=True)}", err=True)


def say(text: str, *, err: bool = False) -> None:
    """A line for people; what came from mail or a server in it is shown escaped."""
    click.echo(shown(text), err=err)


def confirm_or_refuse(question: str, *, yes: bool, action: str) -> None:
    """Go on when ``--yes`` was given or a person at a terminal says yes. Without a
    terminal nobody can answer: refuse at once instead of reading a "no" from nowhere."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise Fail(f"no terminal to ask {question!r}; use --yes to {action} without a prompt")
    if not click.confirm(question):
        raise Fail(f"nothing done: answered no to {question!r}")


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
def outliving(on_stop: Callable[[], None] = lambda: None) -> Iterator[None]:
    """A stop asked for (SIGTERM, SIGINT) ends the command quietly, through ``on_stop``
    when given; an outage past the limit ends it with status 3 and what could not be
    reached."""
    abandoned = False
    try:
        yield
    except Stopping:
        on_stop()
    except Abandoned as exc:
        abandoned = True  # the last deadline stays: a thread stuck at exit must not hang it
        logging.getLogger(__name__).warning("%s", exc)
        on_stop()
    except OutageTooLong as exc:
        raise GaveUp(str(exc)) from None
    finally:
        if not abandoned:
            stopped()


@contextmanager
def serving_health(
    settings: Settings,
    health: Health,
    port: int | None,
    registry: CollectorRegistry | None = None,
) -> Iterator[None]:
    """``/healthz``, ``/readyz`` and ``/metrics`` (from ``registry``) on ``port``, else on
    ``MAILROOM_HEALTH_PORT``, if set."""
    port = settings.health_port if port is None else port
    if port is None:
        yield
        return
    try:
        server = HealthServer(health, settings.health_host, port, registry).start()
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
    """The ``MAILROOM_*`` environment, or a ``Fail`` naming each variable to fix."""
    try:
        return load_environment()
    except SettingsError as exc:
        raise Fail(str(exc)) from None


def open_store(settings: Settings, *, migrate: Migrate = Store.migrate) -> Store:
    """The store where the settings point; a missing one is an error that says where it
    looked (see ``data_folder``)."""
    return data_folder.open_store(settings, migrate=migrate)


def apply_file(
    settings: Settings, path: Path, *, migrate: Migrate = Store.migrate
) -> tuple[Store, ApplyResult]:
    """Check a settings file, then load it into the store, which is made (with its key) if
    there is none yet. Relative paths in the file are relative to the file's folder."""
    parsed = anchored(load_settings_file(path), path.parent.absolute())
    store = data_folder.open_store(settings, create=True, migrate=migrate)
    return store, ConfigStore(store, secret_box(settings)).apply(parsed)


def emit(data: Any) -> None:
    """``--json`` output: control and bidi characters as ``\\uXXXX`` escapes."""
    click.echo(json_text(data))


def admin_for(settings: Settings) -> tuple[Admin, Store]:
    store = open_store(settings)
    return Admin(store, secret_box(settings)), store


def config_store_for() -> tuple[Settings, Store, ConfigStore]:
    settings = load_settings()
    store = open_store(settings)
    return settings, store, ConfigStore(store, secret_box(settings))
