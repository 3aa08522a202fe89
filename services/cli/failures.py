"""``mailroom dlq`` and ``mailroom errors``: failed mail, its logs, replay."""

from __future__ import annotations

from pathlib import Path

import click

from services import render, reports
from services.cli.app import main
from services.cli.common import (
    Fail,
    admin_for,
    confirm_or_refuse,
    emit,
    explained,
    load_settings,
    open_store,
    say,
)
from services.replay import replay_publisher
from services.runtime.bus import is_embedded
from services.runtime.private_files import write_file


@main.group()
def dlq() -> None:
    """The dead-letter queue: mails that could not be processed."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True)
def dlq_list(as_json: bool) -> None:
    """Every dead-letter entry."""
    with explained():
        settings = load_settings()
        with open_store(settings).transaction() as conn:
            rows = reports.list_dead_letters(conn)
    emit(rows) if as_json else render.dead_letters(rows)


#: An entry id as the store keeps it (a 64-bit integer): a bigger number is a typing
#: mistake, refused by the usage check rather than by the database with a traceback.
ENTRY_ID = click.IntRange(1, 2**63 - 1)


@dlq.command("show")
@click.argument("entry_id", type=ENTRY_ID)
@click.option("--json", "as_json", is_flag=True)
def dlq_show(entry_id: int, as_json: bool) -> None:
    """One dead-letter entry (its log stays encrypted: `mailroom errors download`)."""
    with explained():
        settings = load_settings()
        admin, store = admin_for(settings)
        entry = admin.entry(entry_id)
        with store.transaction() as conn:
            [data] = [d for d in reports.list_dead_letters(conn) if d["id"] == entry.id]
    emit(data) if as_json else render.detail(data)


@dlq.command("replay")
@click.argument("entry_id", type=ENTRY_ID, required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every entry.")
@click.option(
    "--reason",
    metavar="ERROR_CLASS",
    help="Only entries with this error class (as `dlq list` shows it), e.g. "
    "DeliveryLimitExceeded for mail set aside during an outage.",
)
def dlq_replay(entry_id: int | None, replay_all: bool, reason: str | None) -> None:
    """Process failed mail again; what fails again comes back as a new entry."""
    if (entry_id is None) == (not replay_all):
        raise Fail("say which: `mailroom dlq replay ID` or `mailroom dlq replay --all`")
    settings = load_settings()
    with explained():
        admin, _ = admin_for(settings)
        if reason is not None:
            _require_reason(reason, admin.error_classes())
        publish, done = replay_publisher(settings, open_store)
        try:
            ids = None if replay_all else [entry_id or 0]
            count, skipped = admin.replay(ids, publish, reason=reason)
        finally:
            done()
    embedded = is_embedded(settings.broker_url)
    later = " at the next `mailroom run` (notifications right away)" if embedded else ""
    say(f"replayed {count} dead-letter entries; they are processed again{later}")
    for reason in skipped:
        say(f"not replayed: {reason}", err=True)


def _require_reason(reason: str, classes: list[str]) -> None:
    if reason.casefold() not in map(str.casefold, classes):
        known = ", ".join(classes) or "none: the queue is empty"
        raise Fail(f"no dead-letter entry has the error class {reason!r}; there are: {known}")


@dlq.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask (needed without a terminal).")
def dlq_purge(yes: bool) -> None:
    """Forget every entry; mail in error folders stays there."""
    confirm_or_refuse("forget every dead-letter entry?", yes=yes, action="purge")
    with explained():
        count = admin_for(load_settings())[0].purge()
    click.echo(f"purged {count} dead-letter entries; mail in error folders was left in place")


@main.group()
def errors() -> None:
    """Failed mail per mailbox: counts, the decrypted logs, moving mail back."""


@errors.command("list")
@click.option("--json", "as_json", is_flag=True)
def errors_list(as_json: bool) -> None:
    """Per mailbox: mails in the error folder, dead-letter entries, stopped or not."""
    with explained():
        rows = admin_for(load_settings())[0].error_counts()
    emit(rows) if as_json else render.error_counts(rows)


@errors.command("download")
@click.option("--out", required=True, help="The zip to write (mode 0600).")
@click.option("--mailbox", help="Only this mailbox's entries.")
@click.option("--force", is_flag=True, help="Replace the file if it exists.")
def errors_download(out: str, mailbox: str | None, force: bool) -> None:
    """A zip of the decrypted error logs (one .txt per mail) and the raw mails (.eml).

    It holds customer mail: it is written readable by its owner only, and an existing file
    (or a link) is replaced only with --force.
    """
    if not out.strip():
        raise Fail("--out is empty: name the zip to write, e.g. --out errors.zip")
    path = Path(out).expanduser()
    with explained():
        result = admin_for(load_settings())[0].download(mailbox)
        write_file(path, result.archive, replace=force)
    say(f"wrote {result.logs} error logs to {path}")
    for entry_id in result.damaged:
        say(
            f"entry {entry_id}: its error log cannot be decrypted (damaged, or encrypted with a "
            "key no longer configured); its .txt holds what the entry records",
            err=True,
        )


@errors.command("move-to-inbox")
@click.argument("mailbox_name")
def errors_move_to_inbox(mailbox_name: str) -> None:
    """Move the error folder's mails back to the inbox; resets the count, resumes fetching."""
    settings = load_settings()
    with explained():
        publish, done = replay_publisher(settings, open_store)
        try:
            result = admin_for(settings)[0].move_to_inbox(mailbox_name, publish)
        finally:
            done()
    say(f"mailbox {mailbox_name}: moved {result.moved} mails back to the inbox; fetching resumed")
    if result.missing:
        say(
            f"{result.missing} mails were no longer in the error folder (deleted by hand?): "
            "they are processed again from the copy kept in the store"
        )
