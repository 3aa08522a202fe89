"""IMAP watermark: every UID up to it is taken, so a round lists only what lies above.

``watermark`` holds for the cursor's UIDVALIDITY and starts at 0 (a first round after the
upgrade lists the folder once, then rises). ``modseq`` is the folder's HIGHESTMODSEQ when
everything in it was taken; ``generation`` grows whenever a taken ref is let go, so a
round that read the cursor before cannot raise the watermark over that ref.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    with op.batch_alter_table("source_cursors") as batch:
        batch.add_column(sa.Column("watermark", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("modseq", sa.BigInteger))
        batch.add_column(sa.Column("generation", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("source_cursors") as batch:
        batch.drop_column("generation")
        batch.drop_column("modseq")
        batch.drop_column("watermark")
