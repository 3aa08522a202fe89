"""What IMAP and POP mailboxes need remembered, and the poller's per-mailbox leases.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "source_cursors",
        sa.Column("mailbox", sa.String(100), primary_key=True),
        sa.Column("validity", sa.String(100), nullable=False),
        sa.Column("first_connected_at", TS, nullable=False),
    )
    op.create_table(
        "taken_refs",
        sa.Column("mailbox", sa.String(100), primary_key=True),
        sa.Column("ref", sa.String(300), primary_key=True),
        sa.Column("message_id", sa.Text),
        sa.Column("reason", sa.String(30), nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_taken_refs_message_id", "taken_refs", ["mailbox", "message_id"])
    op.create_table(
        "mailbox_leases",
        sa.Column("mailbox", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mailbox_leases")
    op.drop_index("ix_taken_refs_message_id", "taken_refs")
    op.drop_table("taken_refs")
    op.drop_table("source_cursors")
