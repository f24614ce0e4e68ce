"""Field policies (CONTRACT §6) over memory systems and a real store (SQLite and Postgres):
what each rule lets through, what it puts back, the log line and the dry run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from structlog.testing import capture_logs

from syncd.cli import main
from syncd.config import FieldConfig
from syncd.connectors.memory import MemoryConnector
from syncd.contact import normalise, project
from syncd.store import Store
from tests.e2e import syncd, write_config
from tests.policies import CHOICES, RULED, SYSTEMS, field_policies, taken, targeted
from tests.world import World, make_world

pytestmark = pytest.mark.usefixtures("debug_logs")  # policy_refused is an info event

ADA = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
       "phone": "+44 20 7946 0000", "mobile": "+44 7700 900123", "job_title": "Analyst"}


def world_with(store: Store, fields: dict[str, Any], **sync: Any) -> World:
    return make_world(store, ("a", "b", "c"), incremental=("c",), fields=fields, sync=sync)


def seeded(world: World, person: dict[str, str] = ADA, system: str = "a") -> dict[str, str]:
    """``person`` added in ``system`` and synced: its remote id in each system."""
    world.systems[system].add(f"org-{system}", person)
    world.cycle()
    return {name: world.find(name, person["email"])[0] for name in world.systems}


def value(world: World, system: str, rid: str, field: str) -> str:
    return world.systems[system].records[rid].fields.get(field, "")


def refusals(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "policy_refused"]


def test_a_change_from_outside_the_sources_is_put_back_and_reaches_nowhere(store: Store) -> None:
    world = world_with(store, {"job_title": {"sources": ["a"]}})
    ids = seeded(world)
    world.systems["b"].edit(ids["b"], job_title="Janitor")
    with capture_logs() as logs:
        report = world.cycle()
    assert report.systems["b"].updated == 1 and report.writes == 1  # the write-back only
    assert all(value(world, s, ids[s], "job_title") == "Analyst" for s in world.systems)
    (refused,) = refusals(logs)
    assert refused["person"] and refused["system"] == "b" and refused["field"] == "job_title"
    assert refused["value"] == "Janitor" and refused["kept"] == "Analyst"
    assert "Ada Lovelace" in refused["who"]
    with capture_logs() as logs:
        assert world.cycle().writes == 0  # the write-back reads back as no change
    assert refusals(logs) == []
    # A source's change goes everywhere.
    world.systems["a"].edit(ids["a"], job_title="Countess")
    assert world.cycle().writes == 2
    assert all(value(world, s, ids[s], "job_title") == "Countess" for s in world.systems)
    assert world.cycle().writes == 0


def test_a_refused_change_is_refused_again_only_when_it_changes_again(store: Store) -> None:
    world = world_with(store, {"email": {"sources": ["a"]}})
    ids = seeded(world)
    world.systems["b"].fail_writes = 1  # the write-back fails: the refused value stays there
    world.systems["b"].edit(ids["b"], email="ada@elsewhere.example")
    with capture_logs() as logs:
        world.cycle()
    assert len(refusals(logs)) == 1
    with capture_logs() as logs:
        world.cycle()  # the retried write-back lands; the refusal is not logged twice
    assert refusals(logs) == []
    assert value(world, "b", ids["b"], "email") == "ada@example.com"
    assert world.cycle().writes == 0


def test_never_clear_puts_a_cleared_value_back_there_only(store: Store) -> None:
    world = world_with(store, {"mobile": {"never_clear": True}})
    ids = seeded(world)
    world.systems["b"].edit(ids["b"], mobile="")
    with capture_logs() as logs:
        report = world.cycle()
    assert report.systems["b"].updated == 1 and report.writes == 1
    assert all(normalise("mobile", value(world, s, ids[s], "mobile")) == "447700900123"
               for s in world.systems)
    assert [(e["system"], e["field"], e["value"], e["rule"]) for e in refusals(logs)] == [
        ("b", "mobile", "", "never_clear")]
    assert world.cycle().writes == 0
    # Changing the value is no clear: it goes everywhere.
    world.systems["b"].edit(ids["b"], mobile="+44 7700 900999")
    world.cycle()
    assert all(normalise("mobile", value(world, s, ids[s], "mobile")) == "447700900999"
               for s in world.systems)


def test_targets_keep_a_field_from_the_other_systems_and_out_of_the_golden(store: Store) -> None:
    world = world_with(store, {"job_title": {"targets": ["a", "b"]}})
    ids = seeded(world)
    assert value(world, "b", ids["b"], "job_title") == "Analyst"
    assert value(world, "c", ids["c"], "job_title") == ""  # created without it
    world.systems["c"].edit(ids["c"], job_title="Own title")  # c's own business
    assert world.cycle().writes == 0
    world.systems["a"].edit(ids["a"], job_title="Countess", phone="+44 20 7946 0001")
    report = world.cycle()
    assert report.systems["b"].updated == 1 and report.systems["c"].updated == 1
    assert value(world, "b", ids["b"], "job_title") == "Countess"
    assert value(world, "c", ids["c"], "job_title") == "Own title"  # the phone went, not this
    assert value(world, "c", ids["c"], "phone") == "+44 20 7946 0001"
    assert world.cycle().writes == 0


def test_a_person_first_seen_outside_the_sources_keeps_its_fields(store: Store) -> None:
    world = world_with(store, {"email": {"sources": ["a"]}, "job_title": {"sources": ["a"]}})
    ids = seeded(world, system="b")
    assert all(value(world, s, ids[s], "job_title") == "Analyst" for s in world.systems)
    assert world.cycle().writes == 0


def test_a_record_matched_to_a_person_proposes_only_what_its_rules_allow(store: Store) -> None:
    """A first sync of two systems holding one person differently: the source's value wins,
    whichever system is read first; matching itself (by email) is untouched."""
    world = world_with(store, {"job_title": {"sources": ["c"]}}, priority=["a", "b", "c"])
    world.systems["a"].add("org-a", ADA)
    world.systems["c"].add("org-c", {**ADA, "job_title": "Director"})
    world.systems["b"].add("org-b", {**ADA, "job_title": "Intern"})
    with capture_logs() as logs:
        world.cycle()
    for name in world.systems:
        assert len(world.systems[name].records) == 1  # one person, matched everywhere
        (rec,) = world.systems[name].records.values()
        assert rec.fields["job_title"] == "Director", name
    assert {e["system"] for e in refusals(logs)} == {"b"}
    assert world.cycle().writes == 0


def test_a_per_field_conflict_rule_overrides_the_sync_one(store: Store) -> None:
    world = world_with(store, {"job_title": {"conflict": "priority", "priority": ["b", "a"]}})
    ids = seeded(world)
    world.systems["b"].edit(ids["b"], job_title="Older", phone="555 0100")
    world.clock.advance(5)
    world.systems["a"].edit(ids["a"], job_title="Newer", phone="555 0199")
    world.cycle()
    # job_title by priority (b first); phone by newest (the sync default).
    assert {value(world, s, ids[s], "job_title") for s in world.systems} == {"Older"}
    assert {normalise("phone", value(world, s, ids[s], "phone")) for s in world.systems} == {
        "5550199"}
    (conflict, *_) = [c for c in world.store.conflicts(limit=10) if c["field"] == "job_title"]
    assert conflict["policy"] == "priority" and conflict["winner"] == "b"


# -- the command line: config errors, the dry run, status -----------------------------------


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('[fields.nickname]\nnever_clear = true', "fields.nickname: unknown field"),
        ('[fields.organization]\nsources = ["crm"]', "fields.organization: unknown field"),
        ('[fields.email]\nsources = ["ghost"]', "fields.email.sources names unknown system 'ghost'"),
        ('[fields.email]\ntargets = ["crm", "ghost"]',
         "fields.email.targets names unknown system 'ghost'"),
        ('[fields.email]\nsources = ["billing"]\ntargets = ["crm"]',
         "fields.email.sources names 'billing', which is not in fields.email.targets"),
        ('[fields.phone]\nconflict = "priority"\npriority = ["nope"]',
         "fields.phone.priority names unknown system 'nope'"),
        ('[fields.phone]\nconflict = "loudest"', "fields.phone.conflict"),
        ('[fields.phone]\nnever_clears = true', "fields.phone.never_clears: unknown key"),
    ],
)
def test_field_policy_errors_exit_2_naming_file_and_key(
    tmp_path: Path, table: str, expected: str
) -> None:
    cfg = write_config(tmp_path, "\n" + table + "\n")
    result = syncd("--config", str(cfg), "once")
    assert result.returncode == 2, result.stderr
    assert str(cfg) in result.stderr and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_dry_run_lists_the_write_back_with_reason_policy_and_status_the_policies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, '\n[fields.email]\nsources = ["crm"]\n'
                                 '\n[fields.mobile]\nnever_clear = true\n')
    crm = MemoryConnector("crm", path=tmp_path / "crm.json")
    crm.add("1", {"first_name": "Ada", "last_name": "L", "email": "ada@x.io", "mobile": "0700"})
    crm.add("1", {"first_name": "Bob", "last_name": "B", "email": "bob@x.io"})
    assert main(["--config", str(cfg), "once"]) == 0
    billing = MemoryConnector("billing", path=tmp_path / "billing.json", incremental=True)
    rid = next(r for r, rec in billing.records.items() if rec.fields["email"] == "ada@x.io")
    billing.edit(rid, email="ada@billing.example")
    bob = next(r for r, rec in billing.records.items() if rec.fields["email"] == "bob@x.io")
    crm = MemoryConnector("crm", path=tmp_path / "crm.json")
    crm.edit(next(r for r, rec in crm.records.items() if rec.fields["email"] == "bob@x.io"),
             job_title="Clerk")
    capsys.readouterr()
    assert main(["--config", str(cfg), "once", "--dry-run", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)["planned"]
    back = [p for p in planned if p.get("reason") == "policy"]
    assert [(p["system"], p["remote_id"], p["changes"]) for p in back] == [
        ("billing", rid, {"email": {"old": "ada@billing.example", "new": "ada@x.io"}})]
    assert [(p["system"], p["remote_id"]) for p in planned if "reason" not in p] == [
        ("billing", bob)]  # a change taken is an ordinary write
    assert main(["--config", str(cfg), "status", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["field_policies"] == {"email": {"sources": ["crm"]},
                                     "mobile": {"never_clear": True}}
    assert FieldConfig(never_clear=True, targets=["a", "b"]).text() == "targets a, b; never_clear"


# -- any policy, any edits: convergence and quiescence (Hypothesis) -------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=field_policies(),
    homes=st.lists(st.sampled_from(SYSTEMS), min_size=1, max_size=3),
    edits=st.lists(st.tuples(st.sampled_from(SYSTEMS), st.integers(0, 2), st.sampled_from(RULED),
                             st.integers(0, 2)), max_size=6),
)
def test_any_policy_converges_and_then_stays_quiet(
    policy: dict[str, Any], homes: list[str], edits: list[tuple[str, int, str, int]]
) -> None:
    """After edits anywhere, one cycle makes every system hold the golden value of every
    field it may hold; a second writes nothing and changes nothing; no refused value is
    golden."""
    store = Store("sqlite://")
    store.create_all()
    world = world_with(store, policy)
    try:
        for i, home in enumerate(homes):
            world.systems[home].add(f"org-{home}", {
                "first_name": f"P{i}", "last_name": "Doe", "email": f"p{i}@example.com",
                "phone": f"+1 555 01{i:02d}", "mobile": "+44 7700 900000",
                "job_title": "Founder", "department": f"tag{i}"})
        world.cycle()
        before = store.load_state()
        tags = {g.id: g.fields["department"] for g in before.goldens.values()}
        allowed: dict[tuple[str, str], set[str]] = {}
        for system, pick, field, choice in edits:
            rid = sorted(world.systems[system].records)[pick % len(homes)]
            new = CHOICES[field][choice % len(CHOICES[field])]
            world.systems[system].edit(rid, **{field: new})
            tag = world.systems[system].records[rid].fields["department"]
            if taken(policy, system, field, new):
                allowed.setdefault((tag, field), set()).add(normalise(field, new))
        report = world.cycle()
        assert report.exit_code == 0, report.as_dict()
        state = store.load_state()
        for golden in state.goldens.values():
            tag = tags[golden.id]
            for field in RULED:
                old = normalise(field, before.goldens[golden.id].fields[field])
                got = normalise(field, golden.fields[field])
                assert got in allowed.get((tag, field), set()) | {old}, (tag, field, got)
            for name, conn in world.systems.items():
                link = state.links[(golden.id, name)]
                rec = conn.records[link.remote_id or ""]
                mine = [f for f in conn.fields if targeted(policy, name, f)]
                want = {f: normalise(f, v) for f, v in project(golden.fields, mine).items()}
                assert {f: normalise(f, rec.fields.get(f, "")) for f in mine} == want, name
        quiet = world.cycle()
        assert quiet.writes == 0, quiet.as_dict()
        assert store.load_state() == state
    finally:
        if world.syncer is not None:
            world.syncer.close()
        store.close()


# -- matching, joined names -----------------------------------------------------------------


def test_matching_finds_a_person_by_a_field_kept_out_of_the_golden_record(store: Store) -> None:
    """``email`` is read only from ``a``: a person first seen in ``b`` has no golden email,
    yet ``a``'s record of it is matched by the email ``b`` holds — not made a second person."""
    world = world_with(store, {"email": {"targets": ["a"]}})
    world.systems["b"].add("org-b", {**ADA, "phone": "", "mobile": ""})
    world.systems["a"].add("org-a", {**ADA, "phone": "+1 202 555 0100", "mobile": ""})
    world.systems["a"].fail_reads = 1  # a is matched in the next cycle, from the store
    world.cycle()
    assert world.systems["a"].writes == 0
    world.cycle()
    for name in world.systems:
        assert len(world.systems[name].records) == 1, name
    (rec_c,) = world.systems["c"].records.values()
    assert rec_c.fields["email"] == "" and rec_c.fields["last_name"] == "Lovelace"
    assert world.cycle().writes == 0


@pytest.mark.parametrize("how", ["timeout_writes", "fail_after_apply"])
def test_a_lost_create_holding_too_little_to_match_is_linked_not_doubled(
    store: Store, how: str
) -> None:
    """A person known by name alone, created in ``b`` and ``c`` without its first name
    (``targets``): ``b``'s create is applied but its answer lost.  The next poll finds a
    record with only "Nameless" to go by — linked by its whole content, not made anew."""
    world = world_with(store, {"first_name": {"targets": ["a"]}})
    world.systems["a"].add("org-a", {"first_name": "Solo", "last_name": "Nameless"})
    world.systems["a"].add("org-a", {"first_name": "Duo", "last_name": "Nameless",
                                     "job_title": "Clerk"})
    setattr(world.systems["b"], how, 2)
    world.cycle()
    assert len(world.systems["b"].records) == 2
    world.cycle()
    for name in world.systems:
        assert len(world.systems[name].records) == 2, name
    assert {r.fields["first_name"] for r in world.systems["b"].records.values()} == {""}
    state = store.load_state()
    assert sum(1 for g in state.goldens.values() if not g.deleted) == 2
    assert world.cycle().writes == 0
