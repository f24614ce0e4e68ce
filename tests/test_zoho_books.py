"""Zoho Books contact persons: the shared contract plus this API's traps, over real HTTP.

Wire details (headers, bodies, refresh counts) are checked with httpx.MockTransport;
everything else against the simulator served on 127.0.0.1.  Time is a :class:`Clock`
shared by the connector and the simulator where the day or the token's hour matters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from freezegun import freeze_time

from syncd.config import MemoryConfig, Settings, ZohoBooksConfig
from syncd.connectors.base import check_limits
from syncd.connectors.budget import DailyBudget
from syncd.connectors.memory import MemoryConnector
from syncd.connectors.zoho_books import (
    DEFAULT_MAX_RPS,
    DailyCapReached,
    ZohoBooksConnector,
    from_config,
)
from syncd.engine.cycle import Syncer
from syncd.errors import AuthError, NotApplied, OutcomeUnknown, RecordRejected, Throttled
from syncd.http import MockTransport, Request, Response
from syncd.model import Observation, Policy, State, SystemInfo
from syncd.sandbox.harvest import SANDBOX_PASSWORD, SANDBOX_USER, HarvestSim
from syncd.sandbox.logisense import LogisenseSim
from syncd.sandbox.zoho_books import (
    DAILY_LIMIT_MESSAGE,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_ORGANIZATION_ID,
    SANDBOX_REFRESH_TOKEN,
    ZohoBooksSim,
    config_for,
)
from syncd.store import Store
from tests.contract import PERSON, ConnectorContract, by_id, dump, listed
from tests.e2e import REPO, once_json
from tests.world import Clock, SimTime

PARENT = "460000000026049"
OTHER = "460000000026050"
START = datetime(2026, 3, 2, 10, 0, 5, tzinfo=UTC)




def make(url: str, **over: Any) -> ZohoBooksConnector:
    options = {k: over.pop(k) for k in ("clock", "page_size", "transport") if k in over}
    cfg = ZohoBooksConfig.model_validate({**config_for(url), "throttle_window": "0s", **over})
    return from_config("zoho", cfg, http_clock=SimTime(), max_rps=None, **options)


@pytest.fixture
def sim() -> ZohoBooksSim:
    return ZohoBooksSim()


@pytest.fixture
def url(sim: ZohoBooksSim, served_sim: Callable[[ZohoBooksSim], str]) -> str:
    return served_sim(sim)


@pytest.fixture
def connector(url: str) -> Iterator[ZohoBooksConnector]:
    c = make(url)
    yield c
    c.close()


@pytest.fixture
def bad_connector(url: str) -> Iterator[ZohoBooksConnector]:
    c = make(url, refresh_token="1000.wrong")
    yield c
    c.close()


@pytest.fixture
def org() -> str:
    return PARENT


class TestZohoBooksContract(ConnectorContract):
    pass


def recorded(c: ZohoBooksConnector) -> list[httpx.Request]:
    """Every request the connector sends from now on (an httpx event hook, not a mock)."""
    log: list[httpx.Request] = []
    c.http._client.event_hooks["request"].append(log.append)
    return log


def mock(handler: Callable[[Request], Response], **over: Any) -> tuple[ZohoBooksConnector,
                                                                      list[Request]]:
    seen: list[Request] = []

    def answer(request: Request) -> Response:
        seen.append(request)
        if request.url.path.endswith("/oauth/v2/token"):
            return Response(200, json={"access_token": f"1000.t{len(seen)}", "expires_in": 3600})
        return handler(request)

    return make("https://zoho.test", transport=MockTransport(answer), **over), seen


def person(**over: Any) -> dict[str, Any]:
    return {"contact_person_id": "460000000099001", "first_name": "Ada", "last_name": "L",
            "email": "ada@example.com", "is_primary_contact": True, **over}


# -- reading: per parent, paged -----------------------------------------------------------

def test_persons_are_listed_per_parent_page_by_page_until_has_more_page_is_false(
    sim: ZohoBooksSim, url: str
) -> None:
    mine = {sim.admin_create(PARENT, {**PERSON, "email": f"p{i}@x.com"}) for i in range(12)}
    theirs = sim.admin_create(OTHER, PERSON)
    c = make(url, page_size=5)
    sent = recorded(c)
    records = listed(c, PARENT)
    assert {r.remote_id for r in records} == mine and theirs not in mine
    assert all(r.org_id == PARENT for r in records)  # the path's parent, attached by us
    pages = [parse_qs(r.url.query.decode()) for r in sent if r.method == "GET"]
    assert [(p["page"], p["per_page"]) for p in pages] == [(["1"], ["5"]), (["2"], ["5"]),
                                                          (["3"], ["5"])]
    assert {r.url.path for r in sent if r.method == "GET"} == {
        f"/books/v3/contacts/{PARENT}/contactpersons"}


def test_full_scan_system_without_timestamps_uses_observation_time(
    connector: ZohoBooksConnector, sim: ZohoBooksSim
) -> None:
    caps = connector.capabilities
    assert not caps.incremental and not caps.timestamps
    sim.admin_create(PARENT, PERSON)
    assert all(r.updated_at is None for r in listed(connector, PARENT))


def test_ids_stay_strings_and_a_numeric_id_skips_that_record_only() -> None:
    body = {"code": 0, "message": "success", "contact_persons": [
        person(), {**person(), "contact_person_id": 460000000099002}],
        "page_context": {"has_more_page": False}}
    c, _ = mock(lambda r: Response(200, json=body))
    (page,) = list(c.list_records([PARENT], None))
    assert [r.remote_id for r in page.records] == ["460000000099001"]
    assert len(page.skipped) == 1


# -- organization_id, token, 401 ----------------------------------------------------------

def test_organization_id_and_zoho_oauthtoken_on_every_call(
    sim: ZohoBooksSim, connector: ZohoBooksConnector
) -> None:
    sent = recorded(connector)
    rid = sim.admin_create(PARENT, PERSON)
    listed(connector, PARENT)
    made = connector.create(PARENT, {"first_name": "Bo", "last_name": "B"})
    connector.update(rid, PARENT, {"email": "a2@x.com"}, {**PERSON, "email": "a2@x.com"}, {})
    connector.delete(made.remote_id, PARENT, {})
    token, *books = sent
    assert token.url.path == "/accounts/oauth/v2/token"
    form = parse_qs(token.content.decode())
    assert form == {"grant_type": ["refresh_token"], "client_id": [config_for("")["client_id"]],
                    "client_secret": [SANDBOX_CLIENT_SECRET],
                    "refresh_token": [SANDBOX_REFRESH_TOKEN]}
    assert [r.method for r in books] == ["GET", "POST", "PUT", "DELETE"]
    for r in books:
        assert r.url.params["organization_id"] == SANDBOX_ORGANIZATION_ID
        scheme, _, value = r.headers["Authorization"].partition(" ")
        assert scheme == "Zoho-oauthtoken" and value in sim.tokens
    assert sim.counters["login"] == 1  # one token for all of it


def test_token_lives_its_hour_and_is_fetched_again_only_then(served_sim: Any) -> None:
    clock = Clock(START)
    sim = ZohoBooksSim(clock=clock)
    c = make(served_sim(sim), clock=clock)
    for _ in range(5):
        listed(c, PARENT)
        clock.advance(minutes=11)  # 55 minutes in all: the same token
    assert sim.counters["login"] == 1
    clock.advance(minutes=4, seconds=30)  # inside the last minute of its hour
    listed(c, PARENT)
    assert sim.counters["login"] == 2 and sim.counters["unauthorized"] == 0


def test_a_401_refreshes_once_and_the_call_goes_on(sim: ZohoBooksSim, url: str) -> None:
    c = make(url)
    rid = sim.admin_create(PARENT, PERSON)
    listed(c, PARENT)
    sim.expire_tokens()
    assert rid in by_id(c, PARENT)
    assert sim.counters["login"] == 2 and sim.counters["unauthorized"] == 1


def test_eleven_consecutive_401s_never_exceed_the_refresh_budget() -> None:
    c, seen = mock(lambda r: Response(401, json={"code": 57, "message": "not authorized"}))
    for _ in range(11):
        with pytest.raises(AuthError):
            listed(c, PARENT)
    tokens = [r for r in seen if r.url.path.endswith("/oauth/v2/token")]
    assert len(tokens) == 10  # Zoho's limit: 10 in 10 minutes; the 11th is never asked
    assert len(seen) - len(tokens) == 20  # each call: once, then once more after its refresh


def test_bad_refresh_token_is_an_auth_error_without_secrets(bad_connector: Any) -> None:
    with pytest.raises(AuthError) as err:
        listed(bad_connector, PARENT)
    assert SANDBOX_CLIENT_SECRET not in str(err.value) and "1000.wrong" not in str(err.value)


# -- writes: flat paths, code, answer shapes -------------------------------------------------

def test_create_is_flat_with_contact_id_in_the_body_and_201(
    sim: ZohoBooksSim, connector: ZohoBooksConnector
) -> None:
    sent = recorded(connector)
    made = connector.create(PARENT, {**PERSON, "job_title": "Buyer", "salutation": "Dr."})
    (post,) = sent[1:]
    assert post.method == "POST" and post.url.path == "/books/v3/contacts/contactpersons"
    body = json.loads(post.content)
    assert body["contact_id"] == PARENT and body["designation"] == "Buyer"
    assert "is_primary_contact" not in body and "contact_persons" not in body
    assert dump(sim)[made.remote_id]["job_title"] == "Buyer"
    assert made.fields is not None and made.fields["salutation"] == "Dr."


def test_contact_person_as_a_one_element_array_is_accepted(
    sim: ZohoBooksSim, connector: ZohoBooksConnector
) -> None:
    sim.person_as_array = True
    made = connector.create(PARENT, PERSON)
    assert made.remote_id in dump(sim)
    result = connector.update(made.remote_id, PARENT, {"last_name": "King"},
                              {**PERSON, "last_name": "King"}, {})
    assert result.fields is not None and result.fields["last_name"] == "King"


def test_code_other_than_zero_is_a_failure_even_with_http_200(
    sim: ZohoBooksSim, connector: ZohoBooksConnector
) -> None:
    listed(connector, PARENT)  # the token first
    sim.soft_error_next = 1
    before = len(dump(sim))
    with pytest.raises(OutcomeUnknown):  # "Internal error" on a create: never resent
        connector.create(PARENT, PERSON)
    assert len(dump(sim)) == before and sim.counters["POST"] == 2  # token + this one
    c, _ = mock(lambda r: Response(200, json={"code": 4, "message": "Invalid value"}))
    with pytest.raises(RecordRejected, match="Invalid value"):
        c.update("1", PARENT, {"email": "x@y.z"}, {**PERSON, "email": "x@y.z"}, {})


def test_a_code_about_no_field_is_a_write_that_did_not_happen_tried_again() -> None:
    """A non-zero ``code`` that names no field (not invalid value, too long, not found) is
    Zoho saying the call did not happen: resent like a 5xx on an idempotent write, then a
    failed attempt — never a rejection that quarantines the person at once."""
    answers = [Response(200, json={"code": 9001, "message": "Please try again later."}),
               Response(201, json={"code": 0, "message": "The contactperson has been Created",
                                   "contact_person": person(contact_person_id="4600001")})]
    c, seen = mock(lambda r: answers.pop(0) if len(answers) > 1 else answers[0])
    made = c.create(PARENT, PERSON)
    posts = [r for r in seen if r.url.path.endswith("/contactpersons")]
    assert made.remote_id == "4600001" and len(posts) == 2
    c, seen = mock(lambda r: Response(200, json={"code": 9001, "message": "Please try again"}))
    with pytest.raises(NotApplied, match=r"Please try again \(code 9001\)") as info:
        c.update("1", PARENT, {"email": "x@y.z"}, {**PERSON, "email": "x@y.z"}, {})
    assert not isinstance(info.value, RecordRejected)


def test_a_read_answered_200_with_internal_error_code_is_retried(
    sim: ZohoBooksSim, connector: ZohoBooksConnector
) -> None:
    rid = sim.admin_create(PARENT, PERSON)
    listed(connector, PARENT)
    sim.soft_error_next = 1
    assert rid in by_id(connector, PARENT)
    assert sim.counters["soft_error"] == 1


def test_persons_are_never_written_through_the_parent(
    sim: ZohoBooksSim, connector: ZohoBooksConnector
) -> None:
    sent = recorded(connector)
    keep = sim.admin_create(PARENT, {**PERSON, "email": "keep@x.com"})
    rid = sim.admin_create(PARENT, PERSON)
    connector.update(rid, PARENT, {"mobile": ""}, {**PERSON, "mobile": ""}, {})
    connector.delete(rid, PARENT, {})
    connector.create(PARENT, {"first_name": "New"})
    paths = {(r.method, r.url.path) for r in sent if r.method != "GET"} - {
        ("POST", "/accounts/oauth/v2/token")}
    assert all(p.startswith("/books/v3/contacts/contactpersons") for _, p in paths)
    assert keep in dump(sim)


def test_update_sends_changed_fields_plus_contact_id_and_first_name() -> None:
    bodies: list[Any] = []

    def answer(request: Request) -> Response:
        bodies.append(json.loads(request.content))
        return Response(200, json={"code": 0, "message": "ok",
                                   "contact_person": person(department="Ops")})

    c, _ = mock(answer)
    c.update("460000000099001", PARENT, {"department": "Ops"},
             {**PERSON, "first_name": "Ada", "department": "Ops"}, {})
    assert bodies == [{"contact_id": PARENT, "first_name": "Ada", "department": "Ops"}]


def test_deleting_a_person_already_gone_is_success(
    sim: ZohoBooksSim, connector: ZohoBooksConnector
) -> None:
    rid = sim.admin_create(PARENT, PERSON)
    sim.admin_delete(rid)
    connector.delete(rid, PARENT, {})  # 404 code 1002: the goal is reached


# -- mapping and limits -------------------------------------------------------------------------

def test_designation_department_salutation_map_and_there_is_no_fax(
    sim: ZohoBooksSim, connector: ZohoBooksConnector
) -> None:
    caps = connector.capabilities
    assert "fax" not in caps.fields
    assert {"job_title", "department", "salutation"} <= caps.fields
    rid = sim.admin_create(PARENT, {**PERSON, "job_title": "CFO", "department": "Finance",
                                    "salutation": "Mrs."})
    rec = by_id(connector, PARENT)[rid]
    assert (rec.fields["job_title"], rec.fields["department"], rec.fields["salutation"]) == (
        "CFO", "Finance", "Mrs.")


def test_is_primary_contact_is_never_touched(
    sim: ZohoBooksSim, connector: ZohoBooksConnector
) -> None:
    first = sim.admin_create(PARENT, PERSON)  # the parent's first person: primary
    second = connector.create(PARENT, {"first_name": "Bo", "email": "bo@x.com"}).remote_id
    connector.update(second, PARENT, {"last_name": "B"}, {"first_name": "Bo", "last_name": "B"},
                     {})
    assert sim.persons[first].is_primary_contact and not sim.persons[second].is_primary_contact
    assert "is_primary_contact" not in by_id(connector, PARENT)[first].fields


@pytest.mark.parametrize(("field", "limit"), [
    ("first_name", 100), ("last_name", 100), ("email", 100), ("phone", 50), ("mobile", 50),
    ("job_title", 50), ("department", 50), ("salutation", 25)])
def test_field_limits_are_capability_data(field: str, limit: int) -> None:
    caps = ZohoBooksConnector.capabilities
    ok = {"first_name": "Ada", field: "x" * limit}
    assert check_limits(caps, ok, creating=True) is None
    problem = check_limits(caps, {**ok, field: "x" * (limit + 1)}, creating=True)
    assert problem is not None and problem[0] == field


def test_first_name_is_required_and_refused_before_sending(
    sim: ZohoBooksSim, connector: ZohoBooksConnector
) -> None:
    assert check_limits(connector.capabilities, {"last_name": "Only"}, creating=True) == (
        "first_name", "required, but empty")
    with pytest.raises(RecordRejected, match="first_name"):
        connector.create(PARENT, {"last_name": "Only"})
    assert sim.writes() == 0


# -- the request budget ---------------------------------------------------------------------------

def test_default_pacing_fits_100_requests_a_minute() -> None:
    assert DEFAULT_MAX_RPS * 60 < 100
    c = from_config("zoho", ZohoBooksConfig.model_validate(config_for("https://zoho.test")))
    assert c.http.limiter.rate == DEFAULT_MAX_RPS and c.http.limiter.burst == 1.0


def test_500_parents_every_5_minutes_for_a_day_stay_inside_the_daily_cap(
    served_sim: Any
) -> None:
    clock = Clock(datetime(2026, 3, 2, 0, 0, 30, tzinfo=UTC))
    parents = [str(460000000030000 + i) for i in range(500)]
    sim = ZohoBooksSim(organizations={SANDBOX_ORGANIZATION_ID: parents}, daily_limit=1000,
                       clock=clock)
    for p in parents:
        sim.admin_create(p, {**PERSON, "email": f"{p}@x.com"})
    c = make(served_sim(sim), clock=clock)
    seen: set[str] = set()
    for _ in range(288):
        pages = list(c.list_records(parents, None))
        read = {r.org_id for p in pages for r in p.records}
        unread = frozenset().union(*(p.unread_orgs for p in pages))
        assert read | unread == set(parents) and not read & unread
        seen |= read
        clock.advance(minutes=5)
    assert sim.counters["daily_capped"] == 0 and sim.counters["throttled"] == 0
    assert seen == set(parents)  # every parent re-read within the day
    assert sim.counters["GET"] <= 1000 * 0.9
    assert c.budget_status()["resets_at"] == "2026-03-04T00:00:00+00:00"  # a day later


def test_unread_parents_are_not_taken_for_deleted_persons(served_sim: Any) -> None:
    """A budgeted sweep is complete only for the parents it read (engine: ``unread_orgs``)."""
    from syncd.engine.plan import plan
    from syncd.model import Golden, Link

    clock = Clock(datetime(2026, 3, 2, 0, 1, tzinfo=UTC))
    parents = [str(460000000030000 + i) for i in range(6)]
    sim = ZohoBooksSim(organizations={SANDBOX_ORGANIZATION_ID: parents}, clock=clock)
    ids = {p: sim.admin_create(p, {**PERSON, "email": f"{p}@x.com"}) for p in parents}
    c = make(served_sim(sim), clock=clock)  # 1 000 a day: 3 parents a cycle
    sim.admin_delete(ids[parents[0]])
    pages = list(c.list_records(parents, None))
    unread = frozenset().union(*(p.unread_orgs for p in pages))
    assert len(unread) == 3
    obs = Observation("zoho", [r for p in pages for r in p.records], complete=True,
                      observed_at=clock(), unread_orgs=unread)
    goldens = {p: Golden(p, "o" + p, {**PERSON, "email": f"{p}@x.com"}) for p in parents}
    links = {(p, "zoho"): Link("zoho", p, ids[p], p, goldens[p].fields) for p in parents}
    info = SystemInfo("zoho", c.capabilities, {p: "o" + p for p in parents})
    result = plan(State(goldens, links), [obs], {"zoho": info},
                  Policy(max_delete_fraction=1.0))
    gone = {gid for gid, g in result.state.goldens.items() if g.deleted}
    expected = {parents[0]} if parents[0] not in unread else set()
    assert gone == expected  # only a person missing under a parent that was read


def test_writes_go_first_and_reads_are_paced(served_sim: Any) -> None:
    clock = Clock(datetime(2026, 3, 2, 0, 1, tzinfo=UTC))
    parents = [str(460000000030000 + i) for i in range(6)]
    sim = ZohoBooksSim(organizations={SANDBOX_ORGANIZATION_ID: parents}, clock=clock)
    c = make(served_sim(sim), clock=clock, daily_budget=100)
    for i in range(12):  # writes may spend past the reads' share: 12 of 100 at 00:01
        c.create(parents[0], {"first_name": f"W{i}"})
    assert c.budget.reads_allowed(clock(), c.traffic.request_count()) == 0
    pages = list(c.list_records(parents, None))
    assert pages[0].unread_orgs == frozenset(parents) and sim.counters["GET"] == 0
    clock.advance(hours=12)
    later = list(c.list_records(parents, None))
    assert sorted(r.fields["first_name"] for p in later for r in p.records) == sorted(
        f"W{i}" for i in range(12))
    assert sim.counters["GET"] == 1  # one parent read so far: the reads are paced
    for _ in range(200):  # the whole budget: writes refused before sending
        try:
            c.create(parents[1], {"first_name": "W"})
        except Throttled as exc:
            assert "daily budget of 100" in str(exc)
            break
    # every request is counted, the two token calls too: 100 in all, not one more
    assert sim.counters["POST"] + sim.counters["GET"] == 100


def test_daily_cap_429_rests_the_system_until_the_reset(served_sim: Any) -> None:
    clock = Clock(datetime(2026, 3, 2, 22, 0, tzinfo=UTC))
    sim = ZohoBooksSim(daily_limit=3, clock=clock)
    c = make(served_sim(sim), clock=clock)
    rid = sim.admin_create(PARENT, PERSON)
    for _ in range(3):
        listed(c, PARENT)
    with pytest.raises(DailyCapReached, match="2026-03-03T00:00:00Z"):
        listed(c, PARENT)  # the fourth GET meets Zoho's cap
    calls = sum(sim.counters.values())
    with pytest.raises(DailyCapReached):
        listed(c, PARENT)
    with pytest.raises(DailyCapReached):
        c.create(PARENT, PERSON)
    assert sum(sim.counters.values()) == calls  # no call in between
    assert sim.counters["daily_capped"] == 1
    assert c.budget_status()["capped_until"] == "2026-03-03T00:00:00+00:00"
    clock.advance(hours=2)
    assert rid in by_id(c, PARENT)


def test_per_minute_429_is_waited_out_and_resent(sim: ZohoBooksSim, url: str) -> None:
    c = make(url)
    rid = sim.admin_create(PARENT, PERSON)
    sim.faults.throttle_next = 2
    assert rid in by_id(c, PARENT)
    assert c.traffic.throttled_count() == 2 and c.budget.capped_until is None


def test_the_daily_message_is_told_apart_from_the_minute_one() -> None:
    body = {"code": 46, "message": DAILY_LIMIT_MESSAGE}
    c, seen = mock(lambda r: Response(429, json=body))
    with pytest.raises(DailyCapReached):
        listed(c, PARENT)
    assert len(seen) == 2  # token + one GET: never retried


# -- end to end: `syncd once` between Zoho, Harvest and LogiSense ---------------------------------

H_ORG, L_ORG = "11072", "16"
SECRETS = {"SYNCD_SYSTEMS__ZOHO__CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
           "SYNCD_SYSTEMS__ZOHO__REFRESH_TOKEN": SANDBOX_REFRESH_TOKEN,
           "SYNCD_SYSTEMS__HARVEST__PASSWORD": SANDBOX_PASSWORD,
           "SYNCD_SYSTEMS__LOGISENSE__PASSWORD": "secret"}


def write_config(path: Path, tmp: Path, zoho: str, harvest: str | None,
                 logisense: str | None = None, daily_budget: int = 1000,
                 mem: bool = False) -> None:
    cfg = config_for(zoho)
    text = f"""
