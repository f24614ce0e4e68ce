"""The change history: the changes of each commit to each golden record.

Existing golden records get no rows: their history starts with their next
change (whose ``old`` is still the value they held before it).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "history",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("changes_json", sa.Text(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_history_run_id", "history", ["run_id"])
    op.create_index("ix_history_golden_id", "history", ["golden_id"])


def downgrade() -> None:
    op.drop_table("history")
