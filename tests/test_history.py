"""The change history and undo over memory systems and a real store (SQLite and Postgres).

What each change names (source, conflict, run), that it is written with the
golden record, how long it is kept, and that a store made before the history
existed upgrades in place.  The end-to-end acceptance over the sandbox's HTTP
is in ``tests/test_undo.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from syncd.connectors.memory import SimulatedCrash
from syncd.engine.undo import undo
from syncd.errors import ConfigError
from syncd.model import Golden, State
from syncd.store import Store
from syncd.store import history as hist
from syncd.store.migrate import upgrade
from syncd.store.repo import H, R
from tests.history import replay_history
from tests.world import World, make_world

ADA = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def world(store: Store) -> World:
    return make_world(store, ("a", "b", "c"), sync={"priority": ["c", "b", "a"],
                                                    "conflict": "priority"})


def ada(world: World) -> str:
    world.systems["a"].add("org-a", ADA)
    world.cycle()
    return next(iter(world.store.load_state().goldens))


def changes(store: Store, gid: str) -> list[hist.Change]:
    return hist.person_changes(store, gid)


def test_a_new_person_is_one_change_per_non_empty_field(world: World) -> None:
    gid = ada(world)
    found = {c.field: c for c in changes(world.store, gid)}
    assert set(found) == {"first_name", "last_name", "email", "organization"}
    assert all(c.old == "" and c.source == "a" and not c.conflict for c in found.values())
    assert found["organization"].new == "acme" and found["email"].new == "ada@example.com"
    runs = hist.runs(world.store)
    assert [r["changes"] for r in runs] == [4] and found["email"].run == runs[0]["id"]
    replay_history(world.store)


def test_an_edit_names_its_system_and_a_conflict_its_winner(world: World) -> None:
    gid = ada(world)
    rid_b, _ = world.find("b", "ada@example.com")
    world.systems["b"].edit(rid_b, job_title="Analyst")
    world.cycle()
    latest = changes(world.store, gid)[0]
    assert (latest.field, latest.old, latest.new, latest.source, latest.conflict) == (
        "job_title", "", "Analyst", "b", False)
    # Two systems change the field differently: priority (c first) wins, a conflict.
    world.systems["a"].edit(world.find("a", "ada@example.com")[0], job_title="Clerk")
    world.systems["c"].edit(world.find("c", "ada@example.com")[0], job_title="CFO")
    world.cycle()
    latest = changes(world.store, gid)[0]
    assert (latest.old, latest.new, latest.source, latest.conflict) == ("Analyst", "CFO", "c", True)
    assert world.store.conflicts(golden_id=gid)[0]["winner"] == "c"


def test_a_change_made_alike_in_several_systems_names_the_first_by_priority(
    world: World,
) -> None:
    gid = ada(world)
    for name in ("a", "b"):
        world.systems[name].edit(world.find(name, "ada@example.com")[0], last_name="Byron")
    world.cycle()
    latest = changes(world.store, gid)[0]
    assert (latest.field, latest.new, latest.source, latest.conflict) == (
        "last_name", "Byron", "b", False)


def test_a_delete_is_field_deleted_and_its_undo_creates_the_person_again(world: World) -> None:
    gid = ada(world)
    world.systems["b"].add("org-b", {**ADA, "email": "bob@example.com", "first_name": "Bob"})
    world.cycle()
    world.systems["b"].remove(world.find("b", "ada@example.com")[0])
    world.cycle(force_delete=True)
    latest = changes(world.store, gid)[0]
    assert (latest.field, latest.old, latest.new, latest.source) == ("deleted", "false", "true", "b")
    for name in world.systems:
        with pytest.raises(KeyError):
            world.find(name, "ada@example.com")
    done = undo(world.store, ids=[latest.id], now=world.clock.now)
    assert done.undone == [latest.id] and len(done.changes) == 1 and done.exit_code == 0
    world.syncer = None  # a new process, as `syncd once` after `syncd undo`
    report = world.cycle()
    assert {n: s.created for n, s in report.systems.items()} == {"a": 1, "b": 1, "c": 1}
    restored = changes(world.store, gid)[0]
    assert (restored.field, restored.old, restored.new, restored.source) == (
        "deleted", "true", "false", "operator")
    assert [r["kind"] for r in hist.runs(world.store)][:2] == ["once", "undo"]
    replay_history(world.store)


def test_undo_refuses_a_superseded_change_unless_forced(world: World) -> None:
    gid = ada(world)
    rid = world.find("a", "ada@example.com")[0]
    for title in ("Analyst", "CFO"):
        world.systems["a"].edit(rid, job_title=title)
        world.cycle()
    second, first = changes(world.store, gid)[:2]
    refused = undo(world.store, ids=[first.id], now=world.clock.now)
    assert refused.exit_code == 3 and refused.undone == [] and refused.changes == []
    assert f"superseded by change {second.id}" in refused.refused[0].reason
    assert world.store.load_state().goldens[gid].fields["job_title"] == "CFO"
    forced = undo(world.store, ids=[first.id], force=True, now=world.clock.now)
    assert forced.exit_code == 0 and forced.undone == [first.id]
    assert world.store.load_state().goldens[gid].fields["job_title"] == ""
    world.cycle()
    assert all(world.find(n, "ada@example.com")[1].get("job_title", "") == "" for n in "abc")


def test_a_dry_run_undo_shows_its_writes_and_changes_nothing(world: World) -> None:
    gid = ada(world)
    world.systems["a"].edit(world.find("a", "ada@example.com")[0], job_title="Analyst")
    world.cycle()
    latest = changes(world.store, gid)[0]
    before = world.store.revision()
    plan = undo(world.store, ids=[latest.id], dry_run=True, now=world.clock.now,
                systems=world.syncer.systems().values() if world.syncer else ())
    assert world.store.revision() == before
    doc = plan.as_dict()
    assert {(p["system"], p["action"]) for p in doc["planned"]} == {
        ("a", "update"), ("b", "update"), ("c", "update")}
    assert all(p["changes"] == {"job_title": {"old": "Analyst", "new": None}}
               for p in doc["planned"])


def test_unknown_changes_and_runs_are_usage_errors_naming_them(world: World) -> None:
    real = changes(world.store, ada(world))[0].id
    with pytest.raises(ConfigError, match="no change 999, 998 is kept"):
        undo(world.store, ids=[999, 998, real], now=world.clock.now)
    with pytest.raises(ConfigError, match="no run 77"):
        undo(world.store, run=77, now=world.clock.now)


def test_no_history_is_kept_with_keep_history_zero(store: Store) -> None:
    store.keep_history = timedelta(0)
    world = make_world(store, ("a", "b"))
    ada(world)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(H)).scalar_one() == 0


def test_old_changes_are_pruned_and_their_runs_only_then(world: World) -> None:
    store = world.store
    store.keep_history = timedelta(days=30)
    store.keep_runs = timedelta(days=1)
    gid = ada(world)
    first_run = changes(store, gid)[0].run
    world.clock.advance(days=10)
    world.cycle()  # quiet: a run without changes
    world.clock.advance(days=10)
    world.cycle()
    kept = {r["id"] for r in hist.runs(store, 50)}
    assert first_run in kept, "a run history points to outlives keep_runs"
    assert len(kept) == 2, "a run without changes is pruned by keep_runs"
    with store.write() as conn:  # more rows than one batch prunes
        hist.save_history(store, conn, first_run, hist.pack([
            hist.FieldChange(f"p{i}", "job_title", "", f"v{i}", "a") for i in range(2500)
        ]), world.clock.now - timedelta(days=15))
    world.clock.advance(days=21)
    written = store.revision()
    assert hist.prune_history(store, world.clock.now) == 2501  # Ada's first row and 2500 more
    assert store.revision() == written + 3, "a thousand rows per write transaction"
    world.cycle()
    assert changes(store, gid) == []
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(H)).scalar_one() == 0
    assert first_run not in {r["id"] for r in hist.runs(store, 50)}


def test_diff_of_goldens() -> None:
    old = Golden("g", "acme", {"first_name": "Ada", "email": "a@x.io"})
    new = Golden("g", "globex", {"first_name": "Ada", "email": "b@x.io"}, deleted=True)
    found = hist.diff_goldens({"g": old}, {"g": new}, {"g": {"email": ("b", True)}})
    assert [(c.field, c.old, c.new, c.source, c.conflict) for c in found] == [
        ("email", "a@x.io", "b@x.io", "b", True),
        ("organization", "acme", "globex", "b", True),  # no own source: the person's first
        ("deleted", "false", "true", "b", True),
    ]


def test_a_store_of_the_previous_revision_upgrades_in_place(
    store_url: tuple[str, str | None],
) -> None:
    url, schema = store_url
    store = Store(url, schema=schema)
    try:
        upgrade(store.engine, "0003")
        with store.engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO golden (id, org, fields_json, deleted, updated_at) "
                "VALUES ('g1', 'acme', :f, false, :t)"), {"f": json.dumps(ADA), "t": NOW})
            conn.execute(sa.text(
                "INSERT INTO run (kind, started_at, finished_at, exit_code, summary_json) "
                "VALUES ('once', :t, :t, 0, '{}')"), {"t": NOW})
        store.upgrade()
        assert store.load_state().goldens["g1"].fields == ADA
        assert [r["kind"] for r in hist.runs(store)] == ["once"]
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(H)).scalar_one() == 0
        # History starts with the next change, whose old value is what the person held.
        with store.write() as conn:
            run = hist.start_run(store, conn, "once", NOW)
            hist.save_history(store, conn, run, hist.pack(hist.diff_goldens(
                {"g1": Golden("g1", "acme", ADA)},
                {"g1": Golden("g1", "acme", {**ADA, "job_title": "CFO"})},
                {"g1": {"job_title": ("a", False)}})), NOW)
        (change,) = hist.person_changes(store, "g1")
        assert (change.field, change.old, change.new, change.run) == ("job_title", "", "CFO", run)
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(R)).scalar_one() == 2
    finally:
        store.close()


def test_a_first_seen_person_is_packed_as_the_general_diff_packs_it() -> None:
    """The first sync's fast path writes the very JSON the general path writes."""
    odd = {"first_name": 'Zoë "Z"', "last_name": "O\\'Brien\\\\", "email": "z@x.io",
           "phone": "", "job_title": "naïve\nline\ttab \u2028", "department": "日本"}
    after = {"g": Golden("g", "acme", odd), "h": Golden("h", "", {"email": "h@x.io"})}
    sources = {"g": {"*": ("zoho", False)}, "h": {"*": ("a", True)}}
    assert hist.packed_changes({}, after, sources) == hist.pack(
        hist.diff_goldens({}, after, sources))
    g_row = hist.packed_changes({}, after, sources)[0]
    assert g_row[1] == 6 and json.loads(g_row[2])[0] == ["first_name", "", 'Zoë "Z"', "zoho", 0]


