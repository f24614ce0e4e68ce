"""Large cycles planned in groups (``engine.batch``), on SQLite and Postgres.

The one promise: a cycle planned a group at a time ends where the same
cycle planned whole ends — the same people, the same links, the same
records in every system — and a cycle that deletes is never split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from syncd.engine.batch import Group, Splitter, _taken
from syncd.engine.cycle import Syncer
from syncd.engine.plan import golden_id_for
from syncd.engine.spool import Spool
from syncd.model import Golden, Observation, RemoteRecord
from syncd.store import Store
from tests.world import World, make_world

WHEN = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)

records = st.builds(
    RemoteRecord,
    remote_id=st.text(max_size=5),
    org_id=st.sampled_from(["o1", "o2"]),
    fields=st.dictionaries(st.sampled_from(["first_name", "email"]), st.text(max_size=4)),
    updated_at=st.none() | st.just(WHEN),
    deleted=st.booleans(),
    extra=st.dictionaries(st.sampled_from(["k"]), st.integers()),
)


@given(st.lists(records, max_size=30), st.integers(min_value=1, max_value=7))
def test_spool_gives_back_what_it_was_given(items: list[RemoteRecord], page: int) -> None:
    spool = Spool(items, page=page)
    assert list(spool) == items
    assert len(spool) == len(items)
    assert [spool[i] for i in range(len(items))] == items
    assert list(spool[1:4]) == items[1:4]
    if items:
        assert spool[-1] == items[-1]
    with pytest.raises(IndexError):
        spool[len(items)]
    spool.seal()  # a short last page: indexes still land on the right record
    spool.extend(items[:3])
    assert [spool[i] for i in range(len(spool))] == items + items[:3]
    assert list(spool.drain()) == items + items[:3]
    assert len(spool) == 0 and list(spool) == []


# -- the same cycle, whole and in groups ---------------------------------------------------

FIRST = ["Ada", "Bob", "Cy", "A."]
LAST = ["Lovelace", "Babbage", "Shaw"]
EMAILS = ["", "ada@example.com", "team@example.com", "bob@example.com", "cy@example.com"]
PHONES = ["", "+1 555 0100", "555 0101"]

people = st.fixed_dictionaries({
    "first_name": st.sampled_from(FIRST),
    "last_name": st.sampled_from(LAST),
    "email": st.sampled_from(EMAILS),
    "phone": st.sampled_from(PHONES),
    "job_title": st.sampled_from(["", "CEO", "Clerk"]),
})
placed = st.tuples(st.sampled_from("abc"), st.sampled_from(["org-", "globex-", "elsewhere-"]),
                   people)


def _world(store: Store, batch: int) -> World:
    return make_world(store, ("a", "b", "c"), orgs=("globex",),
                      sync={"batch_records": batch})


def _snapshot(world: World) -> Any:
    """The people, their links and every system's records, with remote ids left out:
    groups push in another order than a whole cycle, so a system numbers its new
    records differently; what each link points at must be the same."""
    state = world.store.load_state()
    held = {name: {rid: (rec.org_id, sorted(rec.fields.items()))
                   for rid, rec in system.records.items()}
            for name, system in world.systems.items()}
    people = {
        gid: (golden.org, sorted(golden.fields.items()), golden.deleted, sorted(
            (system, link.org_id, sorted(link.fields.items()), link.excluded,
             held[system].get(link.remote_id or ""))
            for (owner, system), link in state.links.items() if owner == gid))
        for gid, golden in state.goldens.items()
    }
    return people, {name: sorted(map(repr, records.values())) for name, records in held.items()}


def _play(world: World, rounds: Sequence[list[tuple[str, str, dict[str, str]]]]) -> list[Any]:
    seen = []
    for batch in rounds:
        for system, org, fields in batch:
            world.systems[system].add(f"{org}{system}", fields)
        world.syncer = None  # a fresh process: no state cache to plan from
        report = world.cycle()
        assert report.exit_code == 0, report.errors
        seen.append(_snapshot(world))
    return seen


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rounds=st.lists(st.lists(placed, max_size=12), min_size=1, max_size=3),
       size=st.integers(min_value=1, max_value=4))
def test_a_cycle_in_groups_ends_where_the_whole_cycle_ends(
    tmp_path_factory: pytest.TempPathFactory, rounds: list[list[tuple[str, str, dict[str, str]]]],
    size: int,
) -> None:
    """Shared team addresses, shared landlines, initials, people in an unmapped
    organization, several rounds of new records over existing people."""
    folder = tmp_path_factory.mktemp("groups")
    whole = Store(f"sqlite:///{folder}/whole.db")
    split = Store(f"sqlite:///{folder}/split.db")
    for store in (whole, split):
        store.create_all()
    try:
        assert _play(_world(split, size), rounds) == _play(_world(whole, 10_000), rounds)
    finally:
        whole.close()
        split.close()


def _counting(world: World, groups: list[int]) -> None:
    """A fresh process whose split cycles note how many groups they planned."""

    class Counting(Syncer):
        def _split(self, *args: Any, **kwargs: Any) -> list[Group] | None:
            found = super()._split(*args, **kwargs)
            if found is not None:
                groups.append(len(found))
            return found

    world.syncer = Counting(world.settings, world.store, world.systems, clock=world.clock)


def test_first_sync_in_groups_then_a_quiet_cycle(store: Store) -> None:
    world = _world(store, 5)
    for i in range(30):  # 20 people, some in two systems already
        name = "abc"[i % 3]
        world.systems[name].add(f"org-{name}", {"first_name": "P", "last_name": f"L{i % 20}",
                                                "email": f"p{i % 20}@example.com"})
    groups: list[int] = []
    _counting(world, groups)
    report = world.cycle()
    assert report.exit_code == 0, report.errors
    assert groups == [6]  # one split cycle: 30 records, 5 a group
    for name, system in world.systems.items():
        emails = sorted(r.fields["email"] for r in system.records.values())
        assert emails == sorted(f"p{i}@example.com" for i in range(20)), name
    assert len(world.store.load_state().goldens) == 20
    world.syncer = None
    assert world.cycle().writes == 0


def test_a_dry_run_in_groups_plans_every_write_names_everyone_and_changes_nothing(
    store: Store,
) -> None:
    world = _world(store, 4)
    for i in range(12):
        world.systems["a"].add("org-a", {"first_name": f"P{i}", "last_name": f"L{i}",
                                         "email": f"p{i}@example.com"})
    groups: list[int] = []
    _counting(world, groups)
    report = world.cycle(dry_run=True)
    assert groups == [3]  # one split cycle: 12 records, 4 a group
    assert sorted((w.system, w.action.value) for w in report.planned) == sorted(
        [("b", "create")] * 12 + [("c", "create")] * 12)
    assert report.people is not None
    assert {report.people.label(w.golden_id).split(" (")[0] for w in report.planned} == {
        f"P{i} L{i} <p{i}@example.com>" for i in range(12)}  # then "(a <remote id>)"
    assert world.writes() == 0 and not world.store.load_state().goldens


def test_a_system_added_later_is_matched_in_groups(store: Store) -> None:
    """A third system joins, holding 20 people of whom 3 are stored already: they are
    matched, not created again, though the cycle is split."""
    first = make_world(store, ("a", "b"), sync={"batch_records": 4})
    for i in range(3):
        first.systems["a"].add("org-a", {"first_name": "P", "last_name": f"L{i}",
                                         "email": f"p{i}@example.com"})
    first.cycle()
    world = _world(store, 4)
    world.systems.update(first.systems)
    world.clock = first.clock
    for i in range(20):
        world.systems["c"].add("org-c", {"first_name": "P", "last_name": f"L{i}",
                                         "email": f"p{i}@example.com"})
    groups: list[int] = []
    _counting(world, groups)
    report = world.cycle()
    assert report.exit_code == 0
    assert groups == [8]  # one split cycle, in eight groups
    for name, system in world.systems.items():
        assert len(system.records) == 20, name
    assert len(world.store.load_state().goldens) == 20


def test_a_stop_between_groups_saves_no_watermark_and_the_next_cycle_heals(store: Store) -> None:
    world = _world(store, 3)
    for i in range(15):
        world.systems["a"].add("org-a", {"first_name": "P", "last_name": f"L{i}",
                                         "email": f"p{i}@example.com"})
    groups: list[int] = []
    _counting(world, groups)
    syncer = world.syncer
    assert syncer is not None
    pushes = 0

    def progress(system: str, what: str, n: int) -> None:
        nonlocal pushes
        if what == "written":
            pushes += 1
            if pushes == 2:
                syncer.stop.set()  # SIGTERM while the first group is being pushed

    syncer.progress = progress
    report = world.cycle()
    assert report.exit_code == 130
    assert world.store.watermarks().get("a") is None or (
        world.store.watermarks()["a"].last_full_scan_at is None)
    world.syncer = None
    assert world.cycle().exit_code == 0
    for name, system in world.systems.items():
        emails = sorted(r.fields["email"] for r in system.records.values())
        assert emails == sorted(f"p{i}@example.com" for i in range(15)), name


# -- what a split cycle must never do --------------------------------------------------------


def _splitter(links: Mapping[str, str], stored: Sequence[Golden] = (),
              existing: set[str] | None = None) -> Splitter:
    from syncd.connectors.base import Capabilities
    from syncd.contact import FIELDS
    from syncd.model import SystemInfo

    info = SystemInfo("a", Capabilities(fields=frozenset(FIELDS)), {"o": "acme"})
    return Splitter(
        {"a": info}, "US",
        linked=lambda system, rids: {r: links[r] for r in rids if r in links},
        existing=lambda gids: {g for g in gids if g in (existing or set())},
        goldens=lambda: iter(stored),
        known_ids=lambda system: set(links),
    )


def _rec(rid: str, email: str, *, deleted: bool = False) -> RemoteRecord:
    return RemoteRecord(rid, "o", {"first_name": "A", "last_name": f"B{rid}", "email": email},
                        deleted=deleted)


def test_a_tombstone_of_a_linked_record_is_not_split() -> None:
    obs = Observation("a", [_rec("1", "x@example.com", deleted=True)], complete=False,
                      observed_at=WHEN)
    assert _splitter({"1": "g1"}).split([obs], 1) is None


def test_a_complete_scan_that_misses_a_linked_record_is_not_split() -> None:
    obs = Observation("a", [_rec("2", "y@example.com")], complete=True, observed_at=WHEN)
    assert _splitter({"1": "g1"}).split([obs], 1) is None
    incomplete = Observation("a", [_rec("2", "y@example.com")], complete=False, observed_at=WHEN)
    assert _splitter({"1": "g1"}).split([incomplete], 1) is not None


def test_records_sharing_a_key_land_in_one_group_with_their_stored_person() -> None:
    stored = [Golden("g1", "acme", {"first_name": "A", "last_name": "B",
                                     "email": "shared@example.com"})]
    recs = [_rec(str(i), "shared@example.com" if i % 2 else f"p{i}@example.com")
            for i in range(20)]
    groups = _splitter({}, stored).split(
        [Observation("a", recs, complete=False, observed_at=WHEN)], 2)
    assert groups is not None and len(groups) > 1
    holding = [g for g in groups if "g1" in g.people]
    assert len(holding) == 1
    shared = [r.remote_id for r in holding[0].observations[0].records
              if r.fields["email"] == "shared@example.com"]
    assert shared == [str(i) for i in range(1, 20, 2)]  # all of them, in reading order
    assert sum(g.records() for g in groups) == 20


def test_a_new_person_never_takes_a_stored_persons_id() -> None:
    """``golden_id_for`` names a new person after its first record; if that id is taken
    (the record was unlinked and is read again) the planner takes the next one, so the
    stored people along that chain must be planned in the same group."""
    first = golden_id_for("a", "7")
    second = golden_id_for("a", first)
    taken = _taken("a", {"7": first, "8": golden_id_for("a", "8")},
                   lambda gids: {g for g in gids if g in {first, second}})
    assert taken == {"7": [first, second]}
    stored = [Golden(first, "acme", {"first_name": "Z", "email": "z@example.com"}),
              Golden(second, "acme", {"first_name": "Y", "email": "y@example.com"})]
    groups = _splitter({}, stored, {first, second}).split(
        [Observation("a", [_rec("7", "n@example.com")] + [_rec(str(i), f"q{i}@example.com")
                                                          for i in range(10, 30)],
                     complete=False, observed_at=WHEN)], 2)
    assert groups is not None
    (home,) = [g for g in groups if any(r.remote_id == "7" for r in g.observations[0].records)]
    assert {first, second} <= home.people
