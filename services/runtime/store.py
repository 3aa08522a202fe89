"""The store: engine built from a URL, migrations, transactions and the blob store.

SQLite under ``var/`` by default, PostgreSQL through ``MAILROOM_DATABASE_URL``; the same code
runs on both.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import overload

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from contracts.ids import content_hash
from services.runtime import tables
from services.runtime.errors import InfraError, StoreOutage
from services.runtime.private_files import private_file, private_folder

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
#: Serialises migrations when several workers start at once on PostgreSQL.
_MIGRATION_LOCK_ID = 0x6D61696C
#: Seconds to wait for a PostgreSQL connection: a server that is gone must not hang a worker.
CONNECT_TIMEOUT_S = 5
BLOB_PIECE = 4 * 1024 * 1024


def safe_url(url: str) -> str:
    """``url`` with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as the user typed it, minus nothing secret
        return url.split("@")[-1]


class Store:
    """One database: an engine, its migrations, and short transactions.

    Raises ``StoreOutage`` (with the URL, password hidden) when the database cannot be
    reached or drops the connection, and ``InfraError`` when it refuses a statement.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _create_engine(url)
        #: The connection of the batch this thread is in (``batch``), if any.
        self._batch: ContextVar[Connection | None] = ContextVar(f"batch-{id(self)}", default=None)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest revision; safe to call from every process."""
        self.upgrade()

    def upgrade(self) -> list[str]:
        """Bring the schema to the newest revision; returns the revisions applied, oldest
        first, and none when the schema was there already.

        Safe to call from several processes at once: on PostgreSQL they take turns (an
        advisory lock), and the later ones find nothing to do.
        """
        # Imported here: only the processes that migrate pay for alembic's import.
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
                    )
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS))
                cfg.attributes["connection"] = conn
                before = MigrationContext.configure(conn).get_current_revision()
                command.upgrade(cfg, "head")
                script = ScriptDirectory.from_config(cfg)
                applied = script.iterate_revisions("head", before or "base")
                return [revision.revision for revision in reversed(list(applied))]
        except SQLAlchemyError as exc:
            raise _translated(exc, f"database {safe_url(self.url)} is not usable") from exc

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a transaction, committed when the block ends without an error.

        Inside ``batch`` the block is a savepoint of the batch's transaction: an error undoes
        what the block did, and the rest is committed with the batch.
        """
        if (conn := self._batch.get()) is not None:
            try:
                with conn.begin_nested():
                    yield conn
            except SQLAlchemyError as exc:
                raise _translated(exc, f"database {safe_url(self.url)}") from exc
            return
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise _translated(exc, f"database {safe_url(self.url)}") from exc

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for every ``transaction`` block this thread runs inside: one
        commit (one fsync) for a batch of mails instead of one per mail and stage.

        Committed when the block ends without an error, else rolled back. A batch inside a
        batch joins it.
        """
        if self._batch.get() is not None:
            yield
            return
        try:
            with self.engine.begin() as conn:
                if self.dialect == "sqlite":
                    # The driver opens SQLite transactions itself, only before a write, and
                    # knows nothing of savepoints: open it here, taking the write lock at
                    # once, so that a read and a later write of the batch never conflict
                    # with another writer in between.
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                token = self._batch.set(conn)
                try:
                    yield
                finally:
                    self._batch.reset(token)
        except SQLAlchemyError as exc:
            raise _translated(exc, f"database {safe_url(self.url)}") from exc

    @contextmanager
    def read_only(self) -> Iterator[Connection]:
        """A connection in a transaction that the database refuses to write in (PostgreSQL
        ``READ ONLY``, SQLite ``query_only``) and that is rolled back: for dry runs, which
        must leave the store as they found it."""
        try:
            with self.engine.connect() as conn:
                with _refusing_writes(conn, self.dialect):
                    yield conn
                    conn.rollback()
        except SQLAlchemyError as exc:
            raise _translated(exc, f"database {safe_url(self.url)}") from exc

    def ping(self) -> None:
        """Raises ``StoreOutage`` unless the database answers a trivial query."""
        with self.transaction() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _refusing_writes(conn: Connection, dialect: str) -> Iterator[None]:
    if dialect == "sqlite":
        # A connection-wide switch: put back before the connection returns to the pool.
        conn.exec_driver_sql("PRAGMA query_only = ON")
        try:
            yield
        finally:
            conn.rollback()
            conn.exec_driver_sql("PRAGMA query_only = OFF")
        return
    conn.execute(sa.text("SET TRANSACTION READ ONLY"))
    yield


def _translated(exc: SQLAlchemyError, where: str) -> InfraError:
    """``StoreOutage`` when the database is not there (refused, gone, restarting, locked):
    nobody's fault, waited out; plain ``InfraError`` when it refused this statement."""
    if _is_outage(exc):
        return StoreOutage(f"{where} cannot be reached: {_reason(exc)}")
    return InfraError(f"{where}: {_reason(exc)}")


#: SQLite raises OperationalError for mistakes in a statement too; these words mark the
#: ones that are the database file's state, which passes.
_SQLITE_OUTAGES = ("locked", "busy", "unable to open", "disk i/o", "readonly", "full")


