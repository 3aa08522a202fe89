"""Dead-letter entries name the queue they failed on and may keep the failed message.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("queue", sa.String(50)))
        batch.add_column(sa.Column("payload_blob", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("payload_blob")
        batch.drop_column("queue")
