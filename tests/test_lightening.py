"""Lightening: the shared contract plus this API's own traps, each by name.

Everything but the wire-level assertions talks to :class:`LighteningSim` over
real HTTP on 127.0.0.1; wire-level checks use ``syncd.http.MockTransport``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from syncd.config import LighteningConfig, MemoryConfig, Settings, SyncConfig
from syncd.connectors.lightening import (
    CHUNK,
    LighteningConnector,
    from_config,
    split_name,
)
from syncd.connectors.memory import MemoryConnector
from syncd.engine.cycle import Syncer
from syncd.engine.plan import plan
from syncd.engine.writes import derive_writes
from syncd.errors import AuthError, NotApplied, NotFound, RecordRejected, RetriableError
from syncd.http import MockTransport, Request, Response
from syncd.model import (
    MOVED_FROM,
    Golden,
    Link,
    Observation,
    Policy,
    RemoteRecord,
    State,
    SystemInfo,
    check_limits,
    settle_joined,
)
from syncd.sandbox.harvest import SANDBOX_PASSWORD, SANDBOX_USER, HarvestSim
from syncd.sandbox.lightening import SANDBOX_TOKEN, LighteningSim
from syncd.sandbox.logisense import LogisenseSim
from syncd.store import Store
from tests.contract import PERSON, ConnectorContract, by_id, dump, listed
from tests.e2e import REPO
from tests.world import SimTime

ORG = "1"
OTHER = "2"
NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def make(url: str, *, token: str = SANDBOX_TOKEN, transport: Any = None) -> LighteningConnector:
    cfg = LighteningConfig(kind="lightening", base_url=url, token=token)
    return from_config("lightening", cfg, transport=transport, http_clock=SimTime())


def mock(handler: Callable[[Request], Response],
         token: str = SANDBOX_TOKEN) -> tuple[LighteningConnector, list[Request]]:
    seen: list[Request] = []

    def record(request: Request) -> Response:
        seen.append(request)
        return handler(request)

    return make("https://acme.lightening.example", token=token,
                transport=MockTransport(record)), seen


def answer(body: dict[str, Any], status: int = 200) -> Response:
    return Response(status, json=body)


def sent(request: Request) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(request.content)
    return body


@pytest.fixture
def sim() -> LighteningSim:
    return LighteningSim(customers=[1, 2, 3])


@pytest.fixture
def url(sim: LighteningSim, served_sim: Callable[[LighteningSim], str]) -> str:
    return served_sim(sim)


@pytest.fixture
def connector(url: str) -> Iterator[LighteningConnector]:
    c = make(url)
    yield c
    c.close()


@pytest.fixture
def bad_connector(url: str) -> Iterator[LighteningConnector]:
    c = make(url, token="not-the-token")
    yield c
    c.close()


@pytest.fixture
def org() -> str:
    return ORG


class TestLighteningContract(ConnectorContract):
    pass


# -- listing: the customer_id array, chunks, full scan ---------------------------------------


def test_listing_asks_only_the_mapped_customers_as_a_php_array_in_chunks_of_50() -> None:
    connector, seen = mock(lambda r: answer({"entities": [], "result": True}))
    orgs = [str(i) for i in range(1, 121)]
    assert [p.records for p in connector.list_records(orgs, None)] == [[], [], []]
    assert CHUNK == 50 and len(seen) == 3
    asked = []
    for request in seen:
        assert request.method == "GET" and request.url.path == "/contact"
        keys = {k for k, _ in request.url.params.multi_items()}
        assert keys == {"customer_id[]"}
        ids = request.url.params.get_list("customer_id[]")
        assert len(ids) <= CHUNK
        asked += ids
    assert sorted(asked, key=int) == orgs  # each mapped customer once, nothing else


def test_contacts_of_unmapped_customers_are_never_read(
    sim: LighteningSim, connector: LighteningConnector
) -> None:
    mine = sim.admin_create(ORG, PERSON)
    sim.admin_create("3", {**PERSON, "email": "elsewhere@example.com"})
    sim.counters.clear()
    assert set(by_id(connector, ORG)) == {mine}
    assert sim.counters["GET"] == 1


def test_full_scan_system_no_paging_no_changed_since_filter(
    sim: LighteningSim, connector: LighteningConnector
) -> None:
    caps = connector.capabilities
    assert caps.incremental is False and caps.timestamps is True
    rid = sim.admin_create(ORG, PERSON)
    later = datetime(2999, 1, 1, tzinfo=UTC)
    sim.counters.clear()
    assert rid in by_id(connector, ORG, later)  # no filter exists: everything, every time
    assert sim.counters["GET"] == 1
    rec = by_id(connector, ORG)[rid]
    stored = sim.contacts[int(rid)].updated_at
    assert rec.updated_at == stored.replace(microsecond=0)
    assert rec.updated_at is not None and rec.updated_at.tzinfo is not None


def test_a_failed_list_is_an_error_not_an_empty_scan() -> None:
    connector, _ = mock(lambda r: answer({"errors": {"customer_id": "Field is required."},
                                          "result": False}))
    with pytest.raises(RecordRejected, match="customer_id: Field is required"):
        listed(connector, ORG)


# -- create / update / delete -----------------------------------------------------------------


def test_create_posts_json_with_customer_id_and_takes_the_id_from_the_body(
    sim: LighteningSim, connector: LighteningConnector
) -> None:
    result = connector.create(ORG, {**PERSON, "job_title": "Buyer"})
    stored = sim.contacts[int(result.remote_id)]
    assert stored.customer_id == 1 and stored.values["name"] == "Ada Lovelace"
    assert stored.values["role"] == "Buyer" and stored.values["is_active"] == "1"

    connector, seen = mock(lambda r: answer({"msg": "Successfully created entity.",
                                             "id": "77", "result": True}))
    assert connector.create(ORG, PERSON).remote_id == "77"
    (post,) = seen
    assert post.method == "POST" and post.url.path == "/contact"
    assert post.headers["Content-Type"] == "application/json"
    body = sent(post)
    assert body["customer_id"] == 1 and body["name"] == "Ada Lovelace"
    assert body["tel"] == PERSON["phone"] and body["is_active"] == "1"
    assert "create_method" not in body


def test_create_without_an_id_in_the_answer_is_an_unknown_outcome() -> None:
    connector, seen = mock(lambda r: answer({"msg": "Successfully created entity.",
                                             "result": True}))
    with pytest.raises(RetriableError, match="no id"):
        connector.create(ORG, PERSON)
    assert len(seen) == 1  # never sent twice


def test_update_is_a_post_that_always_sends_name(
    sim: LighteningSim, connector: LighteningConnector
) -> None:
    rid = sim.admin_create(ORG, PERSON)
    desired = {**by_id(connector, ORG)[rid].fields, "phone": "+1 555 0100"}
    connector.update(rid, ORG, {"phone": "+1 555 0100"}, desired, {})
    assert sim.contacts[int(rid)].values["tel"] == "+1 555 0100"

    connector, seen = mock(lambda r: answer({"msg": "Successfully updated entity.",
                                             "result": True}))
    connector.update("412", ORG, {"phone": "+1 555 0100"}, desired, {})
    (post,) = seen
    assert post.method == "POST" and post.url.path == "/contact/412"
    assert sent(post) == {"name": "Ada Lovelace", "tel": "+1 555 0100"}


def test_a_move_to_another_customer_is_one_update_with_customer_id(
    sim: LighteningSim, connector: LighteningConnector
) -> None:
    assert connector.capabilities.can_move
    rid = sim.admin_create(ORG, PERSON)
    fields = by_id(connector, ORG)[rid].fields
    sim.counters.clear()
    connector.update(rid, OTHER, {}, fields, {MOVED_FROM: ORG})
    assert sim.contacts[int(rid)].customer_id == int(OTHER)
    assert sim.counters["POST"] == 1 and rid in by_id(connector, OTHER)


def test_delete_is_a_get_whose_result_false_success_is_a_success(
    sim: LighteningSim, connector: LighteningConnector
) -> None:
    rid = sim.admin_create(ORG, PERSON)
    sim.counters.clear()
    connector.delete(rid, ORG, {})
    assert int(rid) not in sim.contacts
    assert sim.counters["GET"] == 1 and sim.writes() == 1

    connector, seen = mock(lambda r: answer({"msg": "Entity has been successfully deleted.",
                                             "result": False}))
    connector.delete("412", ORG, {})
    assert [(r.method, r.url.path) for r in seen] == [("GET", "/contact/412/delete")]


def test_delete_of_a_contact_not_found_means_already_gone(
    sim: LighteningSim, connector: LighteningConnector
) -> None:
    connector.delete("99999", ORG, {})  # "Entity not found." with result:false: no error
    connector_m, _ = mock(lambda r: answer({"msg": "Something else.", "result": False}))
    with pytest.raises(RecordRejected, match="Something else"):
        connector_m.delete("412", ORG, {})


def test_a_lost_delete_answer_is_replayed_safely(
    sim: LighteningSim, connector: LighteningConnector
) -> None:
    rid = sim.admin_create(ORG, PERSON)
    sim.faults.lose_next = 1  # deleted, but the answer never arrives
    connector.delete(rid, ORG, {})  # the retry hears "Entity not found.": gone, as wanted
    assert int(rid) not in sim.contacts


# -- failures in HTTP 200 ------------------------------------------------------------------------


def test_http_200_result_false_errors_reject_the_record_naming_the_field(
    sim: LighteningSim, connector: LighteningConnector
) -> None:
    with pytest.raises(RecordRejected, match="email: Field must be a valid email") as info:
        connector.create(ORG, {**PERSON, "email": "not-an-email"})
    assert not isinstance(info.value, NotFound)
    assert sim.contacts == {}

    connector_m, _ = mock(lambda r: answer({"errors": {"name": "Field is required.",
                                                       "tel": "Field may not be greater "
                                                       "than 32 characters."},
                                            "result": False}))
    with pytest.raises(RecordRejected, match=r"name: Field is required\.; tel: Field may"):
        connector_m.create(ORG, PERSON)


def test_a_bare_error_names_no_field_so_the_write_did_not_happen_and_is_tried_again() -> None:
    """Lightening's "could not be saved, try again later" (HTTP 200, ``result: false``,
    no ``errors``) is not a verdict on the record: resent with backoff, create or update."""
    answers = [answer({"result": False, "error": "The contact could not be saved. "
                                                 "Please try again later."}),
               answer({"result": True, "id": 412, "msg": "Successfully created entity."})]
    connector_m, seen = mock(lambda r: answers.pop(0) if len(answers) > 1 else answers[0])
    made = connector_m.create(ORG, PERSON)
    assert made.remote_id == "412" and [r.method for r in seen] == ["POST", "POST"]
    connector_m, seen = mock(lambda r: answer({"error": "Nothing sent for request.",
                                               "result": False}))
    with pytest.raises(NotApplied, match="Nothing sent for request") as info:
        connector_m.update("412", ORG, {"email": "a@b.co"}, PERSON, {})
    assert not isinstance(info.value, RecordRejected)
    assert len(seen) == 5  # like a 5xx on an idempotent write: max_retries, then a failed attempt


def test_end_to_end_a_try_again_later_is_a_failed_attempt_delivered_next_cycle(
    tmp_path: Path, served_sim: Callable[[Any], str]
) -> None:
    w = Three(served_sim)
    config = tmp_path / "syncd.toml"
    write_config(config, tmp_path, w.urls)
    w.hv.admin_create(H_ORG, {**PERSON, "job_title": "Buyer"})
    run_once(config)
    hv_id = people(w.hv, H_ORG)["ada@example.com"]["id"]
    w.hv.admin_update(str(hv_id), {"job_title": "Chief Buyer"})
    w.lt.busy_next = 5  # every attempt of this cycle: "could not be saved, try again later"
    report = run_once(config, expect=1)
    assert report["systems"]["lightening"]["failed"] == 1
    assert any("try again later" in e for e in report["errors"])
    assert people(w.lt, ORG)["ada@example.com"]["job_title"] == "Buyer"
    listed = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(config), "quarantine", "list", "--json"],
        cwd=REPO, env={**os.environ, **SECRETS}, capture_output=True, text=True, timeout=60,
        check=True)
    assert json.loads(listed.stdout)["quarantined"] == []  # one attempt is not a verdict
    report = run_once(config)
    assert report["systems"]["lightening"]["updated"] == 1
    assert people(w.lt, ORG)["ada@example.com"]["job_title"] == "Chief Buyer"


def test_update_of_a_contact_not_found_is_not_found(connector: LighteningConnector) -> None:
    with pytest.raises(NotFound, match="Entity not found"):
        connector.update("99999", ORG, {"email": "a@b.co"}, PERSON, {})


# -- the one name ------------------------------------------------------------------------------


def test_name_is_written_joined_and_read_split_on_the_last_space(
    sim: LighteningSim, connector: LighteningConnector
) -> None:
    rid = connector.create(ORG, {**PERSON, "first_name": "Mary Ann", "last_name": "Smith"})
    assert sim.contacts[int(rid.remote_id)].values["name"] == "Mary Ann Smith"
    rec = by_id(connector, ORG)[rid.remote_id]
    assert (rec.fields["first_name"], rec.fields["last_name"]) == ("Mary Ann", "Smith")
    assert split_name("Cher") == ("", "Cher")
    assert split_name("  Ada   von  Neumann ") == ("Ada von", "Neumann")
    only_last = connector.create(ORG, {**PERSON, "email": "c@x.com", "first_name": ""})
    assert sim.contacts[int(only_last.remote_id)].values["name"] == "Lovelace"


def lightening_info() -> SystemInfo:
    return SystemInfo("lightening", LighteningConnector.capabilities, {ORG: "acme"})


def test_our_written_name_reads_back_as_no_change_whatever_the_split() -> None:
    """Golden "John" + "von Neumann" is written "John von Neumann"; it reads back split as
    "John von" + "Neumann" and must propose nothing."""
    person = {"first_name": "John", "last_name": "von Neumann", "email": "j@x.com"}
    golden = Golden("g1", "acme", {**{f: "" for f in PERSON}, **person})
    held = {f: golden.fields.get(f, "") for f in LighteningConnector.capabilities.fields}
    state = State({"g1": golden}, {("g1", "lightening"): Link("lightening", "g1", "412", ORG,
                                                               held)})
    first, last = split_name("John von Neumann")
    read = RemoteRecord("412", ORG, {**held, "first_name": first, "last_name": last})
    result = plan(state, [Observation("lightening", [read], True, NOW)],
                  {"lightening": lightening_info()}, Policy())
    assert result.goldens_changed == {} and result.links_changed == {}
    writes, rejections = derive_writes(result.state, [lightening_info()])
    assert writes == [] and rejections == []


def test_a_name_changed_elsewhere_never_changes_back_from_lightening() -> None:
    """Another system renames the person; Lightening receives the new joined name and its
    read-back is not a change of its own (no proposal, no conflict)."""
    person = {"first_name": "John", "last_name": "von Neumann-Whitman", "email": "j@x.com"}
    golden = Golden("g1", "acme", person)
    old = {"first_name": "John", "last_name": "von Neumann", "email": "j@x.com"}
    state = State({"g1": golden}, {("g1", "lightening"): Link("lightening", "g1", "412", ORG,
                                                               dict(old))})
    (write,), _ = derive_writes(state, [lightening_info()])
    assert write.changed == {"last_name": "von Neumann-Whitman"}
    # after the push the link holds what we sent; the read-back splits otherwise
    pushed = State({"g1": golden}, {("g1", "lightening"): Link("lightening", "g1", "412", ORG,
                                                                dict(write.desired))})
    first, last = split_name("John von Neumann-Whitman")
    read = RemoteRecord("412", ORG, {**write.desired, "first_name": first, "last_name": last})
    result = plan(pushed, [Observation("lightening", [read], True, NOW)],
                  {"lightening": lightening_info()}, Policy())
    assert result.goldens_changed == {} and result.conflicts == []


def test_a_name_changed_in_lightening_keeps_the_part_that_did_not_change() -> None:
    caps = LighteningConnector.capabilities
    held = {"first_name": "Ada", "last_name": "von Neumann"}
    for name, expected in [
        ("Ada von Neumann-Smith", ("Ada", "von Neumann-Smith")),  # only the last name changed
        ("Adeline von Neumann", ("Adeline", "von Neumann")),      # only the first name changed
        ("Grace Hopper", ("Grace", "Hopper")),                    # both: split on the last space
    ]:
        first, last = split_name(name)
        settled = settle_joined(caps, {"first_name": first, "last_name": last}, held)
        assert (settled["first_name"], settled["last_name"]) == expected, name


def test_the_64_character_limit_is_on_the_joined_name_and_the_planner_rejects_it() -> None:
    caps = LighteningConnector.capabilities
    long_pair = {"first_name": "F" * 30, "last_name": "L" * 34}  # 65 with the space
    assert check_limits(caps, long_pair, creating=True) == (
        "name", "65 characters, the limit is 64")
    assert check_limits(caps, {"first_name": "F" * 30, "last_name": "L" * 33},
                        creating=True) is None
    assert check_limits(caps, {"first_name": "", "last_name": ""}, creating=False) == (
        "name", "required, but empty")
    golden = Golden("g1", "acme", {**long_pair, "email": "x@y.com"})
    writes, (rejection,) = derive_writes(State({"g1": golden}, {}), [lightening_info()])
    assert writes == []
    assert "lightening" in rejection.describe() and "g1" in rejection.describe()
    assert rejection.field == "name"
    connector, seen = mock(lambda r: answer({"result": True, "id": "1"}))
    with pytest.raises(RecordRejected, match="name: 65 characters"):
        connector.create(ORG, long_pair)
    assert seen == []


def test_field_limits_are_capability_data() -> None:
    limits = LighteningConnector.capabilities.limits
    assert {f: limits[f].max_length for f in limits} == {
        "name": 64, "email": 191, "phone": 32, "mobile": 32, "fax": 32, "job_title": 32,
        "department": 64}


# -- fields only Lightening holds; booleans; auth ------------------------------------------------


def test_fields_lightening_alone_holds_are_never_cleared_by_a_write(
    sim: LighteningSim, connector: LighteningConnector
) -> None:
    rid = sim.admin_create(ORG, PERSON)
    own = {"tel1": "+1 555 9999", "email2": "ada2@example.com", "email3": "ada3@example.com",
           "portal_active": "1", "milestone": "1", "customer_custom_identifier": "ADA-7",
           "locale": "fr_FR", "cost_center_id": "5"}
    sim.contacts[int(rid)].values.update(own)
    sim.contacts[int(rid)].portal_password = "portal-secret"
    current = by_id(connector, ORG)[rid]
    desired = {**current.fields, "email": "", "job_title": "CFO", "last_name": "King"}
    connector.update(rid, ORG, {"email": "", "job_title": "CFO", "last_name": "King"},
                     desired, {})
    contact = sim.contacts[int(rid)]
    assert {k: contact.values[k] for k in own} == own
    assert contact.portal_password == "portal-secret"
    assert contact.values["email"] == "" and contact.values["role"] == "CFO"
    assert contact.values["name"] == "Ada King"


def test_booleans_are_the_strings_1_and_0(
    sim: LighteningSim, connector: LighteningConnector
) -> None:
    result = connector.create(ORG, PERSON)
    listed_entity = sim._render(sim.contacts[int(result.remote_id)])
    assert listed_entity["is_active"] == "1"
    assert {listed_entity[k] for k in ("portal_active", "milestone")} <= {"0", "1"}


def test_the_token_is_sent_verbatim_in_authorization() -> None:
    token = "Bearer abc.DEF-123 with spaces"
    connector, seen = mock(lambda r: answer({"entities": [], "result": True}), token=token)
    listed(connector, ORG)
    assert seen[0].headers["Authorization"] == token


def test_a_refused_token_stops_the_system_and_is_never_shown(url: str) -> None:
    connector = make(url, token="hunter2-very-secret")
    with pytest.raises(AuthError) as info:
        listed(connector, ORG)
    assert "hunter2" not in str(info.value)
    connector_m, _ = mock(lambda r: answer({"error": "Unauthorized", "result": False}))
    with pytest.raises(AuthError):  # the same refusal as an HTTP 200
        listed(connector_m, ORG)


def test_an_expired_token_is_an_auth_error(
    sim: LighteningSim, connector: LighteningConnector
) -> None:
    sim.expire_token()
    with pytest.raises(AuthError):
        listed(connector, ORG)


# -- end to end: `syncd once` between Lightening, Harvest and LogiSense --------------------------

H_ORG = "11072"
L_ORG = "16"
SECRETS = {
    "SYNCD_SYSTEMS__LIGHTENING__TOKEN": SANDBOX_TOKEN,
    "SYNCD_SYSTEMS__HARVEST__PASSWORD": SANDBOX_PASSWORD,
    "SYNCD_SYSTEMS__LOGISENSE__PASSWORD": "secret",
}


def lightening_and_memory(url: str, store: Store) -> tuple[Syncer, MemoryConnector]:
    cfg = LighteningConfig(kind="lightening", base_url=url, token=SANDBOX_TOKEN)
    mem = MemoryConnector("mem")
    settings = Settings(systems={"lt": cfg, "mem": MemoryConfig(kind="memory")},
                        organizations={"acme": {"lt": ORG, "mem": ORG},
                                       "globex": {"lt": OTHER, "mem": OTHER}},
                        sync=SyncConfig(max_delete_fraction=1.0))
    return Syncer(settings, store, {"lt": from_config("lt", cfg), "mem": mem}), mem


@pytest.mark.parametrize("cold", [False, True], ids=["daemon", "cronjob"])
def test_a_contact_moved_to_an_unmapped_customer_is_deleted_nowhere(
    cold: bool, store: Store, served_sim: Callable[[Any], str],
) -> None:
    """The listing asks only the mapped customers: a contact missing from it is read by id
    before anyone concludes it was deleted."""
    sim = LighteningSim(customers=[1, 2, 3])
    url = served_sim(sim)
    syncer, mem = lightening_and_memory(url, store)
    ada = sim.admin_create(ORG, PERSON)
    bob = sim.admin_create(OTHER, {**PERSON, "first_name": "Bob", "email": "bob@example.com"})
    gone = sim.admin_create(ORG, {**PERSON, "first_name": "Cy", "email": "cy@example.com"})
    assert syncer.run_once().exit_code == 0 and len(mem.records) == 3
    sim.admin_update(ada, {"org": "3"})  # moved in Lightening's UI to a customer not mapped
    sim.admin_update(bob, {"org": ORG})  # and one between two mapped customers
    sim.admin_delete(gone)
    sim.counters.clear()
    if cold:  # a fresh process: state from the store
        syncer, _ = lightening_and_memory(url, store)
        syncer.connectors["mem"] = mem
    report = syncer.run_once()
    assert report.exit_code == 0, report.errors
    assert sorted(r.fields["email"] for r in mem.records.values()) == [
        "ada@example.com", "bob@example.com"]  # Ada left the sync; only Cy was deleted
    assert {r.fields["email"]: r.org_id for r in mem.records.values()}["bob@example.com"] == ORG
    assert sim.counters["GET"] == 3  # the listing, then Ada and Cy by id: not one per contact
    assert syncer.run_once().exit_code == 0 and len(mem.records) == 2


def write_config(path: Path, tmp: Path, urls: dict[str, str]) -> None:
    path.write_text(f"""
