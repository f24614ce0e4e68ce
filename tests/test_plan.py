"""The planner (``syncd.engine.plan``): what it decides from golden records, links and observations.

Diffs that propose nothing, merges and their conflicts (``newest``, ``priority``,
a lagging link), deletes (``propagate``, ``ignore``, modify beats delete), the
mass-delete guard, organization moves and records it must leave out.  Mostly
scenarios over memory systems around a real store (``tests.world``, SQLite
and Postgres), where a cycle puts the planner's result into effect; at the
end, pure calls of :func:`plan` (a property test of its purity among them).
First-sync matching has its own module (``test_match``).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from syncd.connectors.base import Capabilities, RemoteRecord
from syncd.connectors.memory import MemoryRecord
from syncd.contact import FIELDS
from syncd.engine.plan import plan
from syncd.errors import MassDeleteError
from syncd.model import Golden, Link, Observation, Policy, State, SystemInfo
from syncd.store import Store
from tests.world import ADA, BOB, World, make_world, names, seed, world

__all__ = ["world"]  # the fixture, for pytest


def test_delete_propagates(world: World) -> None:
    ids = seed(world, ADA, BOB, {**BOB, "email": "carol@example.com", "first_name": "Carol"})
    world.systems["a"].remove(ids[0])
    report = world.cycle()
    assert report.systems["b"].deleted == 1 and report.systems["c"].deleted == 1
    for name in ("b", "c"):
        with pytest.raises(KeyError):
            world.find(name, "ada@example.com")
    assert world.cycle().writes == 0


def test_delete_is_ignored(store: Store) -> None:
    world = make_world(store, ("a", "b"), sync={"deletes": "ignore",
                                                      "max_delete_fraction": 0.5})
    ids = seed(world, ADA, BOB, {**BOB, "email": "carol@example.com"})
    world.systems["a"].remove(ids[0])
    report = world.cycle()
    assert report.writes == 0
    world.find("b", "ada@example.com")  # still there
    rid, _ = world.find("b", "ada@example.com")
    world.systems["b"].edit(rid, job_title="Countess")
    world.cycle()
    with pytest.raises(KeyError):
        world.find("a", "ada@example.com")  # never pushed back to the deleting system


def test_both_changed_same_field_newest_wins_and_conflict_logged(world: World) -> None:
    seed(world, ADA)
    rid_b, _ = world.find("b", "ada@example.com")
    rid_c, _ = world.find("c", "ada@example.com")
    world.systems["b"].edit(rid_b, job_title="Older")
    world.clock.advance(5)
    world.systems["c"].edit(rid_c, job_title="Newer")
    report = world.cycle()
    assert report.conflicts == 1
    for name in ("a", "b", "c"):
        assert world.find(name, "ada@example.com")[1]["job_title"] == "Newer"
    (row,) = world.store.conflicts()
    assert row["field"] == "job_title" and row["winner"] == "c" and row["value"] == "Newer"


def test_both_changed_same_field_priority_wins(store: Store) -> None:
    world = make_world(store, ("a", "b"), sync={"conflict": "priority",
                                                      "priority": ["b", "a"]})
    seed(world, ADA)
    rid_b, _ = world.find("b", "ada@example.com")
    world.systems["b"].edit(rid_b, job_title="From B (older)")
    world.clock.advance(5)
    world.systems["a"].edit(world.find("a", "ada@example.com")[0], job_title="From A")
    report = world.cycle()
    assert report.conflicts == 1
    assert world.find("a", "ada@example.com")[1]["job_title"] == "From B (older)"


def test_both_changed_different_fields_both_kept(world: World) -> None:
    seed(world, ADA)
    world.systems["a"].edit(world.find("a", "ada@example.com")[0], job_title="Countess")
    world.systems["b"].edit(world.find("b", "ada@example.com")[0], mobile="+44 7700 900123")
    report = world.cycle()
    assert report.conflicts == 0
    for name in ("a", "b", "c"):
        fields = world.find(name, "ada@example.com")[1]
        assert fields["job_title"] == "Countess" and fields["mobile"] == "+44 7700 900123"


def test_both_changed_to_same_value_no_conflict_no_write(world: World) -> None:
    seed(world, ADA)
    for name in ("a", "b", "c"):
        world.systems[name].edit(world.find(name, "ada@example.com")[0], job_title="Countess")
    before = world.writes()
    report = world.cycle()
    assert report.conflicts == 0 and report.writes == 0 and world.writes() == before


def test_timestamp_bump_without_content_change_writes_nothing(world: World) -> None:
    seed(world, ADA, BOB)
    for name in ("a", "b", "c"):
        for rid in list(world.systems[name].records):
            world.systems[name].touch(rid)
    before = world.writes()
    report = world.cycle()
    assert report.writes == 0 and world.writes() == before


def test_modify_beats_delete(world: World) -> None:
    ids = seed(world, ADA, BOB, {**BOB, "email": "carol@example.com"})
    world.systems["a"].remove(ids[0])
    world.systems["b"].edit(world.find("b", "ada@example.com")[0], job_title="Still here")
    world.cycle()
    for name in ("a", "b", "c"):
        assert world.find(name, "ada@example.com")[1]["job_title"] == "Still here"


def test_mass_delete_aborts_with_exit_3(world: World) -> None:
    ids = seed(world, *[{**BOB, "email": f"p{i}@example.com"} for i in range(6)])
    for rid in ids[:4]:
        world.systems["a"].remove(rid)
    report = world.cycle()
    assert report.exit_code == 3 and "mass-delete guard" in report.errors[0]
    assert len(world.people("b")) == 6
    forced = world.cycle(force_delete=True)
    assert forced.exit_code == 0 and len(world.people("b")) == 2


def test_a_record_listed_twice_in_one_scan_is_one_person(store: Store) -> None:
    """Paging can repeat a record (offset paging while records move): still one person."""
    from syncd.connectors.base import RemoteRecord
    from syncd.engine.plan import plan
    from syncd.model import Observation, Policy, State, SystemInfo

    world = make_world(store, ("a",))
    info = SystemInfo("a", world.systems["a"].capabilities, {"org-a": "acme"})
    rec = RemoteRecord("7", "org-a", {"first_name": "Ada", "email": "ada@example.com"})
    result = plan(State({}, {}), [Observation("a", [rec, rec], True, world.clock.now)],
                  {"a": info}, Policy())
    assert len(result.state.goldens) == 1 and len(result.state.links) == 1


def test_d5_a_change_from_a_lagging_link_is_a_logged_conflict(store: Store) -> None:
    world = make_world(store, ("a", "b"), sync={"conflict": "priority", "priority": ["a", "b"]})
    world.systems["a"].add("org-a", ADA)
    world.cycle()
    rid_b, _ = world.find("b", "ada@example.com")
    world.systems["a"].edit(world.find("a", "ada@example.com")[0], phone="2222")
    world.systems["b"].edit(rid_b, phone="3333")
    world.systems["b"].fail_reads = 1
    world.systems["b"].fail_writes = 1
    world.cycle()  # b unread: a's 2222 becomes golden; b does not receive it
    report = world.cycle()
    assert report.conflicts == 1, report.as_dict()
    world.cycle()  # b's write failed once more (the failing write was held so far)
    for system in ("a", "b"):
        assert world.find(system, "ada@example.com")[1]["phone"] == "2222"  # a has priority
    (row,) = [c for c in world.store.conflicts() if c["field"] == "phone"]
    assert row["winner"] == "a"


def test_d6_organization_moves_are_propagated_never_deleted(store: Store) -> None:
    world = make_world(store, ("a", "b", "c"), orgs=("globex",))
    world.systems["a"].can_move = True
    world.systems["b"].can_move = True  # c cannot: create under the new parent, delete the old
    rid_a = world.systems["a"].add("org-a", ADA)
    world.cycle()
    (gid,) = world.store.load_state().goldens
    world.systems["a"].move(rid_a, "globex-a")
    report = world.cycle()
    assert report.exit_code == 0, report.as_dict()
    for system in ("a", "b", "c"):
        (rec,) = world.systems[system].records.values()
        assert rec.org_id == f"globex-{system}", system
    state = world.store.load_state()
    assert list(state.goldens) == [gid] and state.goldens[gid].org == "globex"
    assert world.cycle().writes == 0
    # Out of every mapped organization: no longer synced, and deleted nowhere.
    world.systems["a"].move(rid_a, "unmapped")
    report = world.cycle()
    assert report.exit_code == 0 and report.writes == 0, report.as_dict()
    for system in ("a", "b", "c"):
        assert len(world.people(system)) == 1
    assert not world.store.load_state().goldens[gid].deleted
    assert world.cycle(full=set()).writes == 0


def test_d7_records_without_an_id_are_rejected_never_linked(store: Store) -> None:
    world = make_world(store, ("a", "b"))
    world.systems["a"].records[""] = MemoryRecord(
        "org-a", {"first_name": "No", "last_name": "Id"}, world.clock.now)
    world.systems["a"].records["  "] = MemoryRecord(
        "org-a", {"first_name": "Blank", "last_name": "Id"}, world.clock.now)
    world.systems["a"].add("org-a", ADA)
    report = world.cycle()
    assert report.exit_code == 1
    assert report.errors == ["a: a record without a usable id was left out (No Id)",
                             "a: a record without a usable id was left out (Blank Id)"]
    assert names(world, "b") == ["Ada Lovelace"]
    state = world.store.load_state()
    assert len(state.goldens) == 1
    assert all(link.remote_id and link.remote_id.strip() for link in state.links.values())


def test_d8_newest_is_fair_to_a_system_with_timestamps(store: Store) -> None:
    """``b`` has no timestamps: its change, observed now, is no newer than ``a``'s stamp;
    the tie goes to the priority order (here by name: ``a`` first)."""
    world = make_world(store, ("a", "b"))
    world.systems["b"].timestamps = False
    world.systems["a"].add("org-a", ADA)
    world.cycle()
    world.systems["b"].edit(world.find("b", "ada@example.com")[0], job_title="From b")
    world.clock.advance(60)
    world.systems["a"].edit(world.find("a", "ada@example.com")[0], job_title="From a")
    report = world.cycle()
    assert report.conflicts == 1
    for system in ("a", "b"):
        assert world.find(system, "ada@example.com")[1]["job_title"] == "From a"


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


people = st.fixed_dictionaries({
    "first_name": st.sampled_from(["Ada", "Bob", ""]),
    "last_name": st.sampled_from(["Doe", "Roe"]),
    "email": st.sampled_from(["a@x.io", "b@x.io", "c@x.io", ""]),
    "phone": st.sampled_from(["555 0100", "5550101", ""]),
})


@settings(max_examples=150, deadline=None)
@given(
    held=st.lists(st.tuples(st.sampled_from(["a", "b"]), people), max_size=6),
    seen=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 9), people,
                            st.booleans()), max_size=8),
    complete=st.booleans(),
)
def test_plan_is_pure_and_deterministic(
    held: list[tuple[str, dict[str, str]]],
    seen: list[tuple[str, int, dict[str, str], bool]],
    complete: bool,
) -> None:
    goldens: dict[str, Golden] = {}
    links: dict[tuple[str, str], Link] = {}
    for i, (system, fields) in enumerate(held):
        gid = f"g{i}"
        goldens[gid] = Golden(gid, "acme", {f: fields.get(f, "") for f in FIELDS})
        links[(gid, system)] = Link(system, gid, str(i), "1", dict(fields))
    state = State(goldens, links)
    frozen = copy.deepcopy((goldens, links))
    caps = Capabilities(fields=frozenset(FIELDS), timestamps=True)
    systems = {s: SystemInfo(s, caps, {"1": "acme"}) for s in ("a", "b")}
    observations = [
        Observation(s, [RemoteRecord(str(rid), "1", dict(f), NOW, deleted=gone)
                        for sys_, rid, f, gone in seen if sys_ == s], complete, NOW)
        for s in ("a", "b")
    ]
    policy = Policy(max_delete_fraction=1.0)
    try:
        first = plan(state, observations, systems, policy)
    except MassDeleteError:
        return
    second = plan(state, observations, systems, policy)
    assert first.state == second.state
    assert first.conflicts == second.conflicts
    assert (goldens, links) == frozen  # the input was not touched
    remote = [(s, link.remote_id) for (_, s), link in first.state.links.items() if link.remote_id]
    assert len(remote) == len(set(remote))  # one person per remote record
