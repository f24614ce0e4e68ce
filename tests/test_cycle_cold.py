"""The cycle (``syncd.engine.cycle``) in a cold process that reads only what changed (issue 15),
on SQLite and Postgres.

A fresh process (the CronJob) drops listed records whose hash equals their
link's and loads only the people the rest touch plus the stored unsettled
ones.  These are the ways that design could fail that a whole-state cycle
could not: a stale hash, a shared hash, a person seen by one system only, a
crash between committing the plan and pushing it, a set-up that changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

import syncd.engine.poll as poll_module
from syncd.model import State, record_hash
from syncd.store import Store
from tests.world import World, make_world

ADA = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
       "job_title": "Countess"}
BOB = {"first_name": "Bob", "last_name": "Babbage", "email": "bob@example.com",
       "job_title": "Engineer"}
CAROL = {"first_name": "Carol", "last_name": "Shaw", "email": "carol@example.com"}


@pytest.fixture
def world(store: Store) -> World:
    return make_world(store, ("a", "b", "c"))


def cold(world: World, *, partial: bool = True, **options: Any) -> Any:
    """One cycle by a fresh Syncer; ``partial``: it must not load the whole state."""
    world.syncer = None
    if not partial:
        return world.cycle(**options)
    original = world.store.load_state

    def refuse() -> State:
        raise AssertionError("a cold cycle with nothing new to match loaded the whole state")

    world.store.load_state = refuse  # type: ignore[method-assign]
    try:
        return world.cycle(**options)
    finally:
        world.store.load_state = original  # type: ignore[method-assign]


def seeded(world: World, *people: dict[str, str]) -> None:
    for p in people:
        world.systems["a"].add("org-a", p)
    world.cycle()  # first sync: matching, the whole state
    world.cycle()


def assert_gone(world: World, systems: tuple[str, ...], email: str,
                kept: tuple[str, str]) -> None:
    """``email``'s person is gone from ``systems``; the person ``kept`` is there, with
    that job title."""
    for name in systems:
        with pytest.raises(KeyError):
            world.find(name, email)
        assert job(world, name, kept[0]) == kept[1]


def job(world: World, system: str, email: str) -> str:
    return world.find(system, email)[1]["job_title"]


def test_quiet_cold_cycle_writes_nothing(world: World) -> None:
    seeded(world, ADA, BOB)
    before = world.writes()
    report = cold(world)
    assert report.exit_code == 0
    assert world.writes() == before
    assert report.systems["a"].read == 2  # unchanged records are read, then left out


def test_record_changed_back_to_its_old_content(world: World) -> None:
    seeded(world, ADA, BOB)
    rid = world.find("b", "ada@example.com")[0]
    world.systems["b"].edit(rid, job_title="Analyst")
    cold(world)
    assert job(world, "a", "ada@example.com") == "Analyst"
    world.systems["b"].edit(rid, job_title="Countess")  # back to what the old hash was of
    cold(world)
    for name in ("a", "b", "c"):
        assert job(world, name, "ada@example.com") == "Countess"
    # And the same by a long-lived process, whose state is kept between cycles.
    world.systems["b"].edit(rid, job_title="Analyst")
    world.cycle()
    world.systems["b"].edit(rid, job_title="Countess")
    world.cycle()
    for name in ("a", "b", "c"):
        assert job(world, name, "ada@example.com") == "Countess"


def test_a_hash_shared_by_different_records_hides_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index is keyed by remote id: only a record's own link's hash counts."""
    seeded(world, ADA, BOB)

    def colliding(fields: Mapping[str, str], org_id: str, extra: Mapping[str, Any]) -> int:
        # Ada's record, and Bob's record once edited, hash alike on purpose.
        if fields.get("email") == "ada@example.com" or fields.get("job_title") == "Architect":
            return 42
        return record_hash(fields, org_id, extra)

    monkeypatch.setattr(poll_module, "record_hash", colliding)
    monkeypatch.setattr("syncd.store.state.record_hash", colliding)
    world.systems["a"].edit(world.find("a", "ada@example.com")[0], phone="+1 555 0100")
    world.cycle()  # Ada's link now carries the colliding hash
    world.systems["a"].edit(world.find("a", "bob@example.com")[0], job_title="Architect")
    cold(world)
    for name in ("b", "c"):
        assert job(world, name, "bob@example.com") == "Architect"
        assert job(world, name, "ada@example.com") == "Countess"
        assert world.find(name, "ada@example.com")[1]["phone"] == "+1 555 0100"


