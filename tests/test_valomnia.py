"""Valomnia: the shared connector contract plus this API's own traps, each by name.

Everything but the wire-level checks talks to :class:`ValomniaSim` over real
HTTP on 127.0.0.1; wire-level checks (a redirect to the login page, a
refused query) use ``syncd.http.MockTransport``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd.config import ValomniaConfig
from syncd.connectors.memory import MemoryConnector
from syncd.connectors.valomnia import (
    MAX_LENGTH,
    OVERLAP,
    ValomniaConnector,
    from_config,
    last_updated_param,
)
from syncd.engine.writes import derive_writes
from syncd.errors import AuthError, NotFound, OutcomeUnknown, RecordRejected, SystemUnavailable
from syncd.http import MockTransport, Request, Response
from syncd.model import MOVED_FROM, Discovered, Golden, Link, State, SystemInfo
from syncd.sandbox.harvest import HarvestSim
from syncd.sandbox.logisense import LogisenseSim
from syncd.sandbox.valomnia import SANDBOX_PASSWORD, SANDBOX_USER, ValomniaSim
from tests.contract import PERSON, ConnectorContract, by_id, dump, listed
from tests.e2e import REPO
from tests.world import Clock, SimTime

ORG = "3229"
OTHER = "3230"
API = "/api/v1.0/contacts"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
Serve = Callable[[Any], str]




def make(url: str, *, password: str = SANDBOX_PASSWORD, transport: Any = None,
         **options: Any) -> ValomniaConnector:
    cfg = ValomniaConfig(kind="valomnia", base_url=url, username=SANDBOX_USER, password=password)
    return from_config("valomnia", cfg, transport=transport, http_clock=SimTime(), **options)


@pytest.fixture
def sim() -> ValomniaSim:
    return ValomniaSim()


@pytest.fixture
def url(sim: ValomniaSim, served_sim: Serve) -> str:
    return served_sim(sim)


@pytest.fixture
def connector(url: str) -> Iterator[ValomniaConnector]:
    c = make(url)
    yield c
    c.close()


@pytest.fixture
def bad_connector(url: str) -> Iterator[ValomniaConnector]:
    c = make(url, password="not-the-password")
    yield c
    c.close()


@pytest.fixture
def org() -> str:
    return ORG


class TestValomniaContract(ConnectorContract):
    pass


def calls(sim: ValomniaSim, method: str, path: str = API) -> list[dict[str, Any]]:
    return [e for e in sim.log if e["method"] == method and e["path"].startswith(path)]


def mock(handler: Callable[[Request], Response]) -> tuple[ValomniaConnector, list[Request]]:
    seen: list[Request] = []

    def record(request: Request) -> Response:
        seen.append(request)
        return handler(request)

    return make("https://acme.valomnia.com", transport=MockTransport(record)), seen


def login_ok(request: Request) -> Response | None:
    if request.url.path == "/j_spring_security_check":
        return Response(200, json={"success": True, "token": f"T{len(request.content)}"})
    return None


def contact_json(cid: int = 5, **over: Any) -> dict[str, Any]:
    return {"id": cid, "customer": {"id": 3229, "reference": "C0959"}, "firstName": "Marie",
            "lastName": "Schrader", "fonction": "Commercial", "email": "", "phone": "",
            "organization": "entity1", "lastUpdated": "2016-08-16T13:35:20Z", **over}


# -- auth: a cookie session ----------------------------------------------------------------

def test_login_posts_the_spring_form_and_sends_the_token_as_jsessionid_cookie(
    sim: ValomniaSim, connector: ValomniaConnector
) -> None:
    listed(connector, ORG)
    assert sim.logins == [
        {"j_username": SANDBOX_USER, "j_password": SANDBOX_PASSWORD, "ajax": "true"}
    ]
    (token,) = sim.sessions
    assert sim.log and all(e["cookie"] == f"JSESSIONID={token}" for e in sim.log)


def test_login_form_is_in_the_body_not_the_url() -> None:
    connector, seen = mock(lambda r: login_ok(r) or Response(200, json={
        "paging": {"total": 0}, "data": []}))
    listed(connector, ORG)
    login = seen[0]
    assert login.method == "POST" and not login.url.query
    assert login.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert b"j_password=sandbox-only" in login.content and b"ajax=true" in login.content


def test_login_redirect_to_ajax_success_is_followed(served_sim: Serve) -> None:
    sim = ValomniaSim(login_redirect=True)
    c = make(served_sim(sim))
    rid = sim.admin_create(ORG, PERSON)
    assert rid in by_id(c, ORG)
    assert sim.counters["login"] == 1 and sim.counters["unauthorized"] == 0


@pytest.mark.parametrize("redirect", [False, True])
def test_bad_credentials_are_auth_error_without_the_password(
    served_sim: Serve, redirect: bool
) -> None:
    sim = ValomniaSim(login_redirect=redirect)
    c = make(served_sim(sim), password="wrong-password")
    with pytest.raises(AuthError) as err:
        listed(c, ORG)
    assert "login refused" in str(err.value) and "wrong-password" not in str(err.value)
    assert not calls(sim, "GET")


def test_an_expired_session_logs_in_again_once_and_goes_on(
    sim: ValomniaSim, connector: ValomniaConnector
) -> None:
    rid = sim.admin_create(ORG, PERSON)
    listed(connector, ORG)
    sim.expire_sessions()
    assert rid in by_id(connector, ORG)
    assert sim.counters["login"] == 2 and sim.counters["unauthorized"] == 1


def test_a_redirect_to_the_login_page_is_an_expired_session() -> None:
    answers = iter([Response(302, headers={"Location": "https://acme.valomnia.com/login/auth"}),
                    Response(200, json={"paging": {"total": 1}, "data": [contact_json()]})])
    connector, seen = mock(lambda r: login_ok(r) or next(answers))
    assert [r.remote_id for r in listed(connector, ORG)] == ["5"]
    assert [r.url.path for r in seen] == ["/j_spring_security_check", API,
                                          "/j_spring_security_check", API]


def test_an_html_page_where_json_was_expected_is_an_expired_session() -> None:
    answers = iter([Response(200, html="<html><form action='/j_spring_security_check'>"),
                    Response(200, json={"paging": {"total": 1}, "data": [contact_json()]})])
    connector, seen = mock(lambda r: login_ok(r) or next(answers))
    assert [r.remote_id for r in listed(connector, ORG)] == ["5"]
    assert [r.url.path for r in seen].count("/j_spring_security_check") == 2


def test_a_session_refused_right_after_login_is_auth_error_not_a_loop() -> None:
    connector, seen = mock(lambda r: login_ok(r) or Response(401, json={
        "error": "unauthorized", "error_description": "Full authentication is required"}))
    with pytest.raises(AuthError, match="Full authentication"):
        listed(connector, ORG)
    assert len(seen) == 4  # login, list, login again once, list


# -- reading: lastUpdated_gte, offset paging -------------------------------------------------

def test_capabilities_are_incremental_with_timestamps_and_a_second_of_overlap(
    connector: ValomniaConnector,
) -> None:
    caps = connector.capabilities
    assert caps.incremental and caps.timestamps and caps.can_delete
    assert timedelta(seconds=1) <= OVERLAP and caps.overlap == OVERLAP
    assert caps.fields == {"first_name", "last_name", "email", "phone", "mobile", "fax",
                           "job_title"}


def test_incremental_query_is_iso_8601_z_at_second_grain_sorted_ascending(
    sim: ValomniaSim, connector: ValomniaConnector
) -> None:
    paris = timezone(timedelta(hours=2))
    since = datetime(2024, 5, 1, 14, 0, 7, 999_999, tzinfo=paris)
    assert last_updated_param(since) == "2024-05-01T12:00:07Z"
    listed(connector, ORG, since)
    (entry,) = calls(sim, "GET")
    assert entry["query"] == {"sort": "lastUpdated", "order": "asc",
                              "lastUpdated_gte": "2024-05-01T12:00:07Z",
                              "max": "100", "offset": "0"}
    with pytest.raises(ValueError):
        last_updated_param(datetime(2024, 5, 1))


def test_many_contacts_in_one_second_across_page_boundaries_are_all_read(
    served_sim: Serve,
) -> None:
    clock = Clock(T0 - timedelta(hours=1))
    sim = ValomniaSim(clock=clock)
    for i in range(5):
        sim.admin_create(ORG, {**PERSON, "email": f"old{i}@example.com"})
    clock.now = T0
    same_second = {sim.admin_create(ORG, {**PERSON, "email": f"p{i}@example.com"})
                   for i in range(250)}
    c = make(served_sim(sim))
    pages = list(c.list_records([ORG], T0 + timedelta(milliseconds=400)))
    read = [r.remote_id for p in pages for r in p.records]
    assert sorted(read) == sorted(same_second) and len(read) == 250
    assert [e["query"]["offset"] for e in calls(sim, "GET")] == ["0", "100", "200"]
    assert all(r.updated_at == T0 for p in pages for r in p.records)


def test_full_scan_pages_to_the_stated_total(sim: ValomniaSim, url: str) -> None:
    ids = {sim.admin_create(ORG, {**PERSON, "email": f"p{i}@example.com"}) for i in range(23)}
    c = make(url, page_size=10)
    assert set(by_id(c, ORG)) == ids
    assert [e["query"]["offset"] for e in calls(sim, "GET")] == ["0", "10", "20"]
    assert all("lastUpdated_gte" not in e["query"] for e in calls(sim, "GET"))


@pytest.mark.parametrize("code", ["invalid_datetime_format", "invalid_param"])
def test_a_refused_filter_is_a_configuration_stop_never_a_retry(code: str) -> None:
    text = "Invalid datetime filter (not ISO-8601 formatted): [2024-05-01 12:00]"
    connector, seen = mock(lambda r: login_ok(r) or Response(
        400, json={"error": code, "error_description": text}))
    with pytest.raises(SystemUnavailable) as err:
        listed(connector, ORG, T0)
    assert "configuration error" in str(err.value) and text in str(err.value)
    assert [r.url.path for r in seen] == ["/j_spring_security_check", API]


def test_customer_is_the_organization_and_other_customers_are_listed_as_theirs(
    sim: ValomniaSim, connector: ValomniaConnector
) -> None:
    """A contact of another customer comes with its own customer id: the planner
    keeps only the mapped ones, and one of ours moved there is out of scope, not gone."""
    mine = sim.admin_create(ORG, {**PERSON, "job_title": "Buyer"})
    theirs = sim.admin_create(OTHER, PERSON)
    records = by_id(connector, ORG)
    assert records[theirs].org_id == OTHER
    rec = records[mine]
    assert rec.org_id == ORG and rec.fields["job_title"] == "Buyer"  # fonction ↔ job_title
    both = {r.remote_id: r.org_id for p in connector.list_records([ORG, OTHER], None)
            for r in p.records}
    assert both == {mine: ORG, theirs: OTHER}
    assert len(calls(sim, "GET")) == 2  # one listing for every customer, not one per customer


def test_a_move_to_another_customer_is_one_update_with_customer_id(
    sim: ValomniaSim, connector: ValomniaConnector
) -> None:
    rid = sim.admin_create(ORG, PERSON)
    connector.update(rid, OTHER, {}, PERSON, {MOVED_FROM: ORG})
    assert by_id(connector, OTHER)[rid].org_id == OTHER
    assert len(calls(sim, "PUT")) == 1


def test_deletions_are_only_visible_to_a_full_scan(
    sim: ValomniaSim, connector: ValomniaConnector
) -> None:
    keep = sim.admin_create(ORG, PERSON)
    gone = sim.admin_create(ORG, {**PERSON, "email": "gone@example.com"})
    assert {keep, gone} <= set(by_id(connector, ORG))
    sim.admin_delete(gone)
    assert gone not in by_id(connector, ORG, datetime.now(UTC) - timedelta(minutes=5))
    assert set(by_id(connector, ORG)) == {keep}


# -- errors: {error, error_description} ----------------------------------------------------

def test_a_validation_error_rejects_the_record_with_the_api_text(served_sim: Serve) -> None:
    sim = ValomniaSim(unique_email=True)
    c = make(served_sim(sim))
    c.create(ORG, PERSON)
    with pytest.raises(RecordRejected) as err:
        c.create(ORG, PERSON)
    assert "not_unique" in str(err.value) and "already exists" in str(err.value)
    assert not isinstance(err.value, NotFound)
    with pytest.raises(RecordRejected, match="invalid_param: The customer \\[9999\\]"):
        c.create("9999", PERSON)
    assert sim.counters["POST"] - sim.counters["login"] == 3  # each sent once, none retried


def test_an_update_of_a_vanished_contact_is_not_found(
    sim: ValomniaSim, connector: ValomniaConnector
) -> None:
    rid = sim.admin_create(ORG, PERSON)
    current = by_id(connector, ORG)[rid]
    sim.admin_delete(rid)
    with pytest.raises(NotFound, match="doesn't exist"):
        connector.update(rid, ORG, {"email": "x@example.com"},
                         {**current.fields, "email": "x@example.com"}, {})


def test_a_delete_of_a_vanished_contact_is_already_gone(
    sim: ValomniaSim, connector: ValomniaConnector
) -> None:
    rid = sim.admin_create(ORG, PERSON)
    connector.delete(rid, ORG, {})
    connector.delete(rid, ORG, {})  # 404 not_found: the goal is reached
    assert rid not in dump(sim) and connector.open() == Discovered()  # deletes stay on


def test_server_error_is_retried_on_put_but_a_create_is_outcome_unknown(
    sim: ValomniaSim, connector: ValomniaConnector
) -> None:
    rid = sim.admin_create(ORG, PERSON)
    current = by_id(connector, ORG)[rid]
    sim.faults.error_next = 1
    connector.update(rid, ORG, {"job_title": "Buyer"}, {**current.fields, "job_title": "Buyer"},
                     {})
    assert sim.counters["PUT"] == 2 and dump(sim)[rid]["job_title"] == "Buyer"
    before = len(dump(sim))
    sim.faults.error_next = 1
    with pytest.raises(OutcomeUnknown):
        connector.create(ORG, {**PERSON, "email": "new@example.com"})
    assert len(calls(sim, "POST")) == 0 and sim.counters["POST"] - sim.counters["login"] == 1
    assert len(dump(sim)) == before


# -- writes: form-encoded, mapped fields only ------------------------------------------------

def test_create_is_form_encoded_with_names_and_customer_id_and_answers_201(
    sim: ValomniaSim, connector: ValomniaConnector
) -> None:
    person = {"first_name": "Hélène", "last_name": "Müller", "email": "helene@example.fr",
              "job_title": "Acheteuse", "phone": "", "mobile": "+33 6 12 34 56 78"}
    result = connector.create(ORG, person)
    (post,) = calls(sim, "POST")
    assert post["content_type"].startswith("application/x-www-form-urlencoded")
    assert post["form"] == {"customerId": ORG, "firstName": "Hélène", "lastName": "Müller",
                            "email": "helene@example.fr", "fonction": "Acheteuse",
                            "mobile": "+33 6 12 34 56 78"}
    assert result.updated_at is not None
    rec = by_id(connector, ORG)[result.remote_id]
    assert rec.fields["first_name"] == "Hélène" and rec.fields["job_title"] == "Acheteuse"


def test_required_and_over_long_values_are_rejected_before_sending(
    sim: ValomniaSim, connector: ValomniaConnector
) -> None:
    limits = connector.capabilities.limits
    assert all(lim.max_length == MAX_LENGTH for lim in limits.values())
    assert limits["first_name"].required_on_create and limits["last_name"].required
    with pytest.raises(RecordRejected, match="email: 256 characters"):
        connector.create(ORG, {**PERSON, "email": "e" * 256})
    with pytest.raises(RecordRejected, match="last_name: required"):
        connector.create(ORG, {**PERSON, "last_name": ""})
    assert sim.writes() == 0


def test_update_sends_only_changed_mapped_fields_and_keeps_valomnias_own(
    sim: ValomniaSim, connector: ValomniaConnector
) -> None:
    rid = sim.admin_create(ORG, PERSON)
    sim.set_own_fields(rid, is_decision_maker=True, photo="ada.png", comment="met at fair",
                       city="Paris", address="1 rue de Rivoli", postalCode="75001", country="FR")
    own = dict(sim.contacts[int(rid)].values)
    current = by_id(connector, ORG)[rid]
    changed = {"job_title": "Buyer", "mobile": ""}
    result = connector.update(rid, ORG, changed, {**current.fields, **changed}, current.extra)
    (put,) = calls(sim, "PUT")
    assert put["form"] == {"fonction": "Buyer", "mobile": ""}
    assert put["content_type"].startswith("application/x-www-form-urlencoded")
    contact = sim.contacts[int(rid)]
    assert contact.is_decision_maker and contact.photo == "ada.png" and contact.user_id == 4
    for name in ("comment", "city", "address", "postalCode", "country", "email", "phone"):
        assert contact.values[name] == own[name], name
    assert contact.values["fonction"] == "Buyer" and contact.values["mobile"] == ""
    assert result.updated_at == by_id(connector, ORG)[rid].updated_at


def test_delete_is_delete_204(sim: ValomniaSim, connector: ValomniaConnector) -> None:
    rid = sim.admin_create(ORG, PERSON)
    connector.delete(rid, ORG, {})
    (call,) = calls(sim, "DELETE")
    assert call["path"] == f"{API}/{rid}" and rid not in dump(sim)


def test_a_405_on_delete_turns_deletes_off_once_and_the_planner_derives_none(
    served_sim: Serve, debug_logs: None,
) -> None:
    sim = ValomniaSim(deletes=False)
    c = make(served_sim(sim))
    rid = sim.admin_create(ORG, PERSON)
    with capture_logs() as logs:
        for _ in range(2):
            with pytest.raises(RecordRejected, match="no contact delete"):
                c.delete(rid, ORG, {})
    assert sim.counters["DELETE"] == 1  # the second one is not even sent
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["valomnia.no_delete"]
    assert c.capabilities.can_delete and rid in dump(sim)  # fixed once built
    assert c.open() == Discovered(can_delete=False)  # what the next poll carries
    # The planner, given these capabilities narrowed so, derives no delete for this system.
    golden = Golden("g1", "acme", {"first_name": "Ada"}, deleted=True)
    link = Link("valomnia", "g1", rid, ORG, {"first_name": "Ada"})
    info = SystemInfo("valomnia", c.open().apply(c.capabilities), {ORG: "acme"})
    writes, rejections = derive_writes(State({"g1": golden}, {("g1", "valomnia"): link}), [info])
    assert writes == [] and rejections == []


# -- end to end: `syncd once` between Valomnia, Harvest and LogiSense ------------------------

SECRETS = {
    "SYNCD_SYSTEMS__VALOMNIA__PASSWORD": SANDBOX_PASSWORD,
    "SYNCD_SYSTEMS__HARVEST__PASSWORD": SANDBOX_PASSWORD,
    "SYNCD_SYSTEMS__LOGISENSE__PASSWORD": "secret",
}


def run_once(config: Path, expect: int = 0) -> dict[str, Any]:
    """``syncd --config CONFIG once --json`` in a subprocess, secrets from the environment.

    Only the configured systems get one: a secret names its system into the config.
    """
    text = config.read_text()
    secrets = {k: v for k, v in SECRETS.items() if f"[systems.{k.split('__')[1].lower()}]" in text}
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(config), "once", "--json"],
        cwd=REPO, env={**os.environ, **secrets}, capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert done.returncode == expect, done.stdout[-2000:] + done.stderr[-2000:]
    assert SANDBOX_PASSWORD not in done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def write_config(path: Path, urls: dict[str, str], tmp: Path, full_scan: str = "6h") -> None:
    tables = {
        "valomnia": f'username = "{SANDBOX_USER}"',
        "harvest": 'username = "ops@example.com"',
        "logisense": 'client_id = "syncd"\nusername = "api"\ncontact_type_id = 9',
        "mem": f'path = "{tmp / "mem.json"}"',
    }
    orgs = {"valomnia": ORG, "harvest": "11072", "logisense": "16", "mem": "1"}
    text = f"""
