"""The ``mailroom`` command. The only module that loads settings; it wires and delegates."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from contracts.base import Envelope
from contracts.mail import MailFetched
from contracts.settings import Settings, SettingsError, load_settings_file
from services import render, reports
from services.admin import Admin, Publish
from services.pipeline import BUILDERS, Pipeline, run_worker
from services.poller.adapters import SqlSourceState
from services.poller.sample import describe_sample
from services.poller.sources import open_source
from services.runtime.bus import Publisher, connect, is_embedded
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


@requests.command("rejected")
@click.option("--json", "as_json", is_flag=True)
def requests_rejected(as_json: bool) -> None:
    """Mail that opened no request and joined none, with the reason."""
    with explained():
        settings = _settings()
        with _store(settings).transaction() as conn:
            rows = reports.list_rejected(conn)
    _emit(rows) if as_json else render.rejected(rows)


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


@dlq.command("show")
@click.argument("entry_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def dlq_show(entry_id: int, as_json: bool) -> None:
    """One dead-letter entry (its log stays encrypted: `mailroom errors download`)."""
    with explained():
        settings = _settings()
        entry = _admin(settings)[0].entry(entry_id)
        with _store(settings).transaction() as conn:
            [data] = [d for d in reports.list_dead_letters(conn) if d["id"] == entry.id]
    _emit(data) if as_json else render.detail(data)


@dlq.command("replay")
@click.argument("entry_id", type=int, required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every entry.")
def dlq_replay(entry_id: int | None, replay_all: bool) -> None:
    """Process failed mail again; what fails again comes back as a new entry."""
    if (entry_id is None) == (not replay_all):
        raise Fail("say which: `mailroom dlq replay ID` or `mailroom dlq replay --all`")
    settings = _settings()
    with explained():
        admin, _ = _admin(settings)
        publish, done = _replay_publisher(settings)
        try:
            count, skipped = admin.replay(None if replay_all else [entry_id or 0], publish)
        finally:
            done()
    embedded = is_embedded(settings.broker_url)
    later = " at the next `mailroom run` (notifications right away)" if embedded else ""
    click.echo(f"replayed {count} dead-letter entries; they are processed again{later}")
    for reason in skipped:
        click.echo(f"not replayed: {reason}", err=True)


def _replay_publisher(settings: Settings) -> tuple[Publish, Callable[[], None]]:
    """On the embedded broker no pipeline is listening in this process: the next run's
    recovery publishes what the replay made unfinished."""
    if is_embedded(settings.broker_url):
        held: list[Envelope] = []

        def hold(msg: Envelope) -> None:
            if not isinstance(msg, MailFetched):  # mails: the next run's recovery has them
                held.append(msg)

        return hold, lambda: _deliver_in_process(settings, held)
    connection = connect(settings.broker_url)
    publisher = Publisher(connection)
    return publisher.publish, lambda: (publisher.close(), connection.release())


def _deliver_in_process(settings: Settings, messages: list[Envelope]) -> None:
    """The embedded broker lives in one process: handle these messages here and now."""
    if not messages:
        return
    connection = connect(settings.broker_url)
    store = _store(settings)
    pipeline = Pipeline(settings, connection=connection, store=store, clock=SystemClock())
    publisher = Publisher(connection)
    try:
        for msg in messages:
            publisher.publish(msg)
        pipeline.settle()
    finally:
        publisher.close()


@dlq.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask.")
def dlq_purge(yes: bool) -> None:
    """Forget every entry; mail in error folders stays there."""
    if not yes and not click.confirm("forget every dead-letter entry?"):
        raise Fail("nothing purged")
    with explained():
        count = _admin(_settings())[0].purge()
    click.echo(f"purged {count} dead-letter entries; mail in error folders was left in place")


@main.group()
def errors() -> None:
    """Failed mail per mailbox: counts, the decrypted logs, moving mail back."""


def _admin(settings: Settings) -> tuple[Admin, Store]:
    store = _store(settings)
    return Admin(store, secret_box(settings)), store


@errors.command("list")
@click.option("--json", "as_json", is_flag=True)
def errors_list(as_json: bool) -> None:
    """Per mailbox: mails in the error folder, dead-letter entries, stopped or not."""
    with explained():
        rows = _admin(_settings())[0].error_counts()
    _emit(rows) if as_json else render.error_counts(rows)


@errors.command("download")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The zip to write.")
@click.option("--mailbox", help="Only this mailbox's entries.")
def errors_download(out: Path, mailbox: str | None) -> None:
    """A zip of the decrypted error logs (one .txt per mail) and the raw mails (.eml)."""
    with explained():
        result = _admin(_settings())[0].download(out, mailbox)
    click.echo(f"wrote {result.logs} error logs to {out}")
    for entry_id in result.damaged:
        click.echo(
            f"entry {entry_id}: its error log cannot be decrypted (damaged, or encrypted with a "
            "key no longer configured); its .txt holds what the entry records",
            err=True,
        )


@errors.command("move-to-inbox")
@click.argument("mailbox_name")
def errors_move_to_inbox(mailbox_name: str) -> None:
    """Move the error folder's mails back to the inbox; resets the count, resumes fetching."""
    settings = _settings()
    with explained():
        publish, done = _replay_publisher(settings)
        try:
            result = _admin(settings)[0].move_to_inbox(mailbox_name, publish)
        finally:
            done()
    click.echo(
        f"mailbox {mailbox_name}: moved {result.moved} mails back to the inbox; fetching resumed"
    )
    if result.missing:
        click.echo(
            f"{result.missing} mails were no longer in the error folder (deleted by hand?): "
            "they are processed again from the copy kept in the store"
        )


@main.group()
def notifications() -> None:
    """Bell notifications and the email outbox."""


@notifications.command("list")
@click.option("--json", "as_json", is_flag=True)
def notifications_list(as_json: bool) -> None:
    """Every notification: sent, in the outbox, waiting for a retry, given up, or suppressed."""
    with explained():
        settings = _settings()
        with _store(settings).transaction() as conn:
            rows = reports.list_notifications(conn)
    _emit(rows) if as_json else render.notifications(rows)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
