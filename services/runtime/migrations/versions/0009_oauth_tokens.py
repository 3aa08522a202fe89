"""OAuth tokens of ``auth: oauth`` mailboxes, sealed with the SecretBox.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.create_table(
        "oauth_tokens",
        sa.Column(
            "mailbox",
            sa.String(100),
            sa.ForeignKey("mailboxes.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("refresh_token", sa.Text, nullable=False),
        sa.Column("access_token", sa.Text),
        sa.Column("access_expires_at", sa.DateTime(timezone=True)),
        sa.Column("refresh_issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refresh_used_at", sa.DateTime(timezone=True)),
        sa.Column("account", sa.String(320)),
        sa.Column("last_failure", sa.Text),
        sa.Column("last_failure_at", sa.DateTime(timezone=True)),
        sa.Column("lapse_warned_for", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("oauth_tokens")
