"""Dead-letter ids are never reused: an admin's `dlq replay ID` can only mean one entry.

SQLite hands out the highest id + 1 unless the table says AUTOINCREMENT, so after the newest
entry is replayed or purged its id would come back for another mail. PostgreSQL's sequences
never go back; there this changes nothing.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "dead_letters", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("dead_letters", recreate="always"):
        pass
