"""The change history (CONTRACT §5): every change to a golden record, one change per field.

Changes are written by :func:`save_history` in the caller's transaction, the one
that commits the golden records they describe: after a crash there is no golden
change without its change rows and none of those without its change.  Replaying a
person's changes in id order from an empty record gives its current fields,
organization and ``deleted`` flag (``tests/test_machine.py`` checks exactly that).
Each stored row holds one commit's changes to one person (see ``ChangeRow``).

A run row is opened by the first commit of a cycle that changes someone
(:func:`start_run`), so every row names a run that exists; ``Store.record_run``
finishes it, and prunes only runs no kept change points to.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd.contact import FIELDS
from syncd.model import Golden
from syncd.store.dialect import CHUNK, GOLDEN_COLUMNS, dumps
from syncd.store.repo import Store
from syncd.store.tables import H, R, read_utc

__all__ = [
    "DELETED",
    "OPERATOR",
    "ORGANIZATION",
    "PER_ROW",
    "Change",
    "FieldChange",
    "Packed",
    "changes_by_id",
    "diff_goldens",
    "enabled",
    "later_change",
    "pack",
    "packed_changes",
    "person_changes",
    "prune_history",
    "run_changes",
    "runs",
    "save_history",
    "start_run",
    "stored_goldens",
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


Packed = tuple[str, int, str]
"""One stored row's worth: (person, how many changes, their JSON list)."""

_NO_SOURCES: Mapping[str, tuple[str, bool]] = {}
_EXTRA: list[str] = []


def _person_diff(old: Golden | None, new: Golden,
                 taken: Mapping[str, tuple[str, bool]]) -> list[list[Any]]:
    """``[field, old, new, source, conflict]`` for each field that differs (see below)."""
    fallback = taken.get("*") or next(iter(taken.values()), ("unknown", False))
    found: list[list[Any]] = []
    new_fields = new.fields
    if old is None:  # the common case of a first sync: every non-empty field, from ""
        source, conflict = fallback
        for name in FIELDS:
            value = new_fields.get(name)
            if value:
                own = taken.get(name)
                found.append([name, "", value, *(own if own else (source, conflict))])
        extra = sorted(set(new_fields) - set(FIELDS)) if len(new_fields) > len(FIELDS) else _EXTRA
        for name in extra:
            if new_fields[name]:
                found.append([name, "", new_fields[name], *taken.get(name, fallback)])
        if new.org:
            found.append([ORGANIZATION, "", new.org, *taken.get(ORGANIZATION, fallback)])
        return found
    old_fields = old.fields
    for name in [*FIELDS, *sorted((set(new_fields) | set(old_fields)) - set(FIELDS))]:
        was, now = old_fields.get(name, "") or "", new_fields.get(name, "") or ""
        if was != now:
            found.append([name, was, now, *taken.get(name, fallback)])
    if old.org != new.org:
        found.append([ORGANIZATION, old.org, new.org, *taken.get(ORGANIZATION, fallback)])
    if old.deleted != new.deleted:
        found.append([DELETED, _flag(old.deleted), _flag(new.deleted),
                      *taken.get(DELETED, fallback)])
    return found


def packed_changes(
    before: Mapping[str, Golden],
    after: Mapping[str, Golden],
    sources: Mapping[str, Mapping[str, tuple[str, bool]]],
) -> list[Packed]:
    """What :func:`diff_goldens` finds, packed for :func:`save_history` as it is found.

    The cycle's path: each person's changes are encoded at once, so a first sync of
    10 000 people holds 10 000 strings, not 60 000 objects for the collector to walk.
    """
    rows: list[Packed] = []
    encode = dumps
    for gid, new in after.items():
        old = before.get(gid)
        taken = sources.get(gid, _NO_SOURCES)
        if old is None and len(taken) == 1 and "*" in taken and new.fields.keys() <= _FIELD_SET:
            rows.append((gid, *_new_person(new, *taken["*"])))
            continue
        found = _person_diff(old, new, taken)
        if found:
            for change in found:
                change[4] = int(change[4])
            rows.append((gid, len(found), encode(found)))
    return rows


