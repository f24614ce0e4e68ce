"""``failure.outcome_unknown``: a create that may have landed, as a column.

It used to be a prefix of the stored error text ("outcome unknown: "); the
rows that carry it get the column set and the prefix taken off.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_PREFIX = "outcome unknown: "


def upgrade() -> None:
    with op.batch_alter_table("failure") as batch:
        batch.add_column(sa.Column("outcome_unknown", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.execute(
        sa.text(
            "UPDATE failure SET outcome_unknown = :yes, "
            "last_error = substr(last_error, :cut) "
            "WHERE action = 'create' AND last_error LIKE :like"
        ).bindparams(yes=True, cut=len(_PREFIX) + 1, like=_PREFIX + "%")
    )


def downgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE failure SET last_error = :prefix || last_error WHERE outcome_unknown = :yes"
        ).bindparams(prefix=_PREFIX, yes=True)
    )
    with op.batch_alter_table("failure") as batch:
        batch.drop_column("outcome_unknown")
