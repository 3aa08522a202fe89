"""The first schema: blobs, settings, fetched mails, outcomes, requests, dead letters, outbox.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "helpdesks",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "mailboxes",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("helpdesk_id", sa.String(100), nullable=False),
        sa.Column("protocol", sa.String(20), nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("last_polled_at", TS),
        sa.Column("last_error", sa.Text),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "fetched_mails",
        sa.Column("mail_id", sa.String(64), primary_key=True),
        sa.Column("helpdesk_id", sa.String(100), nullable=False),
        sa.Column("mailbox", sa.String(100), nullable=False),
        sa.Column("ref", sa.Text, nullable=False),
        sa.Column("raw_sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("fetched_at", TS, nullable=False),
        sa.Column("handed_off_at", TS),
        sa.Column("publish_count", sa.Integer, nullable=False),
    )
    op.create_table(
        "mail_outcomes",
        sa.Column("mail_id", sa.String(64), primary_key=True),
        sa.Column("helpdesk_id", sa.String(100), nullable=False),
        sa.Column("mailbox", sa.String(100), nullable=False),
        sa.Column("outcome", sa.String(30), nullable=False),
        sa.Column("request_id", sa.Integer),
        sa.Column("detail", sa.Text),
        sa.Column("at", TS, nullable=False),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("helpdesk_id", sa.String(100), nullable=False, index=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("requester_name", sa.Text, nullable=False),
        sa.Column("requester_email", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "request_mails",
        sa.Column("mail_id", sa.String(64), primary_key=True),
        sa.Column(
            "request_id", sa.Integer, sa.ForeignKey("requests.id"), nullable=False, index=True
        ),
        sa.Column("helpdesk_id", sa.String(100), nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("helpdesk_id", "message_id", name="uq_request_mails_message_id"),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("mail_id", sa.String(64), nullable=False, unique=True),
        sa.Column("helpdesk_id", sa.String(100)),
        sa.Column("mailbox", sa.String(100)),
        sa.Column("ref", sa.Text),
        sa.Column("stage", sa.String(30), nullable=False),
        sa.Column("error_class", sa.String(200), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("log_blob", sa.String(64)),
        sa.Column("at", TS, nullable=False),
        sa.Column("moved_to_error_folder_at", TS),
        sa.Column("move_error", sa.Text),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(300), nullable=False, unique=True),
        sa.Column("mail_id", sa.String(64), nullable=False, index=True),
        sa.Column("helpdesk_id", sa.String(100), nullable=False),
        sa.Column("topic", sa.String(50), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("recipients", sa.JSON, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("in_reply_to", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS),
        sa.Column("error", sa.Text),
    )


def downgrade() -> None:
    for name in (
        "notifications",
        "dead_letters",
        "request_mails",
        "requests",
        "mail_outcomes",
        "fetched_mails",
        "mailboxes",
        "helpdesks",
        "blobs",
    ):
        op.drop_table(name)
