"""LogiSense v6: the shared contract plus this API's own traps, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd.config import LogisenseConfig
from syncd.connectors.logisense import LogisenseConnector, from_config
from syncd.connectors.memory import MemoryConnector
from syncd.errors import AuthError, RecordRejected, SystemUnavailable
from syncd.model import Discovered
from syncd.sandbox.logisense import LogisenseSim
from tests.contract import PERSON, ConnectorContract, by_id, dump, listed
from tests.e2e import once_json
from tests.world import SimTime

ORG = "16"
OTHER_ORG = "17"


def make(url: str, **over: Any) -> LogisenseConnector:
    options = {k: over.pop(k) for k in ("clock", "page_size") if k in over}
    cfg = LogisenseConfig.model_validate({
        "kind": "logisense", "base_url": url, "contact_type_id": 9,
        "client_id": "syncd", "username": "api", "password": "secret", **over,
    })
    return from_config("logisense", cfg, http_clock=SimTime(), **options)


@pytest.fixture
def sim() -> LogisenseSim:
    return LogisenseSim()


@pytest.fixture
def url(sim: LogisenseSim, served_sim: Callable[[LogisenseSim], str]) -> str:
    return served_sim(sim)


@pytest.fixture
def connector(url: str) -> Any:
    c = make(url)
    yield c
    c.close()


@pytest.fixture
def bad_connector(url: str) -> Any:
    c = make(url, password="wrong")
    yield c
    c.close()


@pytest.fixture
def org() -> str:
    return ORG


class TestLogisenseContract(ConnectorContract):
    pass


def vendor_calls(sim: LogisenseSim, method: str, fragment: str = "") -> list[dict[str, Any]]:
    return [e for e in sim.log if e["method"] == method and fragment in e["path"]]


# -- auth ---------------------------------------------------------------------------------

def test_login_posts_the_password_grant_form_and_sends_bearer(
    sim: LogisenseSim, connector: LogisenseConnector
) -> None:
    listed(connector, ORG)
    assert sim.logins == [
        {"grant_type": "password", "client_id": "syncd", "username": "api", "password": "secret"}
    ]
    assert [(e["method"], e["path"]) for e in sim.log] == [
        ("GET", "/ResourceServer/api/v6/Contact/Metadata"),
        ("GET", "/ResourceServer/api/v6/Account/Metadata"),
        ("GET", "/ResourceServer/api/v6/ContactPointType/"),
        ("GET", "/ResourceServer/api/v6/Account/16/Detail"),
    ]
    for entry in sim.log:
        scheme, _, token = entry["authorization"].partition(" ")
        assert scheme == "Bearer" and token in sim.tokens


def test_bad_login_says_so_without_the_password(bad_connector: LogisenseConnector) -> None:
    with pytest.raises(AuthError) as err:
        listed(bad_connector, ORG)
    assert "incorrect" in str(err.value) and "wrong" not in str(err.value)


def test_token_is_renewed_shortly_before_expiry(sim: LogisenseSim, url: str) -> None:
    now = [datetime.now(UTC)]
    c = make(url, clock=lambda: now[0])
    listed(c, ORG)
    now[0] += timedelta(seconds=1000)
    listed(c, ORG)
    assert sim.counters["login"] == 1
    now[0] += timedelta(seconds=750)  # 1750 s: inside the margin before 1800 s
    listed(c, ORG)
    assert sim.counters["login"] == 2
    assert sim.counters["unauthorized"] == 0


def test_short_token_is_renewed_by_its_own_life(served_sim: Any) -> None:
    sim = LogisenseSim(token_ttl=1.0)
    c = make(served_sim(sim))
    listed(c, ORG)
    time.sleep(0.55)  # past half the life: renewed before the server would refuse it
    listed(c, ORG)
    assert sim.counters["login"] >= 2
    assert sim.counters["unauthorized"] == 0


def test_a_401_logs_in_again_once_and_goes_on(sim: LogisenseSim, url: str) -> None:
    frozen = datetime.now(UTC)
    c = make(url, clock=lambda: frozen)  # the connector believes its token is fresh
    rid = sim.admin_create(ORG, PERSON)
    listed(c, ORG)
    sim.expire_tokens()
    assert rid in by_id(c, ORG)
    assert sim.counters["login"] == 2
    assert sim.counters["unauthorized"] == 1


# -- reading ------------------------------------------------------------------------------

def test_paging_uses_the_pagination_header_and_total_count(
    sim: LogisenseSim, url: str
) -> None:
    ours = {sim.admin_create(ORG, {**PERSON, "email": f"p{i}@example.com"}) for i in range(12)}
    for i in range(3):
        sim.admin_create(OTHER_ORG, {**PERSON, "email": f"q{i}@example.com"})
    c = make(url, page_size=5)
    pages = list(c.list_records([ORG], None))
    assert {r.remote_id for p in pages for r in p.records} == ours
    headers = [json.loads(e["pagination"]) for e in vendor_calls(sim, "GET", "Contact/Paged")]
    assert headers == [{"pageNumber": n, "pageSize": 5} for n in (1, 2, 3)]  # 15 in total


def test_contacts_of_unmapped_accounts_are_not_listed(
    sim: LogisenseSim, connector: LogisenseConnector
) -> None:
    mine = sim.admin_create(ORG, PERSON)
    theirs = sim.admin_create(OTHER_ORG, PERSON)
    records = by_id(connector, ORG)
    assert mine in records and theirs not in records
    both = {r.remote_id: r.org_id for r in listed_many(connector, [ORG, OTHER_ORG])}
    assert both == {mine: ORG, theirs: OTHER_ORG}


def listed_many(connector: LogisenseConnector, orgs: list[str]) -> list[Any]:
    return [r for page in connector.list_records(orgs, None) for r in page.records]


def test_an_unknown_mapped_account_stops_the_scan(connector: LogisenseConnector) -> None:
    with pytest.raises(SystemUnavailable, match="999"):
        listed(connector, "999")


def test_metadata_is_read_and_its_routes_logged(
    sim: LogisenseSim, connector: LogisenseConnector, debug_logs: None
) -> None:
    with capture_logs() as logs:
        listed(connector, ORG)
    routes = {e["entity"]: e["routes"] for e in logs if e["event"] == "logisense.routes"}
    assert "Contact.Patch {id:int}" in routes["Contact"]
    assert "Account.Patch {id:int}" in routes["Account"]
    assert len(vendor_calls(sim, "GET", "/Metadata")) == 2
    listed(connector, ORG)
    assert len(vendor_calls(sim, "GET", "/Metadata")) == 2  # once per process, not per cycle


def test_a_server_whose_metadata_offers_no_delete_gets_none(served_sim: Any, debug_logs: None) -> None:
    sim = LogisenseSim(deletes=False)
    connector = make(served_sim(sim))
    rid = sim.admin_create(ORG, PERSON)
    with capture_logs() as logs:
        listed(connector, ORG)
        with pytest.raises(RecordRejected, match="no contact delete"):
            connector.delete(rid, ORG, {})
    # The poll carries it: the planner derives no delete from here on.
    assert connector.open() == Discovered(can_delete=False)
    assert not connector.open().apply(connector.capabilities).can_delete
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["logisense.no_delete"]
    assert vendor_calls(sim, "PATCH") == [] and rid in dump(sim)


# -- contact point types ------------------------------------------------------------------

def test_point_type_ids_come_from_the_server(served_sim: Any) -> None:
    sim = LogisenseSim(point_type_base=900)
    c = make(served_sim(sim))
    ui = sim.admin_create(ORG, PERSON)  # contact type 3: its own point type ids
    assert by_id(c, ORG)[ui].fields["email"] == PERSON["email"]
    made = c.create(ORG, {**PERSON, "fax": "+1 555 0100"})
    row = dump(sim)[made.remote_id]
    assert row["email"] == PERSON["email"] and row["fax"] == "+1 555 0100"
    current = by_id(c, ORG)[ui]
    c.update(ui, ORG, {"fax": "+1 555 0199"}, {**current.fields, "fax": "+1 555 0199"},
             current.extra)
    fax = sim.contacts[int(ui)].points[-1]
    assert fax.type_id == sim.point_type_id(3, "Fax") >= 900


def test_configured_point_type_ids_win(sim: LogisenseSim, url: str) -> None:
    override = sim.point_type_id(9, "Address")  # a type the name rules would never pick
    c = make(url, contact_point_types={"email": override})
    c.create(ORG, {"first_name": "Ada", "last_name": "L", "email": "ada@example.com"})
    (patch,) = vendor_calls(sim, "PATCH", "/Account/16")
    (point,) = patch["json"]["contacts"]["items"][0]["details"]["contactPoints"]["items"]
    assert point["contactPointTypeId"] == override


# -- writing ------------------------------------------------------------------------------

def test_email_change_is_one_patch_updating_the_same_point(
    sim: LogisenseSim, connector: LogisenseConnector
) -> None:
    rid = sim.admin_create(ORG, PERSON)
    current = by_id(connector, ORG)[rid]
    point_id = current.extra["points"]["email"]
    sim.counters.clear()
    changed = {"email": "ada.l@example.com", "first_name": "Augusta"}
    result = connector.update(rid, ORG, changed, {**current.fields, **changed}, current.extra)
    assert sim.writes() == 1 and sim.counters["PATCH"] == 1
    (patch,) = vendor_calls(sim, "PATCH")
    assert patch["path"].endswith(f"/Contact/{rid}")
    assert patch["json"] == {
        "firstName": "Augusta",
        "details": {"contactPoints": {"items": [
            {"patchType": "update", "identity": point_id, "value": "ada.l@example.com"}
        ]}},
    }
    assert [p.identity for p in sim.contacts[int(rid)].points
            if p.value == "ada.l@example.com"] == [point_id]
    assert result.extra["points"]["email"] == point_id


def test_new_and_cleared_points_are_created_and_deleted_in_the_same_patch(
    sim: LogisenseSim, connector: LogisenseConnector
) -> None:
    rid = sim.admin_create(ORG, {**PERSON, "mobile": ""})
    current = by_id(connector, ORG)[rid]
    changed = {"mobile": "+44 7700 900999", "phone": ""}
    result = connector.update(rid, ORG, changed, {**current.fields, **changed}, current.extra)
    (patch,) = vendor_calls(sim, "PATCH")
    kinds = [i["patchType"] for i in patch["json"]["details"]["contactPoints"]["items"]]
    assert sorted(kinds) == ["create", "delete"]
    assert set(result.extra["points"]) == {"email", "mobile"}
    assert result.extra == by_id(connector, ORG)[rid].extra  # the link matches the next poll


def test_create_goes_through_the_account_with_nested_points(
    sim: LogisenseSim, connector: LogisenseConnector
) -> None:
    result = connector.create(ORG, {**PERSON, "salutation": "Ms."})
    assert not vendor_calls(sim, "POST") and sim.counters["PATCH"] == 1
    (patch,) = vendor_calls(sim, "PATCH")
    assert patch["path"].endswith("/Account/16")
    (item,) = patch["json"]["contacts"]["items"]
    assert item["patchType"] == "create" and item["contactTypeId"] == 9
    assert item["title"] == "Ms."
    values = {p["value"] for p in item["details"]["contactPoints"]["items"]}
    assert values == {PERSON["email"], PERSON["phone"], PERSON["mobile"]}
    assert sim.contacts[int(result.remote_id)].contact_type_id == 9
    assert result.extra == by_id(connector, ORG)[result.remote_id].extra


def test_create_without_contact_type_id_names_the_key(
    sim: LogisenseSim, url: str
) -> None:
    c = make(url, contact_type_id=None)
    with pytest.raises(RecordRejected, match="contact_type_id"):
        c.create(ORG, PERSON)
    assert sim.writes() == 0


def test_delete_goes_through_the_account(
    sim: LogisenseSim, connector: LogisenseConnector
) -> None:
    rid = sim.admin_create(ORG, PERSON)
    connector.delete(rid, ORG, by_id(connector, ORG)[rid].extra)
    (patch,) = vendor_calls(sim, "PATCH")
    assert patch["path"].endswith("/Account/16")
    assert patch["json"] == {"contacts": {"items": [{"patchType": "delete", "identity": int(rid)}]}}
    assert rid not in dump(sim)
    connector.delete(rid, ORG, {})  # already gone: the goal is reached, no error


def test_rejection_carries_tracking_id_and_every_message(
    sim: LogisenseSim, connector: LogisenseConnector
) -> None:
    rid = sim.admin_create(ORG, PERSON)
    current = by_id(connector, ORG)[rid]
    changed = {"first_name": "F" * 60, "last_name": "L" * 70}
    with pytest.raises(RecordRejected) as err:
        connector.update(rid, ORG, changed, {**current.fields, **changed}, current.extra)
    message = str(err.value)
    assert "trackingId" in message
    assert "'firstName' must be 50 characters or fewer" in message
    assert "'lastName' must be 50 characters or fewer" in message
    assert "secret" not in message


def test_title_is_the_salutation(sim: LogisenseSim, connector: LogisenseConnector) -> None:
    assert "salutation" in connector.capabilities.fields
    assert not {"job_title", "department"} & connector.capabilities.fields
    rid = sim.admin_create(ORG, {**PERSON, "salutation": "Mr."})
    current = by_id(connector, ORG)[rid]
    assert current.fields["salutation"] == "Mr."
    connector.update(rid, ORG, {"salutation": "Dr."}, {**current.fields, "salutation": "Dr."},
                     current.extra)
    assert sim.contacts[int(rid)].title == "Dr."
    (patch,) = vendor_calls(sim, "PATCH")
    assert patch["json"] == {"title": "Dr."}


# -- end to end: `syncd once` between LogiSense and a memory system ------------------------



def write_config(path: Path, url: str, tmp: Path) -> None:
    path.write_text(f"""
