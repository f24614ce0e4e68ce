"""Unsettled people, and link hashes over what the planner compares.

The ``unsettled`` table lets a fresh process derive writes only for people
who may still have some; it starts empty, without the row that says under
which set-up it holds ("not known"), so the first cycle after the upgrade
derives for everyone and fills it.

The link ``hash`` becomes the hash of (fields, parent, connector data) with
sorted keys, the one the poller compares a listed record with; the stored
hashes are recomputed here.  The function is copied, not imported: this
migration must keep computing what it computed when it was written.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True,
                            default=str)


def _hash(fields: Any, org_id: str, extra: Any) -> str:
    raw = _ENCODER.encode([fields, org_id, extra])
    digest = int.from_bytes(hashlib.blake2b(raw.encode(), digest_size=8).digest(), "big")
    return f"{digest:016x}"


def upgrade() -> None:
    op.create_table("unsettled", sa.Column("golden_id", sa.String(64), primary_key=True))
    conn = op.get_bind()
    link = sa.table("link", sa.column("id", sa.Integer()), sa.column("org_id", sa.String()),
                    sa.column("fields_json", sa.Text()), sa.column("extra_json", sa.Text()),
                    sa.column("hash", sa.String()))
    rows = conn.execute(sa.select(link.c.id, link.c.fields_json, link.c.org_id,
                                  link.c.extra_json)).all()
    updates = [
        {"link_id": rid, "new_hash": _hash(json.loads(fields), org, json.loads(extra))}
        for rid, fields, org, extra in rows
    ]
    if updates:
        conn.execute(
            sa.update(link).where(link.c.id == sa.bindparam("link_id"))
            .values(hash=sa.bindparam("new_hash")),
            updates,
        )


def downgrade() -> None:
    op.drop_table("unsettled")