[store]
url = "sqlite:///{tmp / 'syncd.db'}"

[sync]
full_scan_interval = "0s"
max_delete_fraction = 0.9

[systems.zoho]
kind = "zoho_books"
base_url = "{cfg['base_url']}"
accounts_url = "{cfg['accounts_url']}"
organization_id = "{cfg['organization_id']}"
client_id = "{cfg['client_id']}"
daily_budget = {daily_budget}
max_rps = 200
"""
    org = f'[organizations.acme]\nzoho = "{PARENT}"\n'
    if harvest:
        text += f'[systems.harvest]\nkind = "harvest"\nbase_url = "{harvest}"\n' \
                f'username = "{SANDBOX_USER}"\nmax_rps = 200\n'
        org += f'harvest = "{H_ORG}"\n'
    if logisense:
        text += f'[systems.logisense]\nkind = "logisense"\nbase_url = "{logisense}"\n' \
                'contact_type_id = 9\nclient_id = "syncd"\nusername = "api"\n'
        org += f'logisense = "{L_ORG}"\n'
    if mem:
        text += f'[systems.mem]\nkind = "memory"\npath = "{tmp / "mem.json"}"\n'
        org += 'mem = "1"\n'
    path.write_text(text + org)


def secrets_for(config: Path) -> dict[str, str]:
    """Only the configured systems' secrets: a stray one would configure a system by itself."""
    text = config.read_text()
    return {k: v for k, v in SECRETS.items() if f"[systems.{k.split('__')[1].lower()}]" in text}