_QUOTE = json.encoder.encode_basestring  # a JSON string, as dumps writes it (C)
_HEADS = {name: f"[{_QUOTE(name)},\"\"," for name in (*FIELDS, ORGANIZATION)}
_FIELD_SET = frozenset(FIELDS)


def _new_person(new: Golden, source: str, conflict: bool) -> tuple[int, str]:
    """A first-seen person's changes as :func:`_person_diff` and ``dumps`` would give
    them, written straight as JSON: the bulk of a first sync, so the one hot path."""
    tail = f",{_QUOTE(source)},{int(conflict)}]"
    fields = new.fields
    parts = [_HEADS[name] + _QUOTE(value) + tail for name in FIELDS if (value := fields.get(name))]
    if new.org:
        parts.append(_HEADS[ORGANIZATION] + _QUOTE(new.org) + tail)
    return len(parts), "[" + ",".join(parts) + "]"


def diff_goldens(
    before: Mapping[str, Golden],
    after: Mapping[str, Golden],
    sources: Mapping[str, Mapping[str, tuple[str, bool]]],
) -> list[FieldChange]:
    """One change per field that differs between each person's old and new record.

    ``sources``: per person, field → (system, conflict) as the planner took it;
    ``*`` stands for every field of a person first seen this cycle.  A new
    person is one change per non-empty field (``old`` ""), organization included;
    a delete is ``deleted`` from "false" to "true".
    """
    return [FieldChange(gid, name, was, now, source, bool(conflict))
            for gid, new in after.items()
            for name, was, now, source, conflict in _person_diff(
                before.get(gid), new, sources.get(gid, _NO_SOURCES))]


def pack(changes: Sequence[FieldChange]) -> list[Packed]:
    """Changes (each person's consecutive) as :func:`save_history` takes them."""
    rows: list[Packed] = []
    for change in changes:
        item = [change.field, change.old, change.new, change.source, int(change.conflict)]
        if rows and rows[-1][0] == change.person:
            person, _count, text = rows[-1]
            items = [*json.loads(text), item]
            rows[-1] = (person, len(items), dumps(items))
        else:
            rows.append((change.person, 1, dumps([item])))
    return rows


def stored_goldens(store: Store, conn: Connection, gids: Iterable[str]) -> dict[str, Golden]:
    """The golden records of these people as the caller's transaction sees them."""
    dialect = store.dialect
    return dialect.goldens(dialect.select_in(
        f"SELECT {GOLDEN_COLUMNS} FROM golden WHERE id IN ({{marks}})", gids,  # noqa: S608
        conn=conn))


def start_run(store: Store, conn: Connection, kind: str, started: datetime) -> int:
    """Open a run row in the caller's transaction (finished by ``Store.record_run``)."""
    done = conn.execute(sa.insert(R).values(kind=kind, started_at=started, finished_at=None,
                                            exit_code=None, summary_json="{}"))
    key = done.inserted_primary_key
    assert key is not None
    return int(key[0])


PER_ROW = 100
"""Change ``i`` of stored row ``r`` has the id ``r * PER_ROW + i`` (a record has fewer fields)."""


def save_history(store: Store, conn: Connection, run_id: int, rows: Sequence[Packed],
                 at: datetime) -> None:
    """Write changes in the caller's transaction: one row per person, one bulk INSERT."""
    if not rows:
        return
    if any(count >= PER_ROW for _, count, _ in rows):
        raise ValueError(f"more than {PER_ROW - 1} changes to one person in one commit")
    stamp = store.dialect.ts(at)
    store.dialect.insert(conn, "history", ("at", "run_id", "golden_id", "count", "changes_json"),
                         [(stamp, run_id, gid, count, text) for gid, count, text in rows])


def _changes(row: Any) -> list[Change]:
    """A stored row's changes, in the order they were made."""
    at = read_utc(row.at)
    assert at is not None
    return [Change(int(row.id) * PER_ROW + i, at, int(row.run_id), row.golden_id, name, old, new,
                   source, bool(conflict))
            for i, (name, old, new, source, conflict) in enumerate(json.loads(row.changes_json))]