def test_person_touched_by_one_system_only(world: World) -> None:
    seeded(world, ADA, BOB, CAROL)
    before = world.writes()
    world.systems["c"].edit(world.find("c", "bob@example.com")[0], job_title="Architect")
    report = cold(world)
    assert report.exit_code == 0
    assert world.writes() == before + 2  # Bob's update in a and b, nothing else
    for name in ("a", "b", "c"):
        assert job(world, name, "bob@example.com") == "Architect"
        assert job(world, name, "ada@example.com") == "Countess"


def test_delete_seen_by_a_cold_full_scan(world: World) -> None:
    seeded(world, ADA, BOB, CAROL)
    world.systems["b"].remove(world.find("b", "carol@example.com")[0])
    cold(world)
    assert_gone(world, ("a", "c"), "carol@example.com", kept=("ada@example.com", "Countess"))


@pytest.mark.parametrize("then", ["warm", "cold"])
def test_writes_held_by_a_failed_read_are_still_owed_after_it(world: World, then: str) -> None:
    """Found by the state machine: a and c cannot be read, b's record is deleted. The
    deletion's writes to a and c wait for their next read (they may hold news); the
    person must stay owed them, from the daemon's state cache or a fresh process."""
    seeded(world, ADA, BOB)
    world.systems["a"].fail_reads = 1
    world.systems["c"].fail_reads = 1
    world.systems["b"].remove(world.find("b", "bob@example.com")[0])
    assert world.cycle().exit_code == 4  # a long-lived process, planning from its cache
    if then == "cold":
        cold(world)
    else:
        world.cycle()
    assert_gone(world, ("a", "c"), "bob@example.com", kept=("ada@example.com", "Countess"))


def test_crash_after_the_plan_leaves_the_person_unsettled(world: World) -> None:
    """The plan is committed, the push dies: a fresh process still owes the writes."""
    from syncd.connectors.memory import SimulatedCrash

    seeded(world, ADA, BOB)
    world.systems["a"].edit(world.find("a", "ada@example.com")[0], job_title="Analyst")
    world.systems["b"].crash_after_writes = 0
    world.systems["c"].crash_after_writes = 0
    with pytest.raises(SimulatedCrash):
        cold(world)
    cold(world)  # nothing new was read: only the stored unsettled set says who is owed
    for name in ("b", "c"):
        assert job(world, name, "ada@example.com") == "Analyst"


def test_failed_write_is_retried_by_a_cold_process(world: World) -> None:
    seeded(world, ADA, BOB)
    world.systems["a"].edit(world.find("a", "ada@example.com")[0], job_title="Analyst")
    world.systems["b"].fail_writes = 1
    report = cold(world)
    assert report.exit_code == 1
    world.clock.advance(3 * 3600)  # past the back-off
    cold(world)
    assert job(world, "b", "ada@example.com") == "Analyst"


def test_new_system_gets_everyone_from_a_cold_process(store: Store) -> None:
    two = make_world(store, ("a", "b"))
    seeded(two, ADA, BOB)
    three = make_world(store, ("a", "b", "c"))
    three.systems["a"], three.systems["b"] = two.systems["a"], two.systems["b"]
    three.clock = two.clock
    cold(three, partial=False)  # another set-up: the stored unsettled set does not hold
    cold(three, partial=False)  # c completed its first scan: now it may receive creates
    assert sorted(p["email"] for p in three.people("c")) == ["ada@example.com",
                                                             "bob@example.com"]
    before = three.writes()
    cold(three)
    assert three.writes() == before


def test_tombstone_read_by_a_cold_incremental_cycle(store: Store) -> None:
    world = make_world(store, ("a", "b", "c"), incremental=("c",))
    seeded(world, ADA, BOB, CAROL)
    world.systems["c"].remove(world.find("c", "carol@example.com")[0])
    cold(world)
    assert_gone(world, ("a", "b"), "carol@example.com", kept=("bob@example.com", "Engineer"))


def test_mass_delete_guard_counts_links_not_loaded(world: World) -> None:
    """A partial state holds few links: the guard's denominator comes from the store."""
    people = [{"first_name": f"P{i}", "last_name": "Doe", "email": f"p{i}@example.com"}
              for i in range(12)]
    seeded(world, *people)
    for i in (0, 1):  # 2 of 12: under max_delete_fraction (0.2)
        world.systems["b"].remove(world.find("b", f"p{i}@example.com")[0])
    assert cold(world).exit_code == 0
    assert len(world.people("a")) == 10
    for i in (2, 3, 4):  # 3 of 10: over it
        world.systems["b"].remove(world.find("b", f"p{i}@example.com")[0])
    assert cold(world).exit_code == 3
    assert len(world.people("a")) == 10
