"""Initial store: golden records, links, watermarks, failures, conflicts, runs.

Plain SQLAlchemy types only (no SQLModel types), so the migration keeps
working whatever SQLModel does in later releases.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "golden",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("org", sa.String(200), nullable=False),
        sa.Column("fields_json", sa.Text(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        _ts("updated_at"),
    )
    op.create_index("ix_golden_org", "golden", ["org"])
    op.create_table(
        "link",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("system", sa.String(100), nullable=False),
        sa.Column("remote_id", sa.String(200), nullable=True),
        sa.Column("golden_id", sa.String(64), sa.ForeignKey("golden.id"), nullable=False),
        sa.Column("org_id", sa.String(200), nullable=False),
        sa.Column("fields_json", sa.Text(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        _ts("remote_updated_at", nullable=True),
        sa.Column("extra_json", sa.Text(), nullable=False),
        sa.Column("excluded", sa.Boolean(), nullable=False),
        _ts("updated_at"),
        sa.UniqueConstraint("system", "remote_id", name="uq_link_system_remote"),
        sa.UniqueConstraint("golden_id", "system", name="uq_link_golden_system"),
    )
    op.create_table(
        "watermark",
        sa.Column("system", sa.String(100), primary_key=True),
        _ts("cursor", nullable=True),
        _ts("last_poll_at", nullable=True),
        _ts("last_full_scan_at", nullable=True),
        _ts("last_success_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_table(
        "failure",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("system", sa.String(100), nullable=False),
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("remote_id", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("desired_hash", sa.String(64), nullable=False),
        sa.Column("quarantined", sa.Boolean(), nullable=False),
        _ts("next_retry_at", nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("system", "golden_id", name="uq_failure_system_golden"),
    )
    op.create_index("ix_failure_golden_id", "failure", ["golden_id"])
    op.create_table(
        "conflict",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("field", sa.String(50), nullable=False),
        sa.Column("candidates_json", sa.Text(), nullable=False),
        sa.Column("winner", sa.String(100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("policy", sa.String(20), nullable=False),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        _ts("created_at"),
    )
    op.create_index("ix_conflict_golden_id", "conflict", ["golden_id"])
    op.create_table(
        "store_revision",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(
        sa.table("store_revision", sa.column("id", sa.Integer()), sa.column("value", sa.BigInteger())),
        [{"id": 1, "value": 0}],
    )
    op.create_table(
        "run",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(20), nullable=False),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("summary_json", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for table in ("run", "store_revision", "conflict", "failure", "watermark", "link", "golden"):
        op.drop_table(table)