def test_undoing_a_run_that_created_people_deletes_them_everywhere(world: World) -> None:
    ada(world)
    bob = {"first_name": "Bob", "last_name": "Babbage", "email": "bob@example.com"}
    carol = {**bob, "first_name": "Carol", "email": "carol@example.com"}
    for person in (bob, carol):  # a bad import into b
        world.systems["b"].add("org-b", person)
    world.cycle()
    run = hist.runs(world.store)[0]
    assert run["changes"] == 8
    done = undo(world.store, run=run["id"], now=world.clock.now)
    assert done.exit_code == 0 and done.refused == [] and len(done.undone) == 8
    new = hist.changes_by_id(world.store, done.changes)
    assert sorted((c.field, c.old, c.new, c.source) for c in new.values()) == [
        ("deleted", "false", "true", "operator")] * 2
    report = world.cycle()
    assert {n: s.deleted for n, s in report.systems.items()} == {"a": 2, "b": 2, "c": 2}
    for name in world.systems:
        assert [p["email"] for p in world.people(name)] == ["ada@example.com"]
    state = world.store.load_state()
    kept = [g for g in state.goldens.values() if g.fields["email"] == "bob@example.com"]
    assert len(kept) == 1 and kept[0].deleted and kept[0].fields["last_name"] == "Babbage"
    replay_history(world.store)


