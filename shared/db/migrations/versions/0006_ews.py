"""mailbox sync state (EWS SyncState, Graph delta link)

Revision ID: 0006_ews
Revises: 0005_mailboxes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_ews"
down_revision = "0005_mailboxes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mailbox_sync",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("mailbox_sync")
