"""A Hypothesis state machine of edits, deletes and undos over three memory systems.

Users create, edit and delete records; an operator undoes a random kept change
(forced or not) or a whole run.  After every step the history replays to the
golden records; after every sync each system holds exactly what the golden
record says (an undone value reached everyone, an undone delete was created
again, an undone creation was deleted everywhere), and a second sync is quiet.
A superseded change is refused exactly when a later change of its field exists.
"""

from __future__ import annotations

import os

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from syncd.contact import normalise, project
from syncd.engine.undo import undo
from syncd.store import Store
from syncd.store import history as hist
from syncd.store.history import DELETED, ORGANIZATION, Change
from tests.history import replay_history
from tests.world import World, make_world

NAMES = ("a", "b", "c")
VALUES = {"first_name": ["Ada", "Bob", "Cy"], "job_title": ["", "CEO", "Clerk"],
          "phone": ["", "+1 555 0100", "555.0101"]}


class UndoMachine(RuleBasedStateMachine):
    world: World

    @initialize(conflict=st.sampled_from(["newest", "priority"]),
                incremental=st.sets(st.sampled_from(NAMES)))
    def setup(self, conflict: str, incremental: set[str]) -> None:
        store = Store("sqlite://")
        store.create_all()
        self.world = make_world(store, NAMES, incremental=tuple(incremental),
                                sync={"conflict": conflict, "priority": ["c", "a"],
                                      "max_delete_fraction": 1.0})
        self.people = 0

    def teardown(self) -> None:
        if hasattr(self, "world"):
            if self.world.syncer is not None:
                self.world.syncer.close()
            self.world.store.close()

    def changes(self) -> list[Change]:
        state = self.world.store.load_state()
        return sorted((c for gid in state.goldens for c in hist.person_changes(self.world.store, gid)),
                      key=lambda c: c.id)

    # -- users ------------------------------------------------------------------------------

    @rule(system=st.sampled_from(NAMES), phone=st.sampled_from(VALUES["phone"]))
    def create(self, system: str, phone: str) -> None:
        self.people += 1
        self.world.systems[system].add(f"org-{system}", {
            "first_name": f"P{self.people}", "last_name": "Doe",
            "email": f"p{self.people}@example.com", "phone": phone})

    @rule(system=st.sampled_from(NAMES), pick=st.integers(0, 50),
          field=st.sampled_from(sorted(VALUES)), value=st.integers(0, 2))
    def edit(self, system: str, pick: int, field: str, value: int) -> None:
        rids = sorted(self.world.systems[system].records)
        if rids:
            new = VALUES[field][value] + (f"{pick}" if field == "first_name" else "")
            self.world.systems[system].edit(rids[pick % len(rids)], **{field: new})

    @rule(system=st.sampled_from(NAMES), pick=st.integers(0, 50))
    def delete(self, system: str, pick: int) -> None:
        rids = sorted(self.world.systems[system].records)
        if rids:
            self.world.systems[system].remove(rids[pick % len(rids)])

    # -- the operator -----------------------------------------------------------------------

    @rule(pick=st.integers(0, 500), force=st.booleans())
    def undo_change(self, pick: int, force: bool) -> None:
        kept = self.changes()
        if not kept:
            return
        change = kept[pick % len(kept)]
        later = [c for c in kept if c.person == change.person and c.field == change.field
                 and c.id > change.id]
        done = undo(self.world.store, ids=[change.id], force=force, now=self.world.clock.now)
        assert bool(done.refused) == (bool(later) and not force), (change, later, done)
        if done.refused:
            assert f"superseded by change {later[0].id}" in done.refused[0].reason
            return
        golden = self.world.store.load_state().goldens[change.person]
        if change.field == ORGANIZATION and not change.old:
            assert golden.deleted  # taking back a creation deletes the person
        elif change.field == DELETED:
            assert golden.deleted == (change.old == "true")
        elif change.field == ORGANIZATION:
            assert golden.org == change.old
        else:
            assert golden.fields.get(change.field, "") == change.old

    @rule(pick=st.integers(0, 50))
    def undo_run(self, pick: int) -> None:
        runs = [r for r in hist.runs(self.world.store, 100) if r["changes"]]
        if runs:
            run = runs[pick % len(runs)]
            done = undo(self.world.store, run=run["id"], force=True, now=self.world.clock.now)
            assert done.refused == [] and len(done.undone) == run["changes"]

    @rule()
    def sync(self) -> None:
        world = self.world
        report = world.cycle(force_delete=True)
        for _ in range(3):
            if report.exit_code == 0:
                break
            report = world.cycle(force_delete=True)
        assert report.exit_code == 0, report.as_dict()
        self.check_converged()
        quiet = world.cycle()
        assert quiet.writes == 0, quiet.as_dict()

    def check_converged(self) -> None:
        state = self.world.store.load_state()
        for name, conn in self.world.systems.items():
            for rid, rec in conn.records.items():
                gids = [g for (g, s), link in state.links.items()
                        if s == name and link.remote_id == rid]
                assert len(gids) == 1, (name, rid, gids)
                golden = state.goldens[gids[0]]
                assert not golden.deleted, (name, rid)
                want = project(golden.fields, sorted(conn.fields))
                assert {f: normalise(f, rec.fields.get(f, "")) for f in want} == {
                    f: normalise(f, v) for f, v in want.items()}, (name, rid)
        for golden in state.goldens.values():
            for name in self.world.systems:
                link = state.links.get((golden.id, name))
                if golden.deleted:
                    assert link is None or link.remote_id is None, (golden.id, name)
                else:
                    assert link is not None and link.remote_id in self.world.systems[name].records

    @invariant()
    def history_replays(self) -> None:
        if hasattr(self, "world"):
            replay_history(self.world.store)


def _examples() -> int:
    return int(os.environ.get("SYNCD_UNDO_MACHINE_EXAMPLES",
                              100 if os.environ.get("CI", "").lower() == "true" else 25))


TestUndoMachine = UndoMachine.TestCase
TestUndoMachine.settings = settings(max_examples=_examples(), stateful_step_count=25,
                                    deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])