def once(config: Path) -> dict[str, Any]:
    return once_json(config, secrets_for(config))


def people(sim: Any) -> dict[str, dict[str, Any]]:
    return {str(r["email"]).casefold(): r for r in sim.admin_dump()}


def moved(report: dict[str, Any]) -> int:
    return sum(s["created"] + s["updated"] + s["deleted"] for s in report["systems"].values())


def test_end_to_end_syncd_once_with_harvest_and_logisense(
    tmp_path: Path, served_sim: Any
) -> None:
    zoho, harvest, ls = ZohoBooksSim(), HarvestSim(clients=[H_ORG]), LogisenseSim()
    sims = (zoho, harvest, ls)
    config = tmp_path / "syncd.toml"
    write_config(config, tmp_path, served_sim(zoho), served_sim(harvest), served_sim(ls))
    z = {n: zoho.admin_create(PARENT, {"first_name": n, "last_name": "Zoho",
                                       "email": f"{n}@x.com", "job_title": "Buyer"})
         for n in ("ada", "dee")}
    h = {n: harvest.admin_create(H_ORG, {"first_name": n, "last_name": "Harvest",
                                         "email": f"{n}@x.com"}) for n in ("bob", "eve")}
    ls_ids = {n: ls.admin_create(L_ORG, {"first_name": n, "last_name": "Logi",
                                         "email": f"{n}@x.com", "salutation": "Mx."})
              for n in ("cy", "fay")}
    everyone = {f"{n}@x.com" for n in ("ada", "dee", "bob", "eve", "cy", "fay")}

    # 1. first sync: every system gets the others' people
    report = once(config)
    assert {s: report["systems"][s]["created"] for s in ("zoho", "harvest", "logisense")} == {
        "zoho": 4, "harvest": 4, "logisense": 4}
    for sim in sims:
        assert set(people(sim)) == everyone
    assert people(zoho)["cy@x.com"]["salutation"] == "Mx."
    assert people(harvest)["ada@x.com"]["job_title"] == "Buyer"

    # 2. quiet: no write request anywhere
    for sim in sims:
        sim.counters.clear()
    assert moved(once(config)) == 0
    assert [sim.writes() for sim in sims] == [0, 0, 0]

    # 3. updates from each system reach the other two
    zoho.admin_update(z["ada"], {"mobile": "+1 555 0101"})
    harvest.admin_update(h["bob"], {"job_title": "Chief"})
    ls.admin_update(ls_ids["cy"], {"salutation": "Dr."})
    report = once(config)
    assert people(harvest)["ada@x.com"]["mobile"] == people(ls)["ada@x.com"]["mobile"] \
        == "+1 555 0101"
    assert people(zoho)["bob@x.com"]["job_title"] == "Chief"
    assert people(zoho)["cy@x.com"]["salutation"] == "Dr."

    # 4. deletes from each system reach the other two
    zoho.admin_delete(z["dee"])
    harvest.admin_delete(h["eve"])
    ls.admin_delete(ls_ids["fay"])
    once(config)
    for sim in sims:
        assert set(people(sim)) == {"ada@x.com", "bob@x.com", "cy@x.com"}

    # 5. quiet again
    for sim in sims:
        sim.counters.clear()
    assert moved(once(config)) == 0
    assert [sim.writes() for sim in sims] == [0, 0, 0]

    # 6. a create whose answer is lost is matched on the next poll, never sent twice
    harvest.admin_create(H_ORG, {"first_name": "Gus", "last_name": "Harvest",
                                 "email": "gus@x.com"})
    zoho.faults.lose_next = 1
    zoho.counters.clear()
    done = subprocess.run([sys.executable, "-m", "syncd", "--config", str(config), "once",
                           "--json"], cwd=REPO, env={**os.environ, **SECRETS},
                          capture_output=True, text=True, timeout=60, check=False)
    assert "outcome unknown" in done.stdout + done.stderr
    assert zoho.counters["POST"] - zoho.counters["login"] == 1
    zoho.counters.clear()
    once(config)
    assert zoho.counters["POST"] - zoho.counters["login"] == 0
    assert [r["email"] for r in zoho.admin_dump()].count("gus@x.com") == 1
    for sim in sims:
        sim.counters.clear()
    assert moved(once(config)) == 0
    assert [sim.writes() for sim in sims] == [0, 0, 0]