def test_a_run_that_died_after_committing_keeps_its_changes_and_shows_unfinished(
    world: World,
) -> None:
    world.systems["a"].add("org-a", ADA)
    world.systems["b"].crash_after_writes = 0  # the process dies at its first write
    with pytest.raises(SimulatedCrash):
        world.cycle()
    (died,) = hist.runs(world.store)
    assert died["finished"] is None and died["exit_code"] is None and died["changes"] == 4
    replay_history(world.store)
    world.syncer = None  # a new process
    world.cycle()
    latest = hist.runs(world.store)
    assert [r["id"] for r in latest][1] == died["id"] and latest[0]["finished"] is not None
    assert latest[0]["changes"] == 0  # the person was committed once, by the run that died
    assert all(world.find(n, "ada@example.com") for n in "abc")


class _Racy(Store):
    """A store whose next read of people lets another process undo first: the undo
    lands between the cycle's reading of the state and its commit."""

    meanwhile: Any = None

    def load_state(self) -> State:
        state = super().load_state()
        self._then()
        return state

    def load_people(self, *args: Any, **kwargs: Any) -> State:
        state = super().load_people(*args, **kwargs)
        self._then()
        return state

    def _then(self) -> None:
        action, self.meanwhile = self.meanwhile, None
        if action is not None:
            action()