[store]
url = "sqlite:///{tmp / 'syncd.db'}"

[sync]
full_scan_interval = "{full_scan}"
max_delete_fraction = 0.9
"""
    for name, url in urls.items():
        base = f'base_url = "{url}"\n' if name != "mem" else ""
        text += f'\n[systems.{name}]\nkind = "{"memory" if name == "mem" else name}"\n{base}'
        text += tables[name] + "\n"
    text += "\n[organizations.acme]\n" + "".join(f'{n} = "{orgs[n]}"\n' for n in urls)
    path.write_text(text)


def moved(report: dict[str, Any]) -> int:
    return sum(s["created"] + s["updated"] + s["deleted"] for s in report["systems"].values())


def people(sim: Any) -> dict[str, dict[str, Any]]:
    with sim.lock:
        return {str(r["email"]).casefold(): r for r in sim.admin_dump()}


@pytest.fixture
def trio(served_sim: Serve) -> tuple[dict[str, Any], dict[str, str]]:
    sims: dict[str, Any] = {"valomnia": ValomniaSim(), "harvest": HarvestSim(clients=[11072]),
                            "logisense": LogisenseSim(accounts=[16])}
    return sims, {name: served_sim(s) for name, s in sims.items()}


def test_end_to_end_with_harvest_and_logisense_every_direction_then_quiet(
    tmp_path: Path, trio: tuple[dict[str, Any], dict[str, str]]
) -> None:
    sims, urls = trio
    val, har, ls = sims["valomnia"], sims["harvest"], sims["logisense"]
    config = tmp_path / "syncd.toml"
    write_config(config, urls, tmp_path)
    ada = val.admin_create(ORG, {**PERSON, "job_title": "Acheteuse"})
    bob = val.admin_create(ORG, {"first_name": "Bob", "last_name": "Byte", "email": "bob@x.com"})
    val.set_own_fields(ada, comment="met at fair", is_decision_maker=True, city="Lyon")
    val.admin_create(OTHER, {"first_name": "Out", "last_name": "Side", "email": "out@x.com"})
    cy = har.admin_create("11072", {"first_name": "Cy", "last_name": "Cole", "email": "cy@x.com",
                                    "phone": "555 0100", "job_title": "Ops"})
    dee = ls.admin_create("16", {"first_name": "Dee", "last_name": "Dale", "email": "dee@x.com",
                                 "mobile": "555 0200"})
    everyone = {"ada@example.com", "bob@x.com", "cy@x.com", "dee@x.com"}

    # 1. creates in every direction; the unmapped customer's contact stays where it is
    report = run_once(config)
    assert {n: report["systems"][n]["created"] for n in sims} == {
        "valomnia": 2, "harvest": 3, "logisense": 3}
    assert set(people(val)) == everyone | {"out@x.com"}
    assert set(people(har)) == everyone and set(people(ls)) == everyone
    assert people(val)["cy@x.com"]["job_title"] == "Ops"
    assert people(har)["ada@example.com"]["job_title"] == "Acheteuse"
    assert people(val)["dee@x.com"]["mobile"] == "555 0200"

    # 2. the next cycle writes nothing anywhere
    for s in sims.values():
        s.counters.clear()
    assert moved(run_once(config)) == 0
    assert {n: s.writes() for n, s in sims.items()} == {n: 0 for n in sims}

    # 3. updates in every direction; Valomnia's own fields survive
    val.admin_update(ada, {"job_title": "Directrice", "phone": "+33 1 00 00 00 01"})
    har.admin_update(cy, {"mobile": "555 0111"})
    ls.admin_update(dee, {"phone": "555 0222"})
    report = run_once(config)
    assert {n: report["systems"][n]["updated"] for n in sims} == {
        "valomnia": 2, "harvest": 2, "logisense": 2}
    assert people(har)["ada@example.com"]["job_title"] == "Directrice"
    assert people(ls)["ada@example.com"]["phone"] == "+33 1 00 00 00 01"
    assert people(val)["cy@x.com"]["mobile"] == "555 0111"
    assert people(val)["dee@x.com"]["phone"] == "555 0222"
    own = val.contacts[int(ada)]
    assert own.values["comment"] == "met at fair" and own.values["city"] == "Lyon"
    assert own.is_decision_maker

    # 4. deletes in every direction; Valomnia's and Harvest's are found by the full sweep
    write_config(config, urls, tmp_path, full_scan="0s")
    val.admin_delete(bob)
    har.admin_delete(cy)
    ls.admin_delete(dee)
    for s in sims.values():
        s.counters.clear()
    report = run_once(config)
    assert {n: report["systems"][n]["deleted"] for n in sims} == {
        "valomnia": 2, "harvest": 2, "logisense": 2}
    assert val.counters["DELETE"] == 2
    assert set(people(val)) == {"ada@example.com", "out@x.com"}
    assert set(people(har)) == set(people(ls)) == {"ada@example.com"}

    # 5. and quiet again
    for s in sims.values():
        s.counters.clear()
    assert moved(run_once(config)) == 0
    assert {n: s.writes() for n, s in sims.items()} == {n: 0 for n in sims}


def test_end_to_end_a_create_whose_answer_is_lost_is_matched_next_poll(
    tmp_path: Path, trio: tuple[dict[str, Any], dict[str, str]]
) -> None:
    sims, urls = trio
    val = sims["valomnia"]
    config = tmp_path / "syncd.toml"
    write_config(config, urls, tmp_path)
    sims["harvest"].admin_create("11072", {"first_name": "Eve", "last_name": "Ng",
                                           "email": "eve@x.com"})
    val.faults.lose_next = 1  # the create lands, its answer never arrives
    report = run_once(config, expect=1)
    assert report["systems"]["valomnia"]["created"] == 0
    assert list(people(val)) == ["eve@x.com"]
    for s in sims.values():
        s.counters.clear()
    report = run_once(config)
    assert val.writes() == 0, dict(val.counters)  # matched, not sent twice
    assert [r["email"] for r in val.admin_dump()] == ["eve@x.com"]
    for s in sims.values():
        s.counters.clear()
    assert moved(run_once(config)) == 0
    assert {n: s.writes() for n, s in sims.items()} == {n: 0 for n in sims}


def test_end_to_end_a_create_that_timed_out_after_landing_is_not_resent_and_is_linked_next_poll(
    tmp_path: Path, trio: tuple[dict[str, Any], dict[str, str]]
) -> None:
    """The server applies the create and answers after the client's timeout: sending it
    again would make Eve twice. It is left for the next poll, which links the record."""
    sims, urls = trio
    val = sims["valomnia"]
    config = tmp_path / "syncd.toml"
    write_config(config, urls, tmp_path)
    text = config.read_text().replace('[systems.valomnia]\n', '[systems.valomnia]\ntimeout = "1s"\n')
    config.write_text(text)
    sims["harvest"].admin_create("11072", {"first_name": "Eve", "last_name": "Ng",
                                           "email": "eve@x.com"})
    val.faults.stall_next, val.faults.stall = 1, 3.0
    report = run_once(config, expect=1)
    assert report["systems"]["valomnia"]["created"] == 0
    assert any("timed out" in e and "outcome unknown" in e for e in report["errors"]), report
    assert [e["method"] for e in calls(val, "POST")] == ["POST"]  # sent once, never again
    assert list(people(val)) == ["eve@x.com"]
    for s in sims.values():
        s.counters.clear()
    report = run_once(config)
    assert val.writes() == 0, dict(val.counters)  # matched, not created again
    assert [r["email"] for r in val.admin_dump()] == ["eve@x.com"]
    for s in sims.values():
        s.counters.clear()
    assert moved(run_once(config)) == 0
    assert {n: s.writes() for n, s in sims.items()} == {n: 0 for n in sims}


@pytest.mark.skipif(not os.environ.get("SYNCD_ECONOMY"), reason="set SYNCD_ECONOMY=1 to measure")
def test_request_economy_with_1000_contacts(tmp_path: Path, served_sim: Serve) -> None:
    """``SYNCD_ECONOMY=1 pytest tests/test_valomnia.py -k economy -s`` prints the figures.

    The 1 000 contacts were entered an hour ago, as in a real account: an
    incremental read (cursor less ``clock_skew``) then only sees what changed.
    """
    ago = [timedelta(hours=1)]
    sim = ValomniaSim(clock=lambda: datetime.now(UTC) - ago[0])
    sim_url = served_sim(sim)
    config = tmp_path / "syncd.toml"
    ids = [sim.admin_create(ORG, {"first_name": f"P{i}", "last_name": "Test",
                                  "email": f"p{i}@example.com", "phone": f"+1 555 {i:04d}"})
           for i in range(1000)]
    ago[0] = timedelta(0)
    figures: dict[str, dict[str, int]] = {}

    def measure(label: str, full_scan: str = "6h") -> None:
        write_config(config, {"valomnia": sim_url, "mem": ""}, tmp_path, full_scan)
        sim.counters.clear()
        run_once(config)
        figures[label] = {k: v for k, v in sim.counters.items() if k != "unauthorized"}

    measure("first sync")
    measure("no-op")
    sim.admin_update(ids[500], {"email": "changed@example.com"})
    measure("one change in Valomnia")
    mem = MemoryConnector(name="mem", path=tmp_path / "mem.json")
    rid = next(r for r, rec in mem.records.items() if rec.fields["email"] == "p7@example.com")
    mem.edit(rid, email="p7.new@example.com")
    mem.close()
    measure("one change pushed to Valomnia")
    measure("no-op full sweep", "0s")
    print("\n" + "\n".join(f"{k}: {v}" for k, v in figures.items()))
    login = {"POST": 1, "login": 1}
    assert figures["first sync"] == {**login, "GET": 10}
    assert figures["no-op"] == {**login, "GET": 1}
    assert figures["one change in Valomnia"] == {**login, "GET": 1}
    assert figures["one change pushed to Valomnia"] == {**login, "GET": 1, "PUT": 1}
    assert figures["no-op full sweep"] == {**login, "GET": 10}
    assert dump(sim)[ids[7]]["email"] == "p7.new@example.com"
