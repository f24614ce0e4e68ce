"""The change history (CONTRACT §5): every change to a golden record, one row per field.

Rows are written by :func:`save_history` in the caller's transaction, the one
that commits the golden records they describe: after a crash there is no golden
change without its row and no row without its change.  Replaying a person's
rows in id order from an empty record gives its current fields, organization
and ``deleted`` flag (``tests/test_machine.py`` checks exactly that).

A run row is opened by the first commit of a cycle that changes someone
(:func:`start_run`), so every row names a run that exists; ``Store.record_run``
finishes it, and prunes only runs no kept change points to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd.contact import FIELDS
from syncd.model import Golden
from syncd.store.repo import H, R, Store
from syncd.store.tables import read_utc

__all__ = [
    "DELETED",
    "OPERATOR",
    "ORGANIZATION",
    "Change",
    "FieldChange",
    "changes_by_id",
    "diff_goldens",
    "enabled",
    "later_change",
    "person_changes",
    "prune_history",
    "run_changes",
    "runs",
    "save_history",
    "start_run",
]

ORGANIZATION = "organization"
DELETED = "deleted"
OPERATOR = "operator"
"""The source of a change an operator made (an undo, a console action)."""

_PRUNE_BATCH = 1000
_PRUNE_BATCHES = 20
"""Per cycle at most this many batches: a first prune of a large history is spread out."""


@dataclass(frozen=True, slots=True)
class FieldChange:
    """A change about to be written (its id, time and run come with the write)."""

    person: str
    field: str
    old: str
    new: str
    source: str
    conflict: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """A kept change, as ``history`` and ``undo`` read it."""

    id: int
    at: datetime
    run: int
    person: str
    field: str
    old: str
    new: str
    source: str
    conflict: bool

    def as_dict(self) -> dict[str, Any]:
        """The contract's change object (``history --json``)."""
        return {"id": self.id, "at": self.at.isoformat(), "run": self.run, "field": self.field,
                "old": self.old, "new": self.new, "source": self.source,
                "conflict": self.conflict}


def enabled(store: Store) -> bool:
    """Whether changes are kept at all (``store.keep_history = "0s"`` keeps none)."""
    return store.keep_history > timedelta(0)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def diff_goldens(
    before: Mapping[str, Golden],
    after: Mapping[str, Golden],
    sources: Mapping[str, Mapping[str, tuple[str, bool]]],
) -> list[FieldChange]:
    """One change per field that differs between each person's old and new record.

    ``sources``: per person, field → (system, conflict) as the planner took it;
    ``*`` stands for every field of a person first seen this cycle.  A new
    person is one change per non-empty field (``old`` ""), organization included.
    """
    found: list[FieldChange] = []
    for gid, new in after.items():
        old = before.get(gid)
        taken = sources.get(gid, {})
        fallback = taken.get("*") or next(iter(taken.values()), ("unknown", False))
        old_fields = old.fields if old is not None else {}
        names = list(FIELDS) + sorted((set(new.fields) | set(old_fields)) - set(FIELDS))
        for name in names:
            was, now = old_fields.get(name, "") or "", new.fields.get(name, "") or ""
            if was != now:
                source, conflict = taken.get(name, fallback)
                found.append(FieldChange(gid, name, was, now, source, conflict))
        was_org = old.org if old is not None else ""
        if was_org != new.org:
            source, conflict = taken.get(ORGANIZATION, fallback)
            found.append(FieldChange(gid, ORGANIZATION, was_org, new.org, source, conflict))
        if old is not None and old.deleted != new.deleted:
            source, conflict = taken.get(DELETED, fallback)
            found.append(FieldChange(gid, DELETED, _flag(old.deleted), _flag(new.deleted),
                                     source, conflict))
    return found


def start_run(store: Store, conn: Connection, kind: str, started: datetime) -> int:
    """Open a run row in the caller's transaction (finished by ``Store.record_run``)."""
    done = conn.execute(sa.insert(R).values(kind=kind, started_at=started, finished_at=None,
                                            exit_code=None, summary_json="{}"))
    key = done.inserted_primary_key
    assert key is not None
    return int(key[0])


