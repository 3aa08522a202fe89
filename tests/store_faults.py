"""Failures injected from inside the real store: database triggers that refuse or lose rows.

Each stage writes something of its own to the store, so a trigger that refuses that write
makes exactly that stage fail for exactly the mails it matches, in the stage's own process,
on SQLite and on PostgreSQL alike. Nothing in Mailroom knows about them.
"""

from __future__ import annotations

import sqlalchemy as sa

# table -> trigger name; the names are what ``clear`` drops.
_TRIGGERS = {
    "blobs": "fault_lose_blob",
    "requests": "fault_refuse_request",
    "notifications": "fault_refuse_notification",
}


class StoreFaults:
    """Install or clear faults in the database at ``url`` (already migrated)."""

    def __init__(self, url: str) -> None:
        self._engine = sa.create_engine(url)
        self._pg = self._engine.dialect.name == "postgresql"

    def lose_blobs_containing(self, marker: bytes) -> None:
        """A blob holding ``marker`` is silently not stored: storage that lost a write."""
        if self._pg:
            self._pg_trigger(
                "blobs",
                f"position('\\x{marker.hex()}'::bytea in NEW.data) > 0",
                "RETURN NULL;",
            )
        else:
            self._sqlite_trigger(
                "blobs", f"instr(NEW.data, X'{marker.hex()}') > 0", "SELECT RAISE(IGNORE);"
            )

    def refuse_requests_titled(self, marker: str) -> None:
        """Opening a request whose subject holds ``marker`` fails in the database."""
        self._refuse("requests", self._holds("NEW.subject", marker))

    def hang_requests_titled(self, marker: str) -> None:
        """Opening a request whose subject holds ``marker`` hangs (PostgreSQL only): the
        router handling that mail never finishes, as if the mail made it loop."""
        assert self._pg, "a hanging statement needs PostgreSQL"
        self._pg_trigger("requests", self._holds("NEW.subject", marker), "PERFORM pg_sleep(600);")

    def refuse_emails_titled(self, marker: str) -> None:
        """Keeping an email notification whose subject holds ``marker`` fails in the database."""
        holds = self._holds("NEW.subject", marker)
        self._refuse("notifications", f"NEW.channel = 'email' AND {holds}")

    def clear(self) -> None:
        with self._engine.begin() as conn:
            for table, name in _TRIGGERS.items():
                conn.exec_driver_sql(
                    f"DROP TRIGGER IF EXISTS {name} ON {table}"
                    if self._pg
                    else f"DROP TRIGGER IF EXISTS {name}"
                )

    def close(self) -> None:
        self._engine.dispose()

    def _holds(self, column: str, text: str) -> str:
        # No LIKE: the driver would read its % signs as parameter placeholders.
        return f"{'strpos' if self._pg else 'instr'}({column}, '{text}') > 0"

    def _refuse(self, table: str, condition: str) -> None:
        message = f"injected fault: {table} refused"
        if self._pg:
            self._pg_trigger(table, condition, f"RAISE EXCEPTION '{message}';")
        else:
            self._sqlite_trigger(table, condition, f"SELECT RAISE(ABORT, '{message}');")

    def _sqlite_trigger(self, table: str, condition: str, action: str) -> None:
        with self._engine.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE TRIGGER {_TRIGGERS[table]} BEFORE INSERT ON {table} "
                f"WHEN {condition} BEGIN {action} END"
            )

    def _pg_trigger(self, table: str, condition: str, action: str) -> None:
        name = _TRIGGERS[table]
        with self._engine.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN IF {condition} THEN {action} END IF; RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                f"CREATE TRIGGER {name} BEFORE INSERT ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {name}()"
            )