@pytest.mark.skipif(not os.environ.get("SYNCD_ECONOMY"), reason="set SYNCD_ECONOMY=1 to measure")
def test_request_economy_with_1000_contacts(tmp_path: Path, served_sim: Any) -> None:
    """``SYNCD_ECONOMY=1 pytest tests/test_zoho_books.py -k economy -s`` prints the figures.

    1 000 persons under 10 parents (100 each: one page per parent), a 10 000-a-day plan
    so that one cycle may re-read every parent; the other side is a memory system.
    """
    parents = [str(460000000030000 + i) for i in range(10)]
    sim = ZohoBooksSim(organizations={SANDBOX_ORGANIZATION_ID: parents},
                       per_minute=10_000, daily_limit=100_000)
    config = tmp_path / "syncd.toml"
    write_config(config, tmp_path, served_sim(sim), None, daily_budget=10_000, mem=True)
    text = config.read_text().replace(f'[organizations.acme]\nzoho = "{PARENT}"\nmem = "1"\n',
                                      "")
    for i, p in enumerate(parents):
        text += f'[organizations.o{i}]\nzoho = "{p}"\nmem = "{i}"\n'
    config.write_text(text)
    ids = [sim.admin_create(parents[i % 10], {"first_name": f"P{i}", "last_name": "Test",
                                              "email": f"p{i}@example.com"})
           for i in range(1000)]
    figures = {}
    sim.counters.clear()
    once(config)
    figures["first sync (1 000 created in memory)"] = dict(sim.counters)
    sim.counters.clear()
    assert moved(once(config)) == 0
    figures["no-op"] = dict(sim.counters)
    sim.admin_update(ids[500], {"email": "changed@example.com"})
    sim.counters.clear()
    once(config)
    figures["one change in Zoho"] = dict(sim.counters)
    mem = MemoryConnector(name="mem", path=tmp_path / "mem.json")
    rid = next(r for r, rec in mem.records.items() if rec.fields["email"] == "p7@example.com")
    mem.edit(rid, email="p7.new@example.com")
    mem.close()
    sim.counters.clear()
    once(config)
    figures["one change pushed to Zoho"] = dict(sim.counters)
    print("\n" + "\n".join(f"{k}: {v}" for k, v in figures.items()))
    for counts in figures.values():  # a token POST, then one GET per parent: never per person
        assert counts.get("GET") == 10 and counts.get("login") == 1
    assert figures["one change pushed to Zoho"].get("PUT") == 1


