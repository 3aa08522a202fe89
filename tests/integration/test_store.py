"""The store on SQLite and on a real PostgreSQL: migrations match the tables, data survives."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.runtime import tables
from services.runtime.errors import InfraError
from services.runtime.store import SqlBlobStore, Store


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
