"""The queries the read side needs beyond :class:`~syncd.store.repo.Store`'s own.

Kept apart from ``repo.py`` so that the console's needs (a failure's row id,
acting on one quarantined write by that id) do not grow the engine's store
class: every function here takes a ``Store`` and touches only its tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

import sqlalchemy as sa

from syncd.model import Failure
from syncd.store import history, runs
from syncd.store.admin import drop_quarantined
from syncd.store.dialect import dumps
from syncd.store.repo import Store
from syncd.store.tables import C, F, G

__all__ = [
    "drop_failures", "failures_by_id", "open_conflicts", "retry_failures", "use_conflict_value",
]


def failures_by_id(store: Store, *, quarantined: bool | None = None, system: str | None = None,
                   golden_id: str | None = None) -> dict[int, Failure]:
    """The stored failures under their row ids (the ``id`` of ``quarantine list --json``),
    of one system or person when given."""
    return dict(runs.failures(store.dialect, quarantined=quarantined, system=system,
                              golden_id=golden_id))


def retry_failures(store: Store, ids: Iterable[int]) -> list[int]:
    """Release these quarantined writes for the next cycle (as ``quarantine retry`` does);
    the ids that were quarantined and now are not."""
    wanted = sorted(set(ids))
    done: list[int] = []
    if not wanted:
        return done
    with store.write() as conn:
        for fid in wanted:
            changed = conn.execute(
                sa.update(F).where(F.c.id == fid, F.c.quarantined.is_(True))
                .values(quarantined=False, attempts=0, next_retry_at=None)
            ).rowcount
            if changed:
                done.append(fid)
    return done


def drop_failures(store: Store, ids: Iterable[int]) -> list[int]:
    """Give these quarantined writes up (as ``quarantine drop`` does); the ids dropped."""
    known = failures_by_id(store, quarantined=True)
    done: list[int] = []
    for fid in sorted(set(ids)):
        failure = known.get(fid)
        if failure is not None and drop_quarantined(store, failure.system, failure.golden_id):
            done.append(fid)
    return done


def open_conflicts(store: Store) -> int:
    """Logged conflicts not resolved (``status``'s ``open_conflicts``), without the link count."""
    with store.engine.connect() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).select_from(C).where(C.c.resolved.is_(False))
        ).scalar_one())


def use_conflict_value(store: Store, conflict_id: int, system: str) -> dict[str, str] | None:
    """An operator's "use this value instead": the golden field takes the value ``system``
    had in the conflict, the conflict is marked resolved, and the person is marked
    unsettled so that the next cycle pushes the value to every system.

    None when there is no such conflict, no such candidate, or the person is gone.
    """
    with store.write() as conn:
        row = conn.execute(sa.select(C).where(C.c.id == conflict_id)).first()
        if row is None:
            return None
        chosen = next((c for c in json.loads(row.candidates_json) if c.get("system") == system),
                      None)
        golden = history.stored_goldens(store, conn, [row.golden_id]).get(row.golden_id)
        if chosen is None or golden is None or golden.deleted:
            return None
        now = datetime.now(UTC)
        fields = dict(golden.fields)
        value = str(chosen.get("value") or "")
        if row.field == history.ORGANIZATION:  # a move's conflict: the person's organization
            old = golden.org
            conn.execute(sa.update(G).where(G.c.id == row.golden_id).values(
                org=value, updated_at=now))
        else:
            old = fields.get(row.field, "") or ""
            fields[row.field] = value
            conn.execute(sa.update(G).where(G.c.id == row.golden_id).values(
                fields_json=dumps(fields), updated_at=now))
        conn.execute(sa.update(C).where(C.c.id == conflict_id).values(resolved=True))
        store.add_unsettled(conn, [row.golden_id])
        run_id = None
        if old != value:  # an operator change, kept with the golden record it changes
            run_id = history.start_run(store, conn, "console", now)
            history.save_history(store, conn, run_id, history.pack([history.FieldChange(
                row.golden_id, row.field, old, value, history.OPERATOR)]), now)
    if run_id is not None:
        store.record_run("console", now, now, 0, {"systems": {}}, run_id=run_id)
    return {"person": row.golden_id, "field": row.field, "value": value,
            "source": "operator"}
