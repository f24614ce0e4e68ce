"""``syncd undo``: set fields back to what a change found, as new changes of the operator.

An undo never rewrites history: each field goes back as a change of its own
(source ``operator``) in a run of its own (kind ``undo``), written with the
golden record in one transaction.  Nothing is sent anywhere here: the people
touched are marked unsettled, and the next cycle derives the writes (golden vs
link) as for any change — an update in each system, a create where an undone
delete had deleted.

A change that a later change of the same field superseded is refused unless
forced: undoing it would silently throw the later value away.  Undoing a
person's creation (its first ``organization``) deletes the person: setting each
first value back to "" would blank a record in every system instead.  Changes undone
in the same request do not count as superseding each other (``undo --run`` of
a run that changed a field twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from syncd.engine.writes import derive_writes
from syncd.errors import ConfigError
from syncd.model import Golden, State, SystemInfo, Write
from syncd.people import People, describe_write
from syncd.store import history
from syncd.store.history import DELETED, OPERATOR, ORGANIZATION, PER_ROW, Change, FieldChange
from syncd.store.repo import Store

__all__ = ["Refused", "UndoResult", "undo"]


@dataclass(frozen=True, slots=True)
class Refused:
    id: int
    reason: str


@dataclass
class UndoResult:
    undone: list[int] = field(default_factory=list)
    changes: list[int] = field(default_factory=list)
    """The new changes' ids (none in a dry run)."""
    refused: list[Refused] = field(default_factory=list)
    planned: list[Write] = field(default_factory=list)
    """The writes the next cycle will send (a dry run, when the systems are known)."""
    run: int | None = None
    dry_run: bool = False
    forced: bool = False
    people: People | None = field(default=None, repr=False)

    @property
    def exit_code(self) -> int:
        return 3 if self.refused and not self.forced else 0

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "undone": self.undone, "changes": self.changes,
            "refused": [{"id": r.id, "reason": r.reason} for r in self.refused],
            "run": self.run,
        }
        if self.dry_run:
            doc["dry_run"] = True
            doc["planned"] = [describe_write(w, self.people) for w in self.planned]
        return doc


def _current(golden: Golden, name: str) -> str:
    if name == ORGANIZATION:
        return golden.org
    if name == DELETED:
        return "true" if golden.deleted else "false"
    return golden.fields.get(name, "") or ""


def _set(golden: Golden, name: str, value: str) -> Golden:
    if name == ORGANIZATION:
        return replace(golden, org=value)
    if name == DELETED:
        return replace(golden, deleted=value == "true")
    return replace(golden, fields={**golden.fields, name: value})


def _wanted(store: Store, ids: Sequence[int], run: int | None) -> list[Change]:
    """The changes asked for, newest first; unknown ones are a usage error naming them."""
    if run is not None:
        found = history.run_changes(store, run)
        if found is None:
            raise ConfigError(f"no run {run} is kept: see `syncd runs` for the runs there are")
        return found
    known = history.changes_by_id(store, ids)
    missing = [i for i in dict.fromkeys(ids) if i not in known]
    if missing:
        listed = ", ".join(str(i) for i in missing)
        raise ConfigError(f"no change {listed} is kept: see `syncd history PERSON` for the ids")
    return sorted(known.values(), key=lambda c: c.id, reverse=True)


def undo(
    store: Store,
    *,
    ids: Sequence[int] = (),
    run: int | None = None,
    force: bool = False,
    dry_run: bool = False,
    now: datetime,
    systems: Iterable[SystemInfo] | None = None,
) -> UndoResult:
    """Undo changes by id, or every change of one run; see the module docstring.

    Decided and written inside one write transaction: a cycle committing at the
    same moment waits for it (or it for the cycle), and then sees it.
    """
    if dry_run:
        return _decide(store, ids, run, force, systems, dry_run=True)[0]
    with store.write() as conn:
        result, new, changed = _decide(store, ids, run, force, systems, dry_run=False)
        result.run = history.start_run(store, conn, "undo", now)
        if changed:
            store.save_changes(conn, goldens=changed, links={}, removed=[], now=now)
            history.save_history(store, conn, result.run, history.pack(new), now)
            # The next cycle derives their writes even in a process that plans only
            # for the people it knows to be owed some.
            store.add_unsettled(conn, changed)
    _finish(store, result, now)
    return result


def _decide(
    store: Store, ids: Sequence[int], run: int | None, force: bool,
    systems: Iterable[SystemInfo] | None, *, dry_run: bool,
) -> tuple[UndoResult, list[FieldChange], dict[str, Golden]]:
    """What the undo does: the result so far, the new changes and the golden records."""
    wanted = _wanted(store, ids, run)
    result = UndoResult(dry_run=dry_run, forced=force)
    state = store.load_people({c.person for c in wanted}, [], counts=False)
    goldens: dict[str, Golden] = dict(state.goldens)
    asked = {c.id for c in wanted}
    # The stored rows (commits) of the creations this undo takes back.
    created = {c.id // PER_ROW for c in wanted if c.field == ORGANIZATION and not c.old}
    new: list[FieldChange] = []
    for change in wanted:
        golden = goldens.get(change.person)
        reason = None
        later = history.later_change(store, change, ignore=asked)
        if golden is None:
            reason = f"person {change.person} is no longer stored"
        elif later is not None and not force:
            reason = (f"superseded by change {later.id} (run {later.run}, {later.source}: "
                      f"{later.field} {later.old!r} → {later.new!r}); --force undoes it anyway")
        if reason is not None or golden is None:
            result.refused.append(Refused(change.id, reason or ""))
            continue
        result.undone.append(change.id)
        if change.field == ORGANIZATION and not change.old:
            # Taking back a person's creation (a bad import) deletes the person; its
            # first values stay, so that it is still found and a restore brings it back whole.
            name, value = DELETED, "true"
        elif not change.old and change.id // PER_ROW in created:
            continue  # a first value of a person whose creation this undo takes back
        else:
            name, value = change.field, change.old
        was = _current(golden, name)
        if was != value:
            new.append(FieldChange(change.person, name, was, value, OPERATOR))
            goldens[change.person] = golden = _set(golden, name, value)
    changed = {c.person: goldens[c.person] for c in new}
    after = State(goldens={**state.goldens, **changed}, links=state.links)
    result.people = People(after)
    if dry_run and systems is not None and changed:
        result.planned = derive_writes(after, systems, only=sorted(changed))[0]
    return result, new, changed


def _finish(store: Store, result: UndoResult, now: datetime) -> None:
    """The new changes' ids into the result, and the run row finished."""
    assert result.run is not None
    run_id = result.run
    result.changes = sorted(c.id for c in history.run_changes(store, run_id) or [])
    store.record_run("undo", now, now, result.exit_code,
                     {"systems": {}, "errors": [f"change {r.id}: {r.reason}"
                                                for r in result.refused][:20],
                      "undone": result.undone, "changes": result.changes},
                     run_id=run_id)
