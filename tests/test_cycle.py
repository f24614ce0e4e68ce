"""One sync cycle (``syncd.engine.cycle.Syncer``): poll, plan, push and commit, put together.

Over memory systems around a real store (``tests.world``, SQLite and
Postgres): creates and updates carried everywhere, failed writes retried and
quarantined, dry runs, watermarks, and the faults a cycle must survive —
answers lost after the server applied a write, failed first reads, crashes
between writes (issue 9: one named test per reproduced defect, ``test_d*``).
What the planner decides is in ``test_plan``, matching in ``test_match``,
write derivation in ``test_writes``; cold processes that read only what
changed are in ``test_cycle_cold``.
"""

from __future__ import annotations

import pytest

from syncd.connectors.base import FieldLimit
from syncd.connectors.memory import SimulatedCrash
from syncd.store import Store
from tests.world import ADA, BOB, World, make_world, names, seed, world

__all__ = ["world"]  # the fixture, for pytest


def test_create_propagates(world: World) -> None:
    report = seed(world, ADA)
    assert report == [world.find("a", "ada@example.com")[0]]
    for name in ("b", "c"):
        _, fields = world.find(name, "ada@example.com")
        assert fields["last_name"] == "Lovelace"
        assert fields["phone"] == "+44 20 7946 0000"


def test_update_propagates(world: World) -> None:
    seed(world, ADA)
    rid, _ = world.find("b", "ada@example.com")
    world.systems["b"].edit(rid, job_title="Analyst")
    report = world.cycle()
    assert report.systems["a"].updated == 1 and report.systems["c"].updated == 1
    assert world.find("a", "ada@example.com")[1]["job_title"] == "Analyst"
    assert world.find("c", "ada@example.com")[1]["job_title"] == "Analyst"


def test_write_fails_then_succeeds_next_cycle(world: World) -> None:
    world.systems["b"].fail_writes = 1
    report = seed(world, ADA)
    assert report == [world.find("a", "ada@example.com")[0]]
    first = world.store.failures()
    assert [(f.system, f.attempts) for f in first] == [("b", 1)]
    with pytest.raises(KeyError):
        world.find("b", "ada@example.com")
    report2 = world.cycle()
    assert report2.exit_code == 0 and report2.systems["b"].created == 1
    world.find("b", "ada@example.com")
    assert world.store.failures() == []


def test_failed_write_exits_1_and_is_quarantined_after_max_attempts(world: World) -> None:
    world.systems["b"].fail_writes = 100
    world.systems["a"].add("org-a", ADA)
    codes = []
    for _ in range(6):
        world.clock.advance(86400)
        codes.append(world.cycle().exit_code)
    assert codes[0] == 1
    (failure,) = world.store.failures(quarantined=True)
    assert failure.system == "b" and failure.attempts == 5
    assert "injected failure" in failure.last_error


def test_crash_after_create_applied_but_not_recorded_no_duplicate(world: World) -> None:
    world.systems["b"].timeout_writes = 1
    seed(world, ADA)
    assert len(world.people("b")) == 1  # applied, but syncd saw a timeout
    world.cycle()
    world.cycle()
    assert len(world.people("b")) == 1
    assert world.cycle().writes == 0


def test_dry_run_writes_nothing_and_changes_no_state(world: World) -> None:
    world.systems["a"].add("org-a", ADA)
    before_state = world.store.load_state()
    before_marks = world.store.watermarks()
    report = world.cycle(dry_run=True)
    assert [w.action.value for w in report.planned] == ["create", "create"]
    assert world.writes() == 0
    assert world.store.load_state() == before_state
    assert world.store.watermarks() == before_marks


def test_incremental_system_advances_its_watermark_safely(world: World) -> None:
    seed(world, ADA)
    mark = world.store.watermarks()["c"]
    assert mark.cursor is not None and mark.cursor <= world.clock.now
    world.systems["c"].fail_pages_after = 0
    world.systems["a"].add("org-a", BOB)
    report = world.cycle()
    assert report.exit_code == 4
    assert world.store.watermarks()["c"].cursor == mark.cursor
    world.systems["c"].fail_pages_after = None
    world.cycle()
    world.find("c", "bob@example.com")


def test_a_standing_rejection_is_not_stored_again_each_cycle(store: Store) -> None:
    world = make_world(store, ("a", "b"))
    world.systems["b"].limits = {"job_title": FieldLimit(max_length=10)}
    world.systems["a"].add("org-a", {**ADA, "job_title": "Director of Analytical Engines"})
    world.cycle()
    (first,) = world.store.failures(quarantined=True)
    report = world.cycle()
    assert report.exit_code == 1 and len(report.rejections) == 1  # still reported
    (again,) = world.store.failures(quarantined=True)
    assert again.updated_at == first.updated_at  # but not rewritten


