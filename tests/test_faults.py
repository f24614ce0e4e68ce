"""Issue 9: the engine against real faults, one named test per reproduced defect.

Each test runs on SQLite and Postgres (the ``store`` fixture) over memory
systems whose switches play the hostile proxy: answers lost after the server
applied a write, failed reads, crashes between writes.
"""

from __future__ import annotations

import pytest

from syncd.connectors.memory import MemoryRecord, SimulatedCrash
from syncd.contact import normalise
from syncd.store import Store
from tests.world import World, make_world

ADA = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
       "phone": "+44 20 7946 0000"}


def names(world: World, system: str) -> list[str]:
    return sorted(f"{p['first_name']} {p['last_name']}" for p in world.people(system))


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


def test_d3_push_records_results_in_small_batches() -> None:
    from syncd.engine import push

    assert push._BATCH <= 50 and push._BATCH_SECONDS <= 1.0


def test_d4_people_sharing_an_email_or_a_landline_are_not_cross_linked(store: Store) -> None:
    world = make_world(store, ("a", "b"))
    alice = {"first_name": "Alice", "last_name": "Smith", "email": "accounts@acme.example",
             "mobile": "+1 202 555 0101"}
    bob = {"first_name": "Bob", "last_name": "Jones", "email": "accounts@acme.example",
           "mobile": "+1 202 555 0102"}
    john = {"first_name": "John", "last_name": "Doe", "phone": "+1 202 555 0199"}
    jane = {"first_name": "Jane", "last_name": "Doe", "phone": "+1 202 555 0199"}
    for p in (alice, bob, john):
        world.systems["a"].add("org-a", p)
    for p in (bob, alice, jane):
        world.systems["b"].add("org-b", p)
    world.cycle()
    world.cycle()
    for system in ("a", "b"):
        by_name = {f"{p['first_name']} {p['last_name']}": p for p in world.people(system)}
        assert sorted(by_name) == ["Alice Smith", "Bob Jones", "Jane Doe", "John Doe"], system
        assert normalise("mobile", by_name["Alice Smith"]["mobile"]) == "12025550101"
        assert normalise("mobile", by_name["Bob Jones"]["mobile"]) == "12025550102"
    assert world.cycle().writes == 0


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
    assert any("without a usable id" in e for e in report.errors), report.errors
    assert names(world, "b") == ["Ada Lovelace"]
    state = world.store.load_state()
    assert len(state.goldens) == 1
    assert all(link.remote_id and link.remote_id.strip() for link in state.links.values())


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


def test_d9_phones_are_matched_in_e164(store: Store) -> None:
    world = make_world(store, ("a", "b"))
    world.systems["a"].add("org-a", {"first_name": "Ada", "last_name": "Lovelace",
                                     "phone": "(555) 010-2000"})
    world.systems["b"].add("org-b", {"first_name": "Ada", "last_name": "Lovelace",
                                     "phone": "+1 555 010 2000", "email": "ada@example.com"})
    world.cycle()
    assert len(world.people("a")) == 1 and len(world.people("b")) == 1
    assert world.cycle().writes == 0


def test_d9_an_invalid_email_is_rejected_before_sending(store: Store) -> None:
    world = make_world(store, ("a", "b"))
    world.systems["a"].add("org-a", {**ADA, "email": "ada at example"})
    world.systems["a"].add("org-a", {**ADA, "first_name": "Bob", "email": "bob@example.com"})
    report = world.cycle()
    assert report.exit_code == 1
    (rej,) = report.rejections
    assert rej.system == "b" and rej.field == "email" and "email" in rej.reason
    assert names(world, "b") == ["Bob Lovelace"]
    assert world.systems["b"].writes == 1
