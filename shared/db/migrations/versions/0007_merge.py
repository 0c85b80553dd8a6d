"""join the branches made in parallel (access, journal, mailboxes) into one line again

Revision ID: 0007
Revises: 0006_ews, 0006_retention, 0006_rules
"""

from __future__ import annotations

revision = "0007"
down_revision = ("0006_ews", "0006_retention", "0006_rules")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # a merge point: the branches' own migrations did the work


def downgrade() -> None:
    pass