def test_status_shows_the_budget_used_today_and_when_it_resets(
    tmp_path: Path, served_sim: Any
) -> None:
    sim = ZohoBooksSim()
    sim.admin_create(PARENT, PERSON)
    config = tmp_path / "syncd.toml"
    write_config(config, tmp_path, served_sim(sim), None, mem=True)
    spent = sum(once(config)["systems"]["zoho"]["requests"] for _ in range(2))
    done = subprocess.run([sys.executable, "-m", "syncd", "--config", str(config), "status",
                           "--json"], cwd=REPO, env={**os.environ, **secrets_for(config)},
                          capture_output=True, text=True, timeout=60, check=True)
    budget = json.loads(done.stdout)["systems"]["zoho"]["budget"]
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert budget == {"used": spent, "limit": 1000, "resets_at": f"{tomorrow}T00:00:00+00:00",
                      "capped_until": None}
    assert json.loads(done.stdout)["systems"]["mem"]["budget"] is None


# -- the budget across processes: one cycle per fresh process (the CronJob) ----------------------

MEM_ORG = "1"


@contextmanager
def fresh_process(store: Store, url: str, mem: Path, budget: int = 1000) -> Iterator[Syncer]:
    """What `syncd once` builds in a new process: new connectors and a new Syncer, one store."""
    zoho = ZohoBooksConfig.model_validate({**config_for(url), "throttle_window": "0s",
                                           "daily_budget": budget})
    settings = Settings(systems={"zoho": zoho, "mem": MemoryConfig(kind="memory")},
                        organizations={"acme": {"zoho": PARENT, "mem": MEM_ORG}})
    connectors: dict[str, Any] = {"zoho": from_config("zoho", zoho, http_clock=SimTime(),
                                                      max_rps=None),
                                  "mem": MemoryConnector(name="mem", path=mem)}
    s = Syncer(settings, store, connectors)
    try:
        yield s
    finally:
        s.close()
        for c in connectors.values():
            c.close()