[store]
url = "sqlite:///{tmp / 'syncd.db'}"

[sync]
full_scan_interval = "0s"
max_delete_fraction = 0.9

[systems.lightening]
kind = "lightening"
base_url = "{urls['lightening']}"

[systems.harvest]
kind = "harvest"
base_url = "{urls['harvest']}"
username = "{SANDBOX_USER}"

[systems.logisense]
kind = "logisense"
base_url = "{urls['logisense']}"
contact_type_id = 9
client_id = "syncd"
username = "api"

[organizations.acme]
lightening = "{ORG}"
harvest = "{H_ORG}"
logisense = "{L_ORG}"
""")


def run_once(config: Path, *, expect: int = 0,
             secrets: dict[str, str] = SECRETS) -> dict[str, Any]:
    """``syncd once --json`` as an operator runs it, secrets from the environment only."""
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(config), "once", "--json"],
        cwd=REPO, env={**os.environ, **secrets}, capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert done.returncode == expect, done.stdout[-2000:] + done.stderr[-2000:]
    for secret in secrets.values():
        assert secret not in done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def moved(report: dict[str, Any]) -> int:
    return sum(s["created"] + s["updated"] + s["deleted"] for s in report["systems"].values())


def people(sim: Any, org: str) -> dict[str, dict[str, Any]]:
    return {str(r["email"]).casefold(): r for r in sim.admin_dump() if str(r["org"]) == org}


class Three:
    def __init__(self, served_sim: Callable[[Any], str]) -> None:
        self.lt = LighteningSim(customers=[1, 2, 3])
        self.hv = HarvestSim(clients=[H_ORG])
        self.ls = LogisenseSim()
        self.urls = {"lightening": served_sim(self.lt), "harvest": served_sim(self.hv),
                     "logisense": served_sim(self.ls)}

    def sims(self) -> list[Any]:
        return [self.lt, self.hv, self.ls]

    def clear(self) -> None:
        for s in self.sims():
            s.counters.clear()

    def writes(self) -> dict[str, int]:
        return {s.kind: s.writes() for s in self.sims()}

    def emails(self) -> list[set[str]]:
        return [set(people(self.lt, ORG)), set(people(self.hv, H_ORG)),
                set(people(self.ls, L_ORG))]

    def quiet(self, config: Path) -> None:
        self.clear()
        report = run_once(config)
        assert moved(report) == 0, report
        assert self.writes() == {"lightening": 0, "harvest": 0, "logisense": 0}


def test_end_to_end_lightening_harvest_logisense_every_direction_then_quiet(
    tmp_path: Path, served_sim: Callable[[Any], str]
) -> None:
    w = Three(served_sim)
    config = tmp_path / "syncd.toml"
    write_config(config, tmp_path, w.urls)
    ada = w.lt.admin_create(ORG, {**PERSON, "job_title": "Buyer", "department": "Purchasing"})
    w.lt.contacts[int(ada)].values.update({"tel1": "+1 555 7777", "email2": "ada2@x.com"})
    w.lt.admin_create("3", {**PERSON, "email": "unmapped@x.com"})
    john = w.hv.admin_create(H_ORG, {"first_name": "John", "last_name": "von Neumann",
                                     "email": "john@x.com", "phone": "+1 555 0101"})
    w.hv.admin_create(H_ORG, {"first_name": "Eve", "last_name": "Edge", "email": "eve@x.com"})
    cy = w.ls.admin_create(L_ORG, {"first_name": "Cy", "last_name": "Cole", "email": "cy@x.com",
                                   "mobile": "+1 555 0102"})

    # 1. first sync: creates in every direction
    report = run_once(config)
    assert report["systems"]["lightening"]["created"] == 3
    everyone = {"ada@example.com", "john@x.com", "eve@x.com", "cy@x.com"}
    assert w.emails() == [everyone] * 3
    lt = people(w.lt, ORG)
    assert w.lt.contacts[int(lt["john@x.com"]["id"])].values["name"] == "John von Neumann"
    assert lt["cy@x.com"]["mobile"] == "+1 555 0102"
    assert people(w.hv, H_ORG)["ada@example.com"]["job_title"] == "Buyer"

    # 2. quiet: John's read-back split ("John von" + "Neumann") is no change anywhere
    w.quiet(config)
    assert people(w.hv, H_ORG)["john@x.com"]["last_name"] == "von Neumann"
    assert people(w.ls, L_ORG)["john@x.com"]["first_name"] == "John"

    # 3. updates in every direction, one name change among them
    w.lt.admin_update(ada, {"last_name": "King", "job_title": "CFO"})
    w.hv.admin_update(john, {"last_name": "von Neumann-Whitman"})
    w.ls.admin_update(cy, {"mobile": "+1 555 0199"})
    w.clear()
    run_once(config)
    hv, ls, lt = people(w.hv, H_ORG), people(w.ls, L_ORG), people(w.lt, ORG)
    assert (hv["ada@example.com"]["last_name"], hv["ada@example.com"]["job_title"]) == (
        "King", "CFO")
    assert (ls["ada@example.com"]["first_name"], ls["ada@example.com"]["last_name"]) == (
        "Ada", "King")
    assert w.lt.contacts[int(lt["john@x.com"]["id"])].values["name"] == (
        "John von Neumann-Whitman")
    assert ls["john@x.com"]["last_name"] == "von Neumann-Whitman"
    assert lt["cy@x.com"]["mobile"] == hv["cy@x.com"]["mobile"] == "+1 555 0199"
    assert w.lt.counters["POST"] == 2  # John and Cy: one update each, no per-record GET
    assert w.lt.contacts[int(ada)].values["tel1"] == "+1 555 7777"  # never cleared
    assert w.lt.contacts[int(ada)].values["email2"] == "ada2@x.com"
    w.quiet(config)
    assert people(w.hv, H_ORG)["john@x.com"]["last_name"] == "von Neumann-Whitman"

    # 4. a create whose answer is lost is matched on the next poll, never sent twice
    w.hv.admin_create(H_ORG, {"first_name": "Dee", "last_name": "Dart", "email": "dee@x.com"})
    w.lt.faults.lose_next = 1
    w.clear()
    run_once(config, expect=1)  # the Lightening create's outcome is unknown
    assert w.lt.counters["POST"] == 1 and "dee@x.com" in people(w.lt, ORG)
    w.clear()
    run_once(config)
    assert w.lt.counters["POST"] == 0
    assert [r["email"] for r in w.lt.admin_dump()].count("dee@x.com") == 1
    w.quiet(config)

    # 5. deletes in every direction, one from each system
    w.lt.admin_delete(people(w.lt, ORG)["eve@x.com"]["id"])
    w.hv.admin_delete(people(w.hv, H_ORG)["cy@x.com"]["id"])
    w.ls.admin_delete(people(w.ls, L_ORG)["dee@x.com"]["id"])
    w.clear()
    report = run_once(config)
    assert w.emails() == [{"ada@example.com", "john@x.com"}] * 3
    assert w.lt.counters["delete"] == 2  # Cy and Dee, each one GET …/delete
    assert "unmapped@x.com" in {r["email"] for r in w.lt.admin_dump()}  # customer 3 untouched

    # 6. and quiet again on every simulator's counters
    w.quiet(config)


# -- request economy -----------------------------------------------------------------------------


@pytest.mark.skipif(not os.environ.get("SYNCD_ECONOMY"), reason="set SYNCD_ECONOMY=1 to measure")
def test_request_economy_with_1000_contacts(
    tmp_path: Path, served_sim: Callable[[Any], str]
) -> None:
    """``SYNCD_ECONOMY=1 pytest tests/test_lightening.py -k economy -s`` prints the figures."""
    sim = LighteningSim(customers=[1])
    url = served_sim(sim)
    config = tmp_path / "syncd.toml"
    config.write_text(f"""