def _select(store: Store, query: sa.Select[Any]) -> list[Change]:
    """The changes of the rows ``query`` selects, newest first."""
    with store.engine.connect() as conn:
        found = [c for row in conn.execute(query) for c in _changes(row)]
    return sorted(found, key=lambda c: c.id, reverse=True)


def person_changes(store: Store, gid: str, limit: int | None = None) -> list[Change]:
    """One person's changes, newest first."""
    found = _select(store, sa.select(H).where(H.c.golden_id == gid))
    return found if limit is None else found[:limit]


def changes_by_id(store: Store, ids: Iterable[int]) -> dict[int, Change]:
    wanted = set(ids)
    rows = sorted({i // PER_ROW for i in wanted})
    found: dict[int, Change] = {}
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        found.update((c.id, c) for c in _select(store, sa.select(H).where(H.c.id.in_(chunk)))
                     if c.id in wanted)
    return found


def run_changes(store: Store, run_id: int) -> list[Change] | None:
    """The changes one run made, newest first; None: no such run."""
    with store.engine.connect() as conn:
        if conn.execute(sa.select(R.c.id).where(R.c.id == run_id)).first() is None:
            return None
    return _select(store, sa.select(H).where(H.c.run_id == run_id))


def later_change(store: Store, change: Change, ignore: Iterable[int] = ()) -> Change | None:
    """The first later change of the same person's same field (one that supersedes it)."""
    skip = set(ignore)
    later = [c for c in _select(store, sa.select(H).where(
        H.c.golden_id == change.person, H.c.id >= change.id // PER_ROW))
        if c.field == change.field and c.id > change.id and c.id not in skip]
    return min(later, key=lambda c: c.id) if later else None


def runs(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """Recent runs, newest first, as ``syncd runs --json`` lists them."""
    listed = store.last_runs(limit)
    ids = [r["id"] for r in listed]
    with store.engine.connect() as conn:
        counts: dict[int, int] = dict(conn.execute(
            sa.select(H.c.run_id, sa.func.sum(H.c.count)).where(H.c.run_id.in_(ids))
            .group_by(H.c.run_id)).all()) if ids else {}
    found = []
    for r in listed:
        summary = r["summary"] if isinstance(r["summary"], dict) else {}
        systems = summary.get("systems", {})
        found.append({
            "id": r["id"], "kind": r["kind"],
            "started": r["started_at"].isoformat() if r["started_at"] else None,
            "finished": r["finished_at"].isoformat() if r["finished_at"] else None,
            "exit_code": r["exit_code"],
            "changes": int(counts.get(r["id"], 0)),
            "systems": {name: {k: int(s.get(k, 0)) for k in
                               ("created", "updated", "deleted", "failed")}
                        for name, s in sorted(systems.items())},
            "errors": list(summary.get("errors", []))[:5],
        })
    return found


def prune_history(store: Store, now: datetime) -> int:
    """Drop changes older than ``store.keep_history``, a small batch per transaction.

    Rows are taken oldest first by id (the order they were written in, so no
    index on their time is kept up on every insert); each batch is its own
    short write, and at most ``_PRUNE_BATCHES`` go per call, the rest next time.
    """
    if not enabled(store):
        return 0
    cutoff = now - store.keep_history
    with store.engine.connect() as conn:  # usually nothing is due: one look-up says so
        first = conn.execute(sa.select(H.c.at).order_by(H.c.id).limit(1)).first()
    if first is None or first[0] >= cutoff:
        return 0
    pruned = 0
    for _ in range(_PRUNE_BATCHES):
        with store.engine.connect() as conn:
            oldest = conn.execute(
                sa.select(H.c.id, H.c.at).order_by(H.c.id).limit(_PRUNE_BATCH)).all()
        ids = []
        for row_id, at in oldest:
            if at >= cutoff:
                break
            ids.append(int(row_id))
        if ids:
            with store.write() as conn:
                conn.execute(sa.delete(H).where(H.c.id.in_(ids)))
            pruned += len(ids)
        if len(ids) < _PRUNE_BATCH:
            break
    return pruned
