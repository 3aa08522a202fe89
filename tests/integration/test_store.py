"""The store on SQLite and on a real PostgreSQL: migrations match the tables, data survives."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.poller.adapters import SqlLeases
from services.runtime import tables
from services.runtime.errors import InfraError, StoreOutage
from services.runtime.store import SqlBlobStore, Store, insert_ignoring_conflict


def test_migrations_build_exactly_the_tables_the_code_uses(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), tables.metadata)
    assert diff == []


def test_migrating_again_keeps_every_row(store: Store) -> None:
    blobs = SqlBlobStore(store)
    sha = blobs.put(b"a mail")

    store.migrate()
    Store(store.url).migrate()  # a second process starting up

    assert blobs.get(sha) == b"a mail"


def test_blobs_are_content_addressed_and_stored_once(store: Store) -> None:
    blobs = SqlBlobStore(store)
    first = blobs.put(b"x" * 1000)
    second = blobs.put(b"x" * 1000)

    assert first == second
    with store.transaction() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.blobs)).scalar_one() == 1
    with pytest.raises(KeyError):
        blobs.get("0" * 64)


def test_unreachable_database_names_the_url_without_the_password() -> None:
    store = Store("postgresql+psycopg://mailroom:s3cret@127.0.0.1:1/mailroom")
    with pytest.raises(InfraError) as err:
        store.migrate()
    assert "127.0.0.1:1/mailroom" in str(err.value)
    assert "s3cret" not in str(err.value)


def test_a_dead_letter_id_is_never_handed_out_again(store: Store) -> None:
    d = tables.dead_letters
    entry = dict(stage="parser", error_class="MailError", error="bad", attempts=1)
    with store.transaction() as conn:
        conn.execute(d.insert().values(mail_id="m-1", at=sa.func.now(), **entry))
        newest = conn.execute(
            d.insert().values(mail_id="m-2", at=sa.func.now(), **entry)
        ).inserted_primary_key[0]
        conn.execute(d.delete().where(d.c.id == newest))  # replayed, say
        later = conn.execute(
            d.insert().values(mail_id="m-3", at=sa.func.now(), **entry)
        ).inserted_primary_key[0]

    assert later > newest


def test_an_insert_that_meets_an_existing_key_reports_that_it_inserted_nothing(
    store: Store,
) -> None:
    row = dict(mailbox="support", holder="a", expires_at=datetime(2026, 1, 1, tzinfo=UTC))
    with store.transaction() as conn:
        first = insert_ignoring_conflict(conn, tables.mailbox_leases, row)
        second = insert_ignoring_conflict(conn, tables.mailbox_leases, row | {"holder": "b"})

    assert (first, second) == (True, False)


def test_a_mailbox_lease_is_held_by_one_poller_until_released_or_expired(store: Store) -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    ttl = timedelta(minutes=2)
    one, other = SqlLeases(store, holder="host-a:1"), SqlLeases(store, holder="host-b:2")

    assert one.acquire("support", now, ttl)
    assert not other.acquire("support", now, ttl)
    assert one.acquire("support", now + timedelta(minutes=1), ttl)  # renewed by its holder
    assert not other.acquire("support", now + timedelta(minutes=2), ttl)
    assert other.acquire("support", now + timedelta(minutes=4), ttl)  # expired: taken over
    assert not one.acquire("support", now + timedelta(minutes=4), ttl)
    other.release("support")
    assert one.acquire("support", now + timedelta(minutes=4), ttl)


def test_an_unreachable_database_is_an_outage_and_a_refused_write_is_not(store: Store) -> None:
    with pytest.raises(InfraError) as refused, store.transaction() as conn:
        conn.execute(tables.blobs.insert().values(sha256=None, size=1, data=b"x"))
    assert not isinstance(refused.value, StoreOutage)

    gone = Store("postgresql+psycopg://mailroom:secret@127.0.0.1:1/mailroom")
    with pytest.raises(StoreOutage, match="cannot be reached") as down:
        gone.ping()
    assert "secret" not in str(down.value)


def test_a_lease_whose_holder_process_is_gone_from_this_host_is_taken_over_at_once(
    store: Store,
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    ttl = timedelta(minutes=5)
    gone = SqlLeases(store, holder=f"{socket.gethostname()}:{dead.pid}:a1b2c3d4")
    elsewhere = SqlLeases(store, holder=f"other-host.example:{dead.pid}:a1b2c3d4")
    assert gone.acquire("support", now, ttl)
    assert elsewhere.acquire("archive", now, ttl)

    me = SqlLeases(store, holder=f"{socket.gethostname()}:{os.getpid()}:e5f6a7b8")

    assert me.acquire("support", now, ttl)  # its holder died on this host: no wait
    assert not me.acquire("archive", now, ttl)  # another host's: only when it expires


def test_a_mistaken_statement_on_sqlite_is_not_taken_for_an_outage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()

    with pytest.raises(InfraError) as mistaken, store.transaction() as conn:
        conn.execute(sa.text("SELECT * FROM no_such_table"))

    assert not isinstance(mistaken.value, StoreOutage)
