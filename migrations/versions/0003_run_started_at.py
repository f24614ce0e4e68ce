"""An index on ``run.started_at``.

A connector with a daily request budget (Zoho Books) reads the last day of
runs in every new process, which under a CronJob is every cycle; runs are
now also dropped by age.  Both look runs up by their start.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_run_started_at", "run", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_run_started_at", table_name="run")
