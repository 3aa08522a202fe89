"""Delivery starts: Mailroom's own count of the times a worker began a message and died.

The broker counts every delivery that ended without an ack, outages and restarts included;
this table counts only redelivered messages whose handling began and never ended, so an
outage costs no mail its delivery budget.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "delivery_starts",
        sa.Column("key", sa.String(120), primary_key=True),
        sa.Column("starts", sa.Integer, nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("delivery_starts")