def budget_of(s: Syncer) -> dict[str, Any]:
    """What the new process's Zoho connector knows of today before sending anything."""
    zoho = s.connectors["zoho"]
    assert isinstance(zoho, ZohoBooksConnector)
    return zoho.budget_status()


def seed_memory(path: Path, n: int) -> None:
    mem = MemoryConnector(name="mem", path=path)
    for i in range(n):
        mem.add(MEM_ORG, {"first_name": f"P{i}", "last_name": "Mem", "email": f"p{i}@x.com"})
    mem.close()


def test_resume_counts_only_the_runs_of_the_current_budget_day_and_a_rest_still_due() -> None:
    budget = DailyBudget(100, time(6, 0), timedelta(minutes=5))  # resets at 06:00 UTC
    now = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    runs = [(datetime(2026, 3, 2, 5, 59, tzinfo=UTC), 40),  # the day before the reset
            (datetime(2026, 3, 2, 6, 0, tzinfo=UTC), 7), (datetime(2026, 3, 2, 6, 55, tzinfo=UTC), 5)]
    budget.resume(now, 3, runs, datetime(2026, 3, 2, 6, 0, tzinfo=UTC))  # a rest already over
    assert budget.used(now, 3) == 12 and budget.used(now, 4) == 13 and budget.capped_until is None
    budget.resume(now, 4, [], datetime(2026, 3, 3, 6, 0, tzinfo=UTC))
    assert budget.capped_until == datetime(2026, 3, 3, 6, 0, tzinfo=UTC)
    assert budget.used(datetime(2026, 3, 3, 6, 0, tzinfo=UTC), 9) == 0  # the next day