def save_history(store: Store, conn: Connection, run_id: int, changes: Sequence[FieldChange],
                 at: datetime) -> None:
    """Write the changes in the caller's transaction: one bulk INSERT through the driver."""
    if not changes:
        return
    mark = "?" if store.is_sqlite else "%s"
    stamp = store._ts(at)  # the store's own driver form of a datetime
    conn.exec_driver_sql(
        "INSERT INTO history (at, run_id, golden_id, field, old, new, source, conflict) "  # noqa: S608
        f"VALUES ({', '.join([mark] * 8)})",
        [(stamp, run_id, c.person, c.field, c.old, c.new, c.source, c.conflict) for c in changes],
    )


def _change(row: Any) -> Change:
    at = read_utc(row.at)
    assert at is not None
    return Change(int(row.id), at, int(row.run_id), row.golden_id, row.field, row.old, row.new,
                  row.source, bool(row.conflict))


def _select(store: Store, query: sa.Select[Any]) -> list[Change]:
    with store.engine.connect() as conn:
        return [_change(row) for row in conn.execute(query)]


def person_changes(store: Store, gid: str, limit: int | None = None) -> list[Change]:
    """One person's changes, newest first."""
    query = sa.select(H).where(H.c.golden_id == gid).order_by(H.c.id.desc())
    return _select(store, query if limit is None else query.limit(limit))


def changes_by_id(store: Store, ids: Iterable[int]) -> dict[int, Change]:
    wanted = sorted(set(ids))
    found: dict[int, Change] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        found.update((c.id, c) for c in _select(store, sa.select(H).where(H.c.id.in_(chunk))))
    return found


def run_changes(store: Store, run_id: int) -> list[Change] | None:
    """The changes one run made, newest first; None: no such run."""
    with store.engine.connect() as conn:
        if conn.execute(sa.select(R.c.id).where(R.c.id == run_id)).first() is None:
            return None
    return _select(store, sa.select(H).where(H.c.run_id == run_id).order_by(H.c.id.desc()))


def later_change(store: Store, change: Change, ignore: Iterable[int] = ()) -> Change | None:
    """The first later change of the same person's same field (one that supersedes it)."""
    query = (sa.select(H).where(H.c.golden_id == change.person, H.c.field == change.field,
                                H.c.id > change.id)
             .order_by(H.c.id))
    skip = set(ignore)
    return next((c for c in _select(store, query) if c.id not in skip), None)


def runs(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """Recent runs, newest first, as ``syncd runs --json`` lists them."""
    listed = store.last_runs(limit)
    ids = [r["id"] for r in listed]
    with store.engine.connect() as conn:
        counts: dict[int, int] = dict(conn.execute(
            sa.select(H.c.run_id, sa.func.count()).where(H.c.run_id.in_(ids))
            .group_by(H.c.run_id)).all()) if ids else {}
    found = []
    for r in listed:
        systems = r["summary"].get("systems", {}) if isinstance(r["summary"], dict) else {}
        found.append({
            "id": r["id"], "kind": r["kind"],
            "started": r["started_at"].isoformat() if r["started_at"] else None,
            "finished": r["finished_at"].isoformat() if r["finished_at"] else None,
            "exit_code": r["exit_code"],
            "changes": int(counts.get(r["id"], 0)),
            "systems": {name: {k: int(s.get(k, 0)) for k in
                               ("created", "updated", "deleted", "failed")}
                        for name, s in sorted(systems.items())},
        })
    return found


def prune_history(store: Store, now: datetime) -> int:
    """Drop changes older than ``store.keep_history``, a small batch per transaction.

    Each batch is its own short write, so a cycle never holds the store for a
    year of history at once; at most ``_PRUNE_BATCHES`` per call, the rest next time.
    """
    if not enabled(store):
        return 0
    cutoff = now - store.keep_history
    pruned = 0
    for _ in range(_PRUNE_BATCHES):
        with store.engine.connect() as conn:
            ids = [int(i) for (i,) in conn.execute(
                sa.select(H.c.id).where(H.c.at < cutoff).order_by(H.c.id).limit(_PRUNE_BATCH))]
        if not ids:
            break
        with store.write() as conn:
            conn.execute(sa.delete(H).where(H.c.id.in_(ids)))
        pruned += len(ids)
        if len(ids) < _PRUNE_BATCH:
            break
    return pruned
