"""retention: the blobs each purged item referred to, and when they were dealt with

Revision ID: 0006_retention
Revises: 0005_journal
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_retention"
down_revision = "0005_journal"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("retention") as batch:
        batch.add_column(sa.Column("blobs", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("blobs_deleted_at", sa.DateTime(timezone=True),
                                   nullable=True))
    # The collector asks "does an item still refer to this blob?" by raw_sha256.
    op.create_index("ix_items_raw_sha256", "items", ["raw_sha256"])


def downgrade() -> None:
    op.drop_index("ix_items_raw_sha256", table_name="items")
    with op.batch_alter_table("retention") as batch:
        batch.drop_column("blobs_deleted_at")
        batch.drop_column("blobs")