def test_an_undo_committed_while_a_cycle_planned_is_not_overwritten(
    store_url: tuple[str, str | None], debug_logs: None,
) -> None:
    url, schema = store_url
    racy = _Racy(url, schema=schema)
    racy.upgrade()
    operator = Store(url, schema=schema)  # another process: `syncd undo`
    try:
        world = make_world(racy, ("a", "b"))
        gid = ada(world)
        world.systems["a"].edit(world.find("a", "ada@example.com")[0], job_title="CEO")
        world.cycle()
        hired = changes(racy, gid)[0]
        assert (hired.field, hired.new) == ("job_title", "CEO")
        world.systems["b"].edit(world.find("b", "ada@example.com")[0], last_name="Byron")
        racy.meanwhile = lambda: undo(operator, ids=[hired.id], now=world.clock.now)
        world.syncer = None  # a fresh process, which reads the state from the store
        with capture_logs() as logs:
            report = world.cycle()
        assert report.exit_code == 0
        assert [e["attempt"] for e in logs if e["event"] == "cycle_replanned"] == [1]
        golden = racy.load_state().goldens[gid]
        assert (golden.fields["job_title"], golden.fields["last_name"]) == ("", "Byron")
        for name in ("a", "b"):
            fields = world.find(name, "ada@example.com")[1]
            assert (fields.get("job_title", ""), fields["last_name"]) == ("", "Byron")
        replay_history(racy)
    finally:
        operator.close()
        racy.close()


@pytest.mark.parametrize("by", ["this-process", "another-process"])
def test_a_daemon_with_its_state_in_memory_pushes_an_undo_made_beside_it(
    store_url: tuple[str, str | None], by: str,
) -> None:
    """The daemon keeps the people it planned in memory between cycles. An undo made by
    the console in the same process (the same store) or by `syncd undo` (another store
    connection) is a write the daemon did not make: its next cycle reads it and pushes it."""
    url, schema = store_url
    store = Store(url, schema=schema)
    store.upgrade()
    operator = store if by == "this-process" else Store(url, schema=schema)
    try:
        world = make_world(store, ("a", "b"))
        gid = ada(world)
        world.systems["a"].edit(world.find("a", "ada@example.com")[0], job_title="CEO")
        world.cycle()
        assert world.cycle().exit_code == 0  # a quiet cycle: the state is now kept warm
        syncer = world.syncer
        hired = changes(store, gid)[0]
        assert (hired.field, hired.new) == ("job_title", "CEO")
        assert undo(operator, ids=[hired.id], now=world.clock.now).undone == [hired.id]
        report = world.cycle()
        assert world.syncer is syncer  # the same long-lived Syncer
        assert {n: s.updated for n, s in report.systems.items()} == {"a": 1, "b": 1}
        for name in ("a", "b"):
            assert world.find(name, "ada@example.com")[1].get("job_title", "") == ""
        assert world.cycle().systems["a"].updated == 0  # and then quiet again
    finally:
        if operator is not store:
            operator.close()
        store.close()
