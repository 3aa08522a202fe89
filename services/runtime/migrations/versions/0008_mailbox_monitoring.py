"""Mailbox monitoring: when a poll last succeeded, and whether errors stopped fetching.

``last_polled_at`` moves on with every round, failed ones too; monitoring needs the last
round that worked. Which pause the error folder caused was only told by its wording.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"

mailboxes = sa.table(
    "mailboxes",
    sa.column("last_polled_at", sa.DateTime(timezone=True)),
    sa.column("last_error", sa.Text),
    sa.column("paused_reason", sa.Text),
    sa.column("enabled", sa.Boolean),
    sa.column("last_success_at", sa.DateTime(timezone=True)),
    sa.column("paused_by_errors", sa.Boolean),
)


def upgrade() -> None:
    with op.batch_alter_table("mailboxes") as batch:
        batch.add_column(sa.Column("last_success_at", sa.DateTime(timezone=True)))
        batch.add_column(
            sa.Column("paused_by_errors", sa.Boolean, nullable=False, server_default=sa.false())
        )
    # What the rows already tell: a round without an error succeeded, and a pause worded
    # by the error folder's stop (poller/dead_letters.py) was made by it.
    op.execute(
        mailboxes.update()
        .where(mailboxes.c.last_error.is_(None))
        .values(last_success_at=mailboxes.c.last_polled_at)
    )
    op.execute(
        mailboxes.update()
        .where(
            mailboxes.c.enabled.is_(False),
            mailboxes.c.paused_reason.like("the error folder holds %"),
        )
        .values(paused_by_errors=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("mailboxes") as batch:
        batch.drop_column("paused_by_errors")
        batch.drop_column("last_success_at")
