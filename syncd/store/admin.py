"""Operator actions on the store that span tables."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from syncd.store.repo import Store
from syncd.store.tables import F, L

__all__ = ["drop_quarantined"]


def drop_quarantined(store: Store, system: str | None, golden_id: str | None) -> int:
    """Give up on quarantined writes: the person is no longer pushed to that system.

    The link becomes an exclusion (no remote id), so the derived writes stop;
    ``quarantine retry`` is the way back for a record that can be fixed.
    """
    keys = [(f.system, f.golden_id) for f in store.quarantined(system, golden_id)]
    now = datetime.now(UTC)
    with store.write() as conn:
        for sys_name, gid in keys:
            done = conn.execute(
                sa.update(L)
                .where(L.c.system == sys_name, L.c.golden_id == gid)
                .values(excluded=True, updated_at=now)
            )
            if done.rowcount == 0:
                conn.execute(
                    sa.insert(L).values(
                        system=sys_name, remote_id=None, golden_id=gid, org_id="",
                        fields_json="{}", hash="", remote_updated_at=None, extra_json="{}",
                        excluded=True, updated_at=now,
                    )
                )
            conn.execute(sa.delete(F).where(F.c.system == sys_name, F.c.golden_id == gid))
    return len(keys)