[store]
url = "sqlite:///{tmp / 'syncd.db'}"

[sync]
max_delete_fraction = 0.9

[systems.logisense]
kind = "logisense"
base_url = "{url}"
contact_type_id = 9
client_id = "syncd"
username = "api"

[systems.mem]
kind = "memory"
path = "{tmp / 'mem.json'}"

[organizations.acme]
logisense = "{ORG}"
mem = "1"
""")


def once(config: Path) -> dict[str, Any]:
    return once_json(config, {"SYNCD_SYSTEMS__LOGISENSE__PASSWORD": "secret"})


def mem_people(tmp: Path) -> dict[str, dict[str, str]]:
    mem = MemoryConnector(name="mem", path=tmp / "mem.json")
    return {r.fields["email"].casefold(): r.fields for r in mem.records.values()}


def ls_people(sim: LogisenseSim) -> dict[str, dict[str, Any]]:
    return {str(r["email"]).casefold(): r for r in sim.admin_dump()}


def moved(report: dict[str, Any]) -> int:
    return sum(s["created"] + s["updated"] + s["deleted"] for s in report["systems"].values())


def test_end_to_end_syncd_once_both_ways_then_quiet(
    tmp_path: Path, sim: LogisenseSim, url: str
) -> None:
    config = tmp_path / "syncd.toml"
    write_config(config, url, tmp_path)
    ada = sim.admin_create(ORG, {**PERSON, "salutation": "Mrs."})
    bob = sim.admin_create(ORG, {"first_name": "Bob", "last_name": "Byte", "email": "bob@x.com"})
    sim.admin_create(OTHER_ORG, {"first_name": "Out", "last_name": "Side", "email": "o@x.com"})
    mem = MemoryConnector(name="mem", path=tmp_path / "mem.json")
    cy = mem.add("1", {"first_name": "Cy", "last_name": "Cole", "email": "cy@x.com",
                       "phone": "555 0100", "job_title": "Ops"})
    mem.close()

    # 1. first sync: each side receives the other's people (unmapped account left alone)
    report = once(config)
    assert report["systems"]["logisense"]["created"] == 1
    assert report["systems"]["mem"]["created"] == 2
    people = ls_people(sim)
    assert set(people) == {"ada@example.com", "bob@x.com", "cy@x.com", "o@x.com"}
    assert people["cy@x.com"]["org"] == ORG and people["cy@x.com"]["phone"] == "555 0100"
    assert set(mem_people(tmp_path)) == {"ada@example.com", "bob@x.com", "cy@x.com"}
    assert mem_people(tmp_path)["ada@example.com"]["salutation"] == "Mrs."

    # 2. a second cycle with no outside change writes nothing anywhere
    sim.counters.clear()
    assert moved(once(config)) == 0
    assert sim.writes() == 0, dict(sim.counters)

    # 3. updates both ways; the email change is an update of the same contact point
    cy_id = int(people["cy@x.com"]["id"])
    cy_point = next(p.identity for p in sim.contacts[cy_id].points if p.value == "cy@x.com")
    sim.admin_update(ada, {"salutation": "Dr.", "mobile": "+44 7700 900999"})
    mem = MemoryConnector(name="mem", path=tmp_path / "mem.json")
    mem.edit(cy, email="cy.cole@x.com", last_name="Cole-Smith")
    mem.close()
    sim.counters.clear()
    sim.log.clear()
    report = once(config)
    assert report["systems"]["logisense"]["updated"] == 1
    assert report["systems"]["mem"]["updated"] == 1
    (patch,) = vendor_calls(sim, "PATCH")
    assert patch["path"].endswith(f"/Contact/{cy_id}")
    assert patch["json"]["details"]["contactPoints"]["items"] == [
        {"patchType": "update", "identity": cy_point, "value": "cy.cole@x.com"}
    ]
    assert ls_people(sim)["cy.cole@x.com"]["last_name"] == "Cole-Smith"
    assert mem_people(tmp_path)["ada@example.com"]["salutation"] == "Dr."
    assert mem_people(tmp_path)["ada@example.com"]["mobile"] == "+44 7700 900999"

    # 4. deletes both ways: LogiSense's through the Account, found by its full scan
    sim.admin_delete(bob)
    mem = MemoryConnector(name="mem", path=tmp_path / "mem.json")
    mem.remove(cy)
    mem.close()
    sim.counters.clear()
    sim.log.clear()
    report = once(config)
    assert report["systems"]["logisense"]["deleted"] == 1
    assert report["systems"]["mem"]["deleted"] == 1
    (patch,) = vendor_calls(sim, "PATCH")
    assert patch["path"].endswith(f"/Account/{ORG}")
    assert set(ls_people(sim)) == {"ada@example.com", "o@x.com"}
    assert set(mem_people(tmp_path)) == {"ada@example.com"}

    # 5. and quiet again
    sim.counters.clear()
    assert moved(once(config)) == 0
    assert sim.writes() == 0, dict(sim.counters)


def test_a_cycle_derives_no_delete_for_a_server_found_without_one(
    tmp_path: Path, served_sim: Any
) -> None:
    """Its capabilities stay as built: what opening found rides on the poll to the planner,
    from the first cycle of a fresh process on."""
    sim = LogisenseSim(deletes=False)
    config = tmp_path / "syncd.toml"
    write_config(config, served_sim(sim), tmp_path)
    mem = MemoryConnector(name="mem", path=tmp_path / "mem.json")
    cy = mem.add("1", {"first_name": "Cy", "last_name": "Cole", "email": "cy@x.com"})
    mem.close()
    assert once(config)["systems"]["logisense"]["created"] == 1
    mem = MemoryConnector(name="mem", path=tmp_path / "mem.json")
    mem.remove(cy)
    mem.close()
    sim.log.clear()
    report = once(config)["systems"]["logisense"]
    assert (report["deleted"], report["failed"], report["rejected"]) == (0, 0, 0)
    assert vendor_calls(sim, "PATCH") == [] and "cy@x.com" in ls_people(sim)


@pytest.mark.skipif(not os.environ.get("SYNCD_ECONOMY"), reason="set SYNCD_ECONOMY=1 to measure")
def test_request_economy_with_1000_contacts(
    tmp_path: Path, sim: LogisenseSim, url: str
) -> None:
    """``SYNCD_ECONOMY=1 pytest tests/test_logisense.py -k economy -s`` prints the figures."""
    config = tmp_path / "syncd.toml"
    write_config(config, url, tmp_path)
    ids = [sim.admin_create(ORG, {"first_name": f"P{i}", "last_name": "Test",
                                  "email": f"p{i}@example.com", "phone": f"+1 555 {i:04d}"})
           for i in range(1000)]
    once(config)  # first sync: 1 000 creates in the memory system
    sim.counters.clear()
    assert moved(once(config)) == 0
    noop = dict(sim.counters)
    sim.admin_update(ids[500], {"email": "changed@example.com"})
    sim.counters.clear()
    once(config)
    inbound = dict(sim.counters)
    mem = MemoryConnector(name="mem", path=tmp_path / "mem.json")
    rid = next(r for r, rec in mem.records.items() if rec.fields["email"] == "p7@example.com")
    mem.edit(rid, email="p7.new@example.com")
    mem.close()
    sim.counters.clear()
    once(config)
    outbound = dict(sim.counters)
    print(f"\nno-op: {noop}\none change in LogiSense: {inbound}\n"
          f"one change pushed to LogiSense: {outbound}")
    # a fresh process: login POST; 2 Metadata, ContactPointType, Account detail, 2 pages of 500
    assert noop["GET"] == 6 and sim.writes() == 1


def test_a_contact_skipped_by_paging_mid_scan_is_not_taken_for_deleted(
    sim: LogisenseSim, url: str
) -> None:
    ids = [sim.admin_create(ORG, {**PERSON, "email": f"p{i}@example.com"}) for i in range(10)]
    c = make(url, page_size=5)
    pages = c.list_records([ORG], None)
    first = next(pages)
    sim.admin_delete(ids[0])  # page 2 now starts one later: ids[5] slides onto page 1
    rest = [r.remote_id for page in pages for r in page.records]
    assert {r.remote_id for r in first.records} | set(rest) == set(ids)
    assert len(vendor_calls(sim, "GET", f"/Contact/{ids[5]}/Detail")) == 1