def test_a_fresh_process_knows_what_earlier_ones_spent_today_and_sends_nothing_past_it(
    store: Store, served_sim: Any, tmp_path: Path
) -> None:
    sim = ZohoBooksSim()
    url = served_sim(sim)  # served before the clock is frozen: the server keeps real time
    mem = tmp_path / "mem.json"
    seed_memory(mem, 12)
    with freeze_time("2026-03-02 12:00:00", real_asyncio=True) as frozen:
        with fresh_process(store, url, mem, budget=10) as s:
            first = s.run_once()
        # a token, one GET, eight creates: the whole budget; the ninth create is refused
        assert first.systems["zoho"].requests == 10 and first.systems["zoho"].created == 8
        assert "daily budget of 10 requests is spent" in str(first.systems["zoho"].error)
        sent = dict(sim.counters)
        frozen.tick(timedelta(minutes=5))
        with fresh_process(store, url, mem, budget=10) as s:
            assert budget_of(s)["used"] == 10
            second = s.run_once()
        assert dict(sim.counters) == sent  # no read past the pacing, no write past the budget
        assert second.systems["zoho"].requests == 0
        assert "daily budget of 10 requests is spent; writes resume after " \
               "2026-03-03T00:00:00Z" in str(second.systems["zoho"].error)


