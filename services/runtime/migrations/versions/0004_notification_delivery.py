"""Notification delivery: the Message-ID each email goes out with, and its retry schedule.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("message_id", sa.String(300)))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("suppressed_reason", sa.Text))
        batch.create_index("ix_notifications_message_id", ["message_id"])
        batch.create_index("ix_notifications_next_attempt_at", ["next_attempt_at"])


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_index("ix_notifications_next_attempt_at")
        batch.drop_index("ix_notifications_message_id")
        batch.drop_column("suppressed_reason")
        batch.drop_column("next_attempt_at")
        batch.drop_column("attempts")
        batch.drop_column("message_id")
