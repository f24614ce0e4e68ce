"""The poller (``syncd.engine.poll``) and a system whose scan asks only the mapped organizations
(Lightening's ``customer_id[]``).

A linked record missing from such a scan has been deleted *or moved to an
organization nobody mapped*; only a read by id tells which, and a person who
left is deleted nowhere.  A cycle reads at most ``Poller.confirm_max`` of them
by id; the rest wait, and the mass-delete guard counts them with the deletes
so that a mass delete cannot slip under it a few records a cycle.

Over memory systems around a real store (SQLite and Postgres).
"""

from __future__ import annotations

from syncd.store import Store
from tests.world import World, make_world


def scoped_world(store: Store, **sync: object) -> World:
    world = make_world(store, sync={"max_delete_fraction": 1.0, **sync})
    world.systems["a"].scoped = True
    return world


def emails(world: World, system: str) -> list[str]:
    return sorted(p["email"] for p in world.people(system))


def test_missing_records_are_read_by_id_a_few_a_cycle_and_only_the_gone_are_deleted(
    store: Store,
) -> None:
    world = scoped_world(store)
    a = world.systems["a"]
    ids = [a.add("org-a", {"first_name": f"P{i}", "last_name": "Doe",
                           "email": f"p{i}@x.io"}) for i in range(6)]
    assert world.cycle().exit_code == 0 and len(world.systems["b"].records) == 6
    for rid in ids[:3]:
        a.move(rid, "nowhere")  # three leave the mapped organizations
    for rid in ids[3:5]:
        a.remove(rid)  # two are deleted
    assert world.syncer is not None
    world.syncer.poller.confirm_max = 2
    before = a.requests
    world.cycle()
    assert a.requests - before == 1 + 2  # the scan, then two of the five by id
    assert emails(world, "b") == ["p0@x.io", "p1@x.io", "p2@x.io", "p3@x.io", "p4@x.io",
                                  "p5@x.io"]  # the first two read were people who left
    world.cycle()  # p2 left; p3 is gone
    world.cycle()  # p4 is gone
    assert emails(world, "b") == ["p0@x.io", "p1@x.io", "p2@x.io", "p5@x.io"]
    before = a.requests
    world.cycle()
    assert a.requests - before == 1  # settled: people who left are not read again
    assert world.cycle().writes == 0


def test_a_mass_delete_confirmed_a_few_a_cycle_still_trips_the_guard(store: Store) -> None:
    world = scoped_world(store, max_delete_fraction=0.5)
    a = world.systems["a"]
    ids = [a.add("org-a", {"first_name": f"P{i}", "last_name": "Doe",
                           "email": f"p{i}@x.io"}) for i in range(10)]
    world.cycle()
    for rid in ids[:6]:
        a.remove(rid)
    assert world.syncer is not None
    world.syncer.poller.confirm_max = 2
    report = world.cycle()
    # Two confirmed gone, four not read yet: six of ten is past the half allowed.
    assert report.exit_code == 3, report.errors
    assert len(world.systems["b"].records) == 10
    report = world.cycle(force_delete=True)
    assert len(world.systems["b"].records) == 8  # the operator's word: the two confirmed go
