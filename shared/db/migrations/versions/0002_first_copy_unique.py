"""one first copy per Message-ID and mailbox

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "uq_source_messages_first_copy", "source_messages", ["mailbox", "message_id"],
        unique=True,
        sqlite_where=sa.text("duplicate = 0 AND message_id IS NOT NULL"),
        postgresql_where=sa.text("duplicate = false AND message_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_source_messages_first_copy", table_name="source_messages")