@pytest.mark.parametrize("fresh_process", [False, True])
def test_a_person_who_leaves_while_deleted_elsewhere_settles_in_one_cycle(
    store: Store, fresh_process: bool,
) -> None:
    """Deleted in ``a`` and moved out of every mapped organization in ``b`` in the same
    round: the person leaves the sync, and the cycle after writes nothing and changes
    nothing (found by the state machine, in a fresh process per cycle)."""
    world = make_world(store, ("a", "b", "c"), sync={"max_delete_fraction": 1.0})
    seed(world, ADA, BOB)
    world.systems["a"].remove(world.find("a", "ada@example.com")[0])
    world.systems["b"].move(world.find("b", "ada@example.com")[0], "nowhere")
    world.cycle()
    assert world.find("c", "ada@example.com")  # left: deleted nowhere else
    settled = store.load_state()
    if fresh_process:
        world.syncer = None
    assert world.cycle().writes == 0
    assert store.load_state() == settled


def test_d1_create_answered_5xx_after_apply_is_not_sent_again(store: Store) -> None:
    """A create whose answer was a 502 after the server applied it has an unknown outcome:
    it is not sent again before its system has been read, and the read then links it."""
    world = make_world(store, ("a", "b"))
    world.systems["b"].fail_after_apply = 1
    world.systems["a"].add("org-a", ADA)
    first = world.cycle()
    assert first.exit_code == 1 and len(world.people("b")) == 1
    world.cycle(only={"a"})  # b is not read: its create is still of unknown outcome
    assert len(world.people("b")) == 1
    again = world.cycle()
    assert again.exit_code == 0, again.as_dict()
    assert len(world.people("b")) == 1 and len(world.people("a")) == 1
    assert world.store.failures() == []  # the matched create's failure row is cleared
    assert world.cycle().writes == 0


def test_d2_a_system_whose_first_read_failed_receives_no_creates(store: Store) -> None:
    world = make_world(store, ("a", "b"))
    people = [{"first_name": f"P{i}", "last_name": "Doe", "email": f"p{i}@example.com"}
              for i in range(5)]
    for p in people:
        world.systems["a"].add("org-a", p)
        world.systems["b"].add("org-b", p)  # b already holds everyone
    world.systems["b"].fail_reads = 1
    report = world.cycle()
    assert report.exit_code == 4
    assert len(world.people("b")) == 5  # nothing created in the system we could not read
    world.cycle()
    assert len(world.people("a")) == 5 and len(world.people("b")) == 5
    assert world.cycle().writes == 0


def test_d3_crash_mid_push_does_not_duplicate_name_only_people(store: Store) -> None:
    world = make_world(store, ("a", "b"))
    for first in ("Ada", "Grace", "Edsger", "Barbara"):
        world.systems["a"].add("org-a", {"first_name": first, "last_name": "Pioneer"})
    world.systems["b"].crash_after_writes = 2
    with pytest.raises(SimulatedCrash):
        world.cycle()
    assert len(world.people("b")) == 2  # applied, never recorded
    world.syncer = None  # a new process
    world.cycle()
    assert names(world, "a") == names(world, "b") == [
        "Ada Pioneer", "Barbara Pioneer", "Edsger Pioneer", "Grace Pioneer"]
    assert world.cycle().writes == 0


# The push's own batch size (engine/push.py): to join test_push.py.
def test_d3_push_records_results_in_small_batches() -> None:
    from syncd.engine import push

    assert push._BATCH <= 50 and push._BATCH_SECONDS <= 1.0


def test_d8_update_answered_404_recreates_modify_beats_delete(store: Store) -> None:
    world = make_world(store, ("a", "b"), incremental=("b",), tombstones=False)
    world.systems["a"].add("org-a", ADA)
    world.cycle()
    rid_b, _ = world.find("b", "ada@example.com")
    world.systems["b"].remove(rid_b)  # no tombstone: unseen until the next full sweep
    world.systems["a"].edit(world.find("a", "ada@example.com")[0], job_title="Countess")
    report = world.cycle()
    assert report.exit_code == 0, report.as_dict()
    assert world.find("b", "ada@example.com")[1]["job_title"] == "Countess"  # re-created
    world.cycle(full=set())  # the sweep deletes nothing
    assert world.find("a", "ada@example.com")[1]["job_title"] == "Countess"
    assert world.store.failures() == []


def test_d8_failure_of_a_timed_out_create_is_cleared_once_matched(store: Store) -> None:
    world = make_world(store, ("a", "b"))
    world.systems["b"].timeout_writes = 1
    world.systems["a"].add("org-a", ADA)
    world.cycle()
    assert [f.action for f in world.store.failures()] == ["create"]
    assert world.cycle().exit_code == 0
    assert world.store.failures() == []