[store]
url = "sqlite:///{tmp_path / 'syncd.db'}"

[sync]
max_delete_fraction = 0.9

[systems.lightening]
kind = "lightening"
base_url = "{url}"

[systems.mem]
kind = "memory"
path = "{tmp_path / 'mem.json'}"

[organizations.acme]
lightening = "{ORG}"
mem = "1"
""")
    def once() -> dict[str, Any]:
        return run_once(config, secrets={"SYNCD_SYSTEMS__LIGHTENING__TOKEN": SANDBOX_TOKEN})

    ids = [sim.admin_create(ORG, {"first_name": f"P{i}", "last_name": "van Test",
                                  "email": f"p{i}@example.com", "phone": f"+1 555 {i:04d}"})
           for i in range(1000)]
    sim.counters.clear()
    once()  # first sync: one list, 1 000 creates in the memory system
    first = dict(sim.counters)
    sim.counters.clear()
    assert moved(once()) == 0
    noop = dict(sim.counters)
    sim.admin_update(ids[500], {"email": "changed@example.com"})
    sim.counters.clear()
    once()
    inbound = dict(sim.counters)
    mem = MemoryConnector(name="mem", path=tmp_path / "mem.json")
    rid = next(r for r, rec in mem.records.items() if rec.fields["email"] == "p7@example.com")
    mem.edit(rid, email="p7.new@example.com")
    mem.close()
    sim.counters.clear()
    once()
    outbound = dict(sim.counters)
    print(f"\nfirst sync: {first}\nno-op: {noop}\none change in Lightening: {inbound}\n"
          f"one change pushed to Lightening: {outbound}")
    assert first == noop == inbound == {"GET": 1}
    assert outbound == {"GET": 1, "POST": 1}
    assert dump(sim)[ids[7]]["email"] == "p7.new@example.com"
