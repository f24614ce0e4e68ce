"""``watermark.token``: a system's own change token (CardDAV's RFC 6578 sync token).

An address book says what changed since a token it handed out, not since a
time; the token is stored with the plan its report fed, like a cursor.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("watermark") as batch:
        batch.add_column(sa.Column("token", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("watermark") as batch:
        batch.drop_column("token")
