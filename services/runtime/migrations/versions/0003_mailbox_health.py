"""Mailbox health: error-folder count, why fetching is paused, connectivity alert state.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("mailboxes") as batch:
        batch.add_column(sa.Column("error_count", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("paused_reason", sa.Text))
        batch.add_column(sa.Column("alerted_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("mailboxes") as batch:
        batch.drop_column("alerted_at")
        batch.drop_column("paused_reason")
        batch.drop_column("error_count")