def _is_outage(exc: SQLAlchemyError) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError) and isinstance(exc.orig, sqlite3.Error):
        return any(word in str(exc.orig).lower() for word in _SQLITE_OUTAGES)
    # OperationalError: connection refused or lost, server shutting down, deadlock, locked.
    return isinstance(exc, OperationalError | InterfaceError | DisconnectionError | PoolTimeout)


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            # Customer mail lives here: owner only. SQLite gives its -wal and -shm files the
            # database file's mode.
            private_folder(Path(parsed.database).parent)
            private_file(Path(parsed.database))
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # pre-ping: after a restart or failover the pooled connections are dead; each is tested
    # before use and replaced, instead of failing the next mail.
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if _is_postgres(parsed) else {}
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _is_postgres(url: sa.URL) -> bool:
    return url.get_backend_name() == "postgresql"


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the CLI read while `mailroom run` writes; foreign keys are off by default.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def insert_ignoring_conflict(
    conn: Connection, table: sa.Table, values: Mapping[str, object]
) -> bool:
    """Insert a row unless one with the same key exists; True when this call inserted it.

    Concurrent workers may race to insert the same idempotent row; the loser simply finds
    the winner's row there.
    """
    result = conn.execute(_inserting_unless_there(conn.dialect.name, table), dict(values))
    return result.rowcount == 1


def insert_all_ignoring_conflict(
    conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, object]]
) -> None:
    """``insert_ignoring_conflict`` for many rows (all with the same keys), in one call."""
    if rows:
        conn.execute(_inserting_unless_there(conn.dialect.name, table), [dict(r) for r in rows])


def insert_of(dialect: str) -> Callable[[sa.Table], postgresql.Insert | sqlite.Insert]:
    """The ``insert`` of ``dialect`` (a connection's ``dialect.name``): it has ``ON CONFLICT``."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


@cache
def _inserting_unless_there(dialect: str, table: sa.Table) -> sa.Executable:
    # Built once per table: the values come with each call, as parameters.
    insert = insert_of(dialect)
    # SQLAlchemy reports the row count of an INSERT only when asked (on PostgreSQL it is -1
    # otherwise, which would read as "inserted" every time).
    return insert(table).on_conflict_do_nothing().execution_options(preserve_rowcount=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """Datetimes read back from SQLite lose their zone; they were written in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class SqlBlobStore:
    """Content-addressed blobs in the store.

    A blob is immutable and named by its hash, so each ``put`` commits on its own: a blob
    whose mail later fails is harmless, and one that is needed is always there before any
    message that names it is published.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    def put(self, data: bytes) -> str:
        with self._store.transaction() as conn:
            return put_blob(conn, data)

    def get(self, sha256: str) -> bytes:
        with self._store.transaction() as conn:
            return get_blob(conn, sha256)


class BlobsInTransaction:
    """A ``BlobStore`` inside one open transaction: a stage that stores several blobs per mail
    commits them together, one disk flush instead of one per blob."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def put(self, data: bytes) -> str:
        return put_blob(self._conn, data)

    def get(self, sha256: str) -> bytes:
        return get_blob(self._conn, sha256)


_B = tables.blobs
_BLOB_PIECE = sa.select(
    sa.func.substr(_B.c.data, sa.bindparam("start"), BLOB_PIECE, type_=sa.LargeBinary)
).where(_B.c.sha256 == sa.bindparam("sha"))
_BLOB_THERE = sa.select(_B.c.sha256).where(_B.c.sha256 == sa.bindparam("sha"))
_BLOBS_THERE = sa.select(_B.c.sha256).where(_B.c.sha256.in_(sa.bindparam("shas", expanding=True)))


def get_blob(conn: Connection, sha256: str) -> bytes:
    """The blob's bytes; raises ``KeyError`` when absent.

    Read in pieces of ``BLOB_PIECE`` bytes: the database driver holds a whole result two or
    three times over on the way (PostgreSQL sends bytea as hex text), so a 50 MB mail read
    at once would cost about 300 MB.
    """
    pieces: list[bytes] = []
    while not pieces or len(pieces[-1]) == BLOB_PIECE:
        start = len(pieces) * BLOB_PIECE + 1
        row = conn.execute(_BLOB_PIECE, {"sha": sha256, "start": start}).first()
        if row is None:
            raise KeyError(sha256)
        pieces.append(bytes(row[0] or b""))  # SQLite reads no bytes of a blob as NULL
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def put_blob(conn: Connection, data: bytes) -> str:
    """Store ``data`` within the caller's transaction (idempotent); returns its hash."""
    sha = content_hash(data)
    # Look first: a repeated blob (a re-fetched mail) is not sent to the database again.
    if conn.execute(_BLOB_THERE, {"sha": sha}).first() is None:
        insert_ignoring_conflict(conn, _B, _blob_row(sha, data, utcnow()))
    return sha


def put_blobs(conn: Connection, blobs: Mapping[str, bytes]) -> None:
    """Store blobs (by their hash) within the caller's transaction, those not there yet in
    one call (idempotent)."""
    if not blobs:
        return
    there = set(conn.execute(_BLOBS_THERE, {"shas": list(blobs)}).scalars())
    now = utcnow()
    rows = [_blob_row(sha, data, now) for sha, data in blobs.items() if sha not in there]
    insert_all_ignoring_conflict(conn, _B, rows)


def _blob_row(sha: str, data: bytes, now: datetime) -> dict[str, object]:
    return dict(sha256=sha, size=len(data), data=bytes(data), created_at=now)
