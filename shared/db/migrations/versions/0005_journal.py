"""receipt retries, ESDH call results, retention marks

Revision ID: 0005_journal
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_journal"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("receipts") as batch:
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("event", sa.Text(), nullable=True))
        batch.create_index("ix_receipts_next_attempt_at", ["next_attempt_at"])
    op.create_table(
        "esdh_calls",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "retention",
        sa.Column("item_id", sa.Uuid(), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("item_id"),
    )


def downgrade() -> None:
    op.drop_table("retention")
    op.drop_table("esdh_calls")
    with op.batch_alter_table("receipts") as batch:
        batch.drop_index("ix_receipts_next_attempt_at")
        batch.drop_column("event")
        batch.drop_column("last_error")
        batch.drop_column("next_attempt_at")
