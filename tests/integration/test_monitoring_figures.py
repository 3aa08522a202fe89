"""What /metrics reads from the store, on SQLite and PostgreSQL, and the migration that made
it readable for mailboxes kept before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from contracts.notify import Notify
from services.notifier.adapters import SqlOutbox
from services.reports import monitoring_figures
from services.runtime import tables
from services.runtime.mailbox_health import MailboxHealth
from services.runtime.store import MIGRATIONS, Store
from services.runtime.store_gauges import MailboxFigures

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def add_mailbox(store: Store, name: str, helpdesk: str = "support") -> None:
    row = dict(
        name=name,
        helpdesk_id=helpdesk,
        protocol="imap",
        settings={},
        enabled=True,
        consecutive_failures=0,
        updated_at=T0,
    )
    with store.transaction() as conn:
        conn.execute(tables.mailboxes.insert().values(**row))


def figures_of(store: Store) -> dict[str, MailboxFigures]:
    with store.transaction() as conn:
        return {m.mailbox: m for m in monitoring_figures(conn).mailboxes}


def notify(key: str, channel: str = "email") -> Notify:
    return Notify(
        mail_id=f"mail-{key}",
        helpdesk="support",
        key=key,
        topic="mail_error",
        channel=channel,  # type: ignore[arg-type]
        to=["reps@example.com"],
        subject="s",
        body="b",
    )


def test_a_failing_mailbox_keeps_the_time_of_its_last_successful_round(store: Store) -> None:
    add_mailbox(store, "orders")
    health = MailboxHealth(store)

    health.record_poll("orders", T0, None)
    health.record_poll("orders", T0 + timedelta(minutes=1), "connection refused")
    health.record_poll("orders", T0 + timedelta(minutes=2), "connection refused")

    orders = figures_of(store)["orders"]
    assert orders.last_success == T0
    assert orders.consecutive_failures == 2
    assert orders.fetching and not orders.stopped_by_errors


def test_a_mailbox_stopped_by_its_error_folder_is_told_apart_from_one_paused_by_hand(
    store: Store,
) -> None:
    add_mailbox(store, "inbox")
    add_mailbox(store, "quiet", helpdesk="sales")
    health = MailboxHealth(store)
    for _ in range(3):
        health.count_error("inbox")
    health.pause("inbox", "the error folder holds 3 mails (stop_after 3)", by_errors=True)
    health.pause("quiet", "disabled by hand")

    found = figures_of(store)
    assert found["inbox"] == MailboxFigures("support", "inbox", None, 0, 3, False, True)
    assert found["quiet"] == MailboxFigures("sales", "quiet", None, 0, 0, False, False)

    health.resume("inbox")
    assert figures_of(store)["inbox"].stopped_by_errors is False
    assert figures_of(store)["inbox"].fetching is True


def test_the_outbox_tells_emails_still_to_send_from_those_given_up(store: Store) -> None:
    outbox = SqlOutbox(store)
    outbox.add(notify("kept"), ["reps@example.com"], T0)  # no outgoing server: stays
    retry = outbox.add(notify("retry"), ["reps@example.com"], T0, next_attempt_at=T0)
    outbox.mark_failed(retry.id, "451 try later", T0 + timedelta(minutes=1))
    gone = outbox.add(notify("gone"), ["reps@example.com"], T0, next_attempt_at=T0)
    outbox.mark_failed(gone.id, "gave up after 60 attempt(s): 451 try later", None)
    sent = outbox.add(notify("sent"), ["reps@example.com"], T0, next_attempt_at=T0)
    outbox.mark_sent(sent.id, T0)
    outbox.add(notify("over"), ["reps@example.com"], T0, suppressed_reason="rate limit")
    outbox.add(notify("bell", channel="bell"), ["reps@example.com"], T0)

    with store.transaction() as conn:
        found = monitoring_figures(conn)

    assert (found.outbox_pending, found.outbox_given_up) == (2, 1)


def test_every_dead_letter_entry_is_counted(store: Store) -> None:
    entry = dict(stage="parser", error_class="MailError", error="bad", attempts=1, at=T0)
    with store.transaction() as conn:
        for i in range(3):
            conn.execute(tables.dead_letters.insert().values(mail_id=f"m-{i}", **entry))
        found = monitoring_figures(conn)

    assert found.dead_letter_entries == 3


def test_upgrading_keeps_what_the_rows_already_told(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path / 'var' / 'mailroom.db'}")
    migrate(store, "0007")
    rows = [
        ("fine", True, None, None),
        ("failing", True, "connection refused", None),
        ("stopped", False, None, "the error folder holds 50 mails (stop_after 50); ..."),
        ("by-hand", False, None, "disabled by hand; `mailroom mailbox enable by-hand`"),
    ]
    with store.transaction() as conn:
        for name, enabled, error, reason in rows:
            conn.execute(
                sa.text(
                    "INSERT INTO mailboxes (name, helpdesk_id, protocol, settings, enabled, "
                    "last_polled_at, last_error, consecutive_failures, updated_at, "
                    "paused_reason) VALUES (:name, 'support', 'imap', '{}', :enabled, :at, "
                    ":error, 0, :at, :reason)"
                ),
                dict(name=name, enabled=enabled, at=T0, error=error, reason=reason),
            )

    store.migrate()

    found = figures_of(store)
    assert found["fine"].last_success == T0
    assert found["failing"].last_success is None
    assert found["stopped"].stopped_by_errors and not found["by-hand"].stopped_by_errors


def migrate(store: Store, revision: str) -> None:
    with store.engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