def test_a_fresh_process_counts_its_token_before_the_last_write(
    store: Store, served_sim: Any, tmp_path: Path
) -> None:
    """One request of the day is left, but a fresh process has no token: the write
    would cost two (token + POST), so it is refused before either is sent."""
    sim = ZohoBooksSim()
    url = served_sim(sim)
    mem = tmp_path / "mem.json"
    seed_memory(mem, 7)
    with freeze_time("2026-03-02 12:00:00", real_asyncio=True) as frozen:
        with fresh_process(store, url, mem, budget=10) as s:
            assert s.run_once().systems["zoho"].requests == 9  # token, one GET, 7 creates
        seed_memory(mem, 1)  # one more person to create
        sent = dict(sim.counters)
        frozen.tick(timedelta(minutes=5))
        with fresh_process(store, url, mem, budget=10) as s:
            assert budget_of(s)["used"] == 9
            second = s.run_once()
    assert dict(sim.counters) == sent
    assert second.systems["zoho"].requests == 0
    assert "daily budget of 10 requests is spent" in str(second.systems["zoho"].error)


def test_a_new_budget_day_starts_from_nothing_spent(
    store: Store, served_sim: Any, tmp_path: Path
) -> None:
    sim = ZohoBooksSim()
    url = served_sim(sim)
    mem = tmp_path / "mem.json"
    seed_memory(mem, 12)
    with freeze_time("2026-03-02 12:00:00", real_asyncio=True) as frozen:
        with fresh_process(store, url, mem, budget=10) as s:
            assert s.run_once().systems["zoho"].requests == 10
        frozen.move_to("2026-03-03 12:00:00")
        with fresh_process(store, url, mem, budget=10) as s:
            assert budget_of(s)["used"] == 0
            report = s.run_once()
    assert report.systems["zoho"].error is None and report.systems["zoho"].created == 4
    assert len(sim.admin_dump()) == 12


def test_a_daily_cap_429_rests_later_fresh_processes_until_the_reset(
    store: Store, served_sim: Any, tmp_path: Path
) -> None:
    sim = ZohoBooksSim(daily_limit=3)  # Zoho's own cap, well below our budget of 1 000
    url = served_sim(sim)
    mem = tmp_path / "mem.json"
    seed_memory(mem, 3)
    with freeze_time("2026-03-02 22:00:00", real_asyncio=True) as frozen:
        with fresh_process(store, url, mem) as s:
            first = s.run_once()  # a GET, two creates, and the third meets the cap
        assert sim.counters["daily_capped"] == 1 and len(sim.admin_dump()) == 2
        assert "rests until 2026-03-03T00:00:00Z" in str(first.systems["zoho"].error)
        sent = dict(sim.counters)
        for _ in range(3):  # the CronJob goes on every 5 minutes
            frozen.tick(timedelta(minutes=5))
            with fresh_process(store, url, mem) as s:
                assert budget_of(s)["capped_until"] == "2026-03-03T00:00:00+00:00"
                later = s.run_once()
            assert dict(sim.counters) == sent  # not even a token
            assert "nothing is sent before 2026-03-03T00:00:00Z" in str(later.systems["zoho"].error)
        frozen.move_to("2026-03-03 00:05:00")
        with fresh_process(store, url, mem) as s:
            after = s.run_once()
    assert after.systems["zoho"].error is None and after.systems["zoho"].created == 1
    assert sim.counters["GET"] > sent["GET"] and len(sim.admin_dump()) == 3
