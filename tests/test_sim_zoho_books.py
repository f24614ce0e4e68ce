"""The Zoho Books simulator over real HTTP on 127.0.0.1: what the connector will meet.

Time is the simulator's injectable clock (a :class:`Clock` the test moves), or
freezegun where the default wall clock is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from freezegun import freeze_time

from syncd.config import ZohoBooksConfig
from syncd.sandbox.zoho_books import (
    ACCOUNTS_PREFIX,
    API_PREFIX,
    CODE_DAILY_LIMIT,
    CODE_MINUTE_LIMIT,
    CODE_NOT_FOUND,
    CODE_UNAUTHORIZED,
    DAILY_LIMIT_MESSAGE,
    MINUTE_LIMIT_MESSAGE,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_ORGANIZATION_ID,
    SANDBOX_REFRESH_TOKEN,
    ZohoBooksSim,
    config_for,
    seeded,
)
from tests.world import Clock

PARENT = "460000000026049"
OTHER_PARENT = "460000000026050"
ORG = SANDBOX_ORGANIZATION_ID
START = datetime(2026, 3, 2, 10, 0, 5, tzinfo=UTC)




class Zoho:
    """A tiny client of the simulator: token, org id and header on every call."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=10)
        self.token = ""

    def refresh(self, **over: str) -> httpx.Response:
        params = {"refresh_token": SANDBOX_REFRESH_TOKEN, "client_id": SANDBOX_CLIENT_ID,
                  "client_secret": SANDBOX_CLIENT_SECRET, "grant_type": "refresh_token", **over}
        answer = self.http.post(f"{self.url}{ACCOUNTS_PREFIX}/oauth/v2/token", params=params)
        if "access_token" in answer.json():
            self.token = answer.json()["access_token"]
        return answer

    def call(self, method: str, path: str, *, org: str | None = ORG, token: str | None = None,
             json: Any = None, **params: Any) -> httpx.Response:
        if org is not None:
            params["organization_id"] = org
        headers = {"Authorization": f"Zoho-oauthtoken {self.token if token is None else token}"}
        return self.http.request(method, f"{self.url}{API_PREFIX}{path}", params=params,
                                 headers=headers, json=json)

    def create(self, parent: str = PARENT, **fields: Any) -> httpx.Response:
        return self.call("POST", "/contacts/contactpersons",
                         json={"contact_id": parent, "first_name": "Will", **fields})


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def sim(clock: Clock) -> ZohoBooksSim:
    return seeded(persons=4, clock=clock)


@pytest.fixture
def serve_zoho(served_sim: Callable[[ZohoBooksSim], str]) -> Iterator[Callable[[ZohoBooksSim], Zoho]]:
    clients: list[Zoho] = []

    def start(sim: ZohoBooksSim) -> Zoho:
        client = Zoho(served_sim(sim))
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.http.close()


@pytest.fixture
def zoho(sim: ZohoBooksSim, serve_zoho: Callable[[ZohoBooksSim], Zoho]) -> Zoho:
    client = serve_zoho(sim)
    assert client.refresh().status_code == 200
    return client


# -- OAuth ---------------------------------------------------------------------------------


def test_token_grant_answers_zoho_shape_and_counts_as_login(sim: ZohoBooksSim, zoho: Zoho) -> None:
    answer = zoho.refresh()
    body = answer.json()
    assert answer.status_code == 200
    assert body["expires_in"] == 3600 and body["token_type"] == "Bearer"
    assert body["access_token"].startswith("1000.")
    assert body["api_domain"] == zoho.url
    assert zoho.call("GET", f"/contacts/{PARENT}/contactpersons").json()["code"] == 0
    assert sim.counters["login"] == 2 and sim.writes() == 0


def test_token_grant_in_a_form_body_works_too(zoho: Zoho) -> None:
    answer = zoho.http.post(f"{zoho.url}{ACCOUNTS_PREFIX}/oauth/v2/token", data={
        "refresh_token": SANDBOX_REFRESH_TOKEN, "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SANDBOX_CLIENT_SECRET, "grant_type": "refresh_token"})
    assert "access_token" in answer.json()


def test_wrong_refresh_token_or_client_gets_no_token(zoho: Zoho) -> None:
    assert zoho.refresh(refresh_token="1000.nope").json() == {"error": "invalid_code"}
    assert zoho.refresh(client_secret="nope").json() == {"error": "invalid_client"}


def test_eleventh_refresh_in_ten_minutes_is_refused_until_the_window_moves(
    sim: ZohoBooksSim, clock: Clock, serve_zoho: Callable[[ZohoBooksSim], Zoho]
) -> None:
    z = serve_zoho(sim)
    for _ in range(10):
        assert z.refresh().status_code == 200
        clock.advance(seconds=30)
    refused = z.refresh()
    assert refused.status_code == 400
    assert "too many requests" in refused.json()["error_description"]
    assert sim.counters["refresh_refused"] == 1
    clock.advance(minutes=5, seconds=31)  # the first token is now more than 10 minutes old
    assert z.refresh().status_code == 200


def test_token_expires_after_its_hour(sim: ZohoBooksSim, clock: Clock, zoho: Zoho) -> None:
    clock.advance(minutes=59)
    assert zoho.call("GET", f"/contacts/{PARENT}/contactpersons").status_code == 200
    clock.advance(minutes=1)
    answer = zoho.call("GET", f"/contacts/{PARENT}/contactpersons")
    assert answer.status_code == 401
    assert answer.json()["code"] == CODE_UNAUTHORIZED
    assert answer.json()["message"].startswith("You are not authorized")
    zoho.refresh()
    assert zoho.call("GET", f"/contacts/{PARENT}/contactpersons").status_code == 200


def test_default_clock_is_the_wall_clock_so_freezegun_moves_expiry() -> None:
    """Without an injected clock the simulator reads the (frozen) wall clock in UTC.

    Checked on the simulator's state, not over HTTP: a frozen clock would also
    freeze the server thread's event loop.
    """
    with freeze_time("2026-03-02 10:00:00") as frozen:
        sim = ZohoBooksSim()
        assert sim._now() == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
        sim.tokens["t"] = sim._now() + timedelta(seconds=3600)
        frozen.tick(timedelta(seconds=3599))
        assert sim.tokens["t"] > sim._now()
        frozen.tick(timedelta(seconds=1))
        assert sim.tokens["t"] <= sim._now()


def test_wrong_scheme_or_unknown_token_is_refused_with_code_57(zoho: Zoho) -> None:
    good = zoho.token
    answer = zoho.call("GET", f"/contacts/{PARENT}/contactpersons", token="1000.nope")
    assert answer.status_code == 401 and answer.json()["code"] == CODE_UNAUTHORIZED
    bare = zoho.http.get(f"{zoho.url}{API_PREFIX}/contacts/{PARENT}/contactpersons",
                         params={"organization_id": ORG})
    assert bare.status_code == 401 and bare.json()["code"] == CODE_UNAUTHORIZED
    bearer = zoho.http.get(f"{zoho.url}{API_PREFIX}/contacts/{PARENT}/contactpersons",
                           params={"organization_id": ORG},
                           headers={"Authorization": f"Bearer {good}"})
    assert bearer.status_code == 401


def test_expire_tokens_fault_kills_live_tokens(sim: ZohoBooksSim, zoho: Zoho) -> None:
    httpx.post(f"{zoho.url}/_admin/zoho", json={"expire_tokens": True})
    assert zoho.call("GET", f"/contacts/{PARENT}/contactpersons").status_code == 401
    sim.counters.clear()
    zoho.refresh()
    assert zoho.call("GET", f"/contacts/{PARENT}/contactpersons").status_code == 200


# -- organization_id ---------------------------------------------------------------------------


def test_organization_id_is_required_and_must_be_the_users(zoho: Zoho) -> None:
    missing = zoho.call("GET", f"/contacts/{PARENT}/contactpersons", org=None)
    assert missing.status_code == 400 and missing.json()["code"] != 0
    assert "CompanyID" in missing.json()["message"]
    wrong = zoho.call("POST", "/contacts/contactpersons", org="999",
                      json={"contact_id": PARENT, "first_name": "X"})
    assert wrong.status_code == 401 and wrong.json()["code"] != 0


def test_parent_of_another_organization_is_not_found(
    clock: Clock, serve_zoho: Callable[[ZohoBooksSim], Zoho]
) -> None:
    sim = ZohoBooksSim(organizations={"1": ["11"], "2": ["22"]}, clock=clock)
    z = serve_zoho(sim)
    z.refresh()
    assert z.call("GET", "/contacts/22/contactpersons", org="2").status_code == 200
    answer = z.call("GET", "/contacts/22/contactpersons", org="1")
    assert answer.status_code == 404 and answer.json()["code"] == CODE_NOT_FOUND


# -- reads --------------------------------------------------------------------------------------


def test_paging_with_has_more_page(sim: ZohoBooksSim, zoho: Zoho) -> None:
    for i in range(3):
        sim.admin_create(PARENT, {"first_name": f"Extra{i}"})
    seen: list[str] = []
    page = 1
    while True:
        body = zoho.call("GET", f"/contacts/{PARENT}/contactpersons", page=page,
                         per_page=2).json()
        assert body["code"] == 0 and body["message"] == "success"
        assert body["page_context"]["page"] == page and body["page_context"]["per_page"] == 2
        assert all("contact_id" not in p for p in body["contact_persons"])
        assert all("last_modified_time" not in p for p in body["contact_persons"])
        seen += [p["contact_person_id"] for p in body["contact_persons"]]
        if not body["page_context"]["has_more_page"]:
            break
        page += 1
    mine = [r["id"] for r in sim.admin_dump() if r["org"] == PARENT]
    assert page == 3 and seen == sorted(mine, key=int) and len(seen) == 5


def test_per_page_is_capped_at_200(zoho: Zoho) -> None:
    body = zoho.call("GET", f"/contacts/{PARENT}/contactpersons", per_page=500).json()
    assert body["page_context"]["per_page"] == 200


def test_parent_list_carries_last_modified_time_with_org_offset(
    sim: ZohoBooksSim, clock: Clock, zoho: Zoho
) -> None:
    clock.advance(minutes=30)
    sim.admin_touch_parent(OTHER_PARENT)
    body = zoho.call("GET", "/contacts", sort_column="last_modified_time", sort_order="D").json()
    assert [c["contact_id"] for c in body["contacts"]] == [OTHER_PARENT, PARENT]
    stamp = body["contacts"][0]["last_modified_time"]
    assert stamp == "2026-03-02T16:00:05+0530"
    assert datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z") == clock.now


def test_person_edit_does_not_bump_the_parent(sim: ZohoBooksSim, clock: Clock, zoho: Zoho) -> None:
    before = zoho.call("GET", f"/contacts/{PARENT}").json()["contact"]["last_modified_time"]
    clock.advance(minutes=5)
    pid = zoho.create().json()["contact_person"]["contact_person_id"]
    zoho.call("PUT", f"/contacts/contactpersons/{pid}",
              json={"contact_id": PARENT, "first_name": "Bill"})
    after = zoho.call("GET", f"/contacts/{PARENT}").json()["contact"]["last_modified_time"]
    assert before == after


# -- writes -------------------------------------------------------------------------------------


def test_create_answers_201_with_the_person_object(sim: ZohoBooksSim, zoho: Zoho) -> None:
    answer = zoho.create(last_name="Smith", email="will@example.com", designation="Buyer",
                         department="Purchasing", salutation="Mr.", phone="+1-925-921-9201")
    assert answer.status_code == 201
    body = answer.json()
    assert body["code"] == 0
    person = body["contact_person"]
    assert isinstance(person, dict)
    assert person["contact_id"] == PARENT and isinstance(person["contact_person_id"], str)
    row = {r["id"]: r for r in sim.admin_dump()}[person["contact_person_id"]]
    assert row["org"] == PARENT and row["job_title"] == "Buyer"
    assert row["department"] == "Purchasing" and row["salutation"] == "Mr."
    assert sim.writes() == 1


def test_first_person_of_a_parent_becomes_primary(clock: Clock,
                                                  serve_zoho: Callable[[ZohoBooksSim], Zoho]) -> None:
    z = serve_zoho(ZohoBooksSim(clock=clock))
    z.refresh()
    first = z.create().json()["contact_person"]
    second = z.create(first_name="Peter").json()["contact_person"]
    assert first["is_primary_contact"] is True and second["is_primary_contact"] is False
    z.call("POST", f"/contacts/contactpersons/{second['contact_person_id']}/primary")
    listed = z.call("GET", f"/contacts/{PARENT}/contactpersons").json()["contact_persons"]
    assert [p["is_primary_contact"] for p in listed] == [False, True]


def test_person_as_array_switch(sim: ZohoBooksSim, zoho: Zoho) -> None:
    httpx.post(f"{zoho.url}/_admin/zoho", json={"person_as_array": True})
    created = zoho.create().json()["contact_person"]
    assert isinstance(created, list) and len(created) == 1
    pid = created[0]["contact_person_id"]
    updated = zoho.call("PUT", f"/contacts/contactpersons/{pid}",
                        json={"contact_id": PARENT, "first_name": "Bill"}).json()
    assert isinstance(updated["contact_person"], list)
    assert updated["contact_person"][0]["first_name"] == "Bill"


def test_update_is_partial_and_empty_clears(sim: ZohoBooksSim, zoho: Zoho) -> None:
    pid = sim.admin_create(PARENT, {"first_name": "Ada", "last_name": "Lovelace",
                                    "email": "ada@example.com", "mobile": "+44 7700"})
    answer = zoho.call("PUT", f"/contacts/contactpersons/{pid}",
                       json={"contact_id": PARENT, "first_name": "Ada", "mobile": ""})
    assert answer.status_code == 200 and answer.json()["code"] == 0
    row = {r["id"]: r for r in sim.admin_dump()}[pid]
    assert row["mobile"] == "" and row["email"] == "ada@example.com"
    assert row["last_name"] == "Lovelace"


def test_update_needs_contact_id_and_first_name_and_cannot_move(sim: ZohoBooksSim,
                                                               zoho: Zoho) -> None:
    pid = sim.admin_create(PARENT, {"first_name": "Ada"})
    for body in ({"first_name": "Ada"}, {"contact_id": PARENT},
                 {"contact_id": OTHER_PARENT, "first_name": "Ada"}):
        answer = zoho.call("PUT", f"/contacts/contactpersons/{pid}", json=body)
        assert answer.status_code == 400 and answer.json()["code"] != 0, body
    assert {r["id"]: r for r in sim.admin_dump()}[pid]["org"] == PARENT


def test_delete_then_gone_is_404_with_code_1002(sim: ZohoBooksSim, zoho: Zoho) -> None:
    pid = sim.admin_create(PARENT, {"first_name": "Ada"})
    answer = zoho.call("DELETE", f"/contacts/contactpersons/{pid}")
    assert answer.status_code == 200
    assert answer.json() == {"code": 0, "message": "The contact person has been deleted."}
    assert pid not in {r["id"] for r in sim.admin_dump()}
    again = zoho.call("DELETE", f"/contacts/contactpersons/{pid}")
    assert again.status_code == 404 and again.json()["code"] == CODE_NOT_FOUND
    update = zoho.call("PUT", f"/contacts/contactpersons/{pid}",
                       json={"contact_id": PARENT, "first_name": "Ada"})
    assert update.status_code == 404


def test_get_one_person_carries_its_parent(sim: ZohoBooksSim, zoho: Zoho) -> None:
    pid = sim.admin_create(PARENT, {"first_name": "Ada"})
    body = zoho.call("GET", f"/contacts/{PARENT}/contactpersons/{pid}").json()
    assert body["contact_person"]["contact_id"] == PARENT
    assert zoho.call("GET", f"/contacts/{OTHER_PARENT}/contactpersons/{pid}").status_code == 404


def test_first_name_is_required_on_create(sim: ZohoBooksSim, zoho: Zoho) -> None:
    before = sim.admin_dump()
    for body in ({"contact_id": PARENT, "last_name": "Only"},
                 {"contact_id": PARENT, "first_name": "  "},
                 {"first_name": "NoParent"}):
        answer = zoho.call("POST", "/contacts/contactpersons", json=body)
        assert answer.status_code == 400, body
        assert answer.json()["code"] != 0 and answer.json()["message"]
    assert sim.admin_dump() == before


@pytest.mark.parametrize(("name", "limit"), [
    ("first_name", 100), ("last_name", 100), ("email", 100), ("phone", 50), ("mobile", 50),
    ("designation", 50), ("department", 50), ("salutation", 25),
])
def test_length_limits(sim: ZohoBooksSim, zoho: Zoho, name: str, limit: int) -> None:
    assert zoho.create(**{name: "x" * limit}).status_code == 201
    refused = zoho.create(**{name: "x" * (limit + 1)})
    assert refused.status_code == 400 and refused.json()["code"] != 0
    assert name in refused.json()["message"]


def test_not_json_body_is_refused(zoho: Zoho) -> None:
    answer = zoho.http.post(f"{zoho.url}{API_PREFIX}/contacts/contactpersons",
                            params={"organization_id": ORG}, content=b"not json",
                            headers={"Authorization": f"Zoho-oauthtoken {zoho.token}"})
    assert answer.status_code == 400 and answer.json()["code"] != 0


def test_soft_error_is_http_200_with_nonzero_code(sim: ZohoBooksSim, zoho: Zoho) -> None:
    httpx.post(f"{zoho.url}/_admin/zoho", json={"soft_error_next": 1})
    before = sim.admin_dump()
    answer = zoho.create()
    assert answer.status_code == 200 and answer.json()["code"] != 0
    assert sim.admin_dump() == before
    assert zoho.create().status_code == 201


def test_unknown_route_answers_zoho_body(zoho: Zoho) -> None:
    answer = zoho.call("GET", "/nowhere")
    assert answer.status_code == 404 and answer.json()["code"] != 0


def test_parent_put_drops_the_persons_left_out(sim: ZohoBooksSim, zoho: Zoho) -> None:
    listed = zoho.call("GET", f"/contacts/{PARENT}/contactpersons").json()["contact_persons"]
    keep = listed[0]
    answer = zoho.call("PUT", f"/contacts/{PARENT}", json={"contact_persons": [
        {"contact_person_id": keep["contact_person_id"], "first_name": keep["first_name"]}]})
    assert answer.json()["code"] == 0
    left = [r for r in sim.admin_dump() if r["org"] == PARENT]
    assert [r["id"] for r in left] == [keep["contact_person_id"]]
    assert left[0]["email"] == ""  # the whole person is replaced by what was sent
    assert len(listed) > 1


# -- rate limits --------------------------------------------------------------------------------


def test_per_minute_limit_is_429_without_retry_after(
    clock: Clock, serve_zoho: Callable[[ZohoBooksSim], Zoho]
) -> None:
    sim = seeded(persons=2, clock=clock, per_minute=5)
    z = serve_zoho(sim)
    z.refresh()
    for _ in range(5):
        assert z.call("GET", f"/contacts/{PARENT}/contactpersons").status_code == 200
    answer = z.call("GET", f"/contacts/{PARENT}/contactpersons")
    assert answer.status_code == 429 and "retry-after" not in answer.headers
    assert answer.json() == {"code": CODE_MINUTE_LIMIT, "message": MINUTE_LIMIT_MESSAGE}
    clock.now = clock.now.replace(second=0) + timedelta(minutes=1)
    assert z.call("GET", f"/contacts/{PARENT}/contactpersons").status_code == 200


def test_per_minute_limit_is_per_organization(
    clock: Clock, serve_zoho: Callable[[ZohoBooksSim], Zoho]
) -> None:
    sim = ZohoBooksSim(organizations={"1": ["11"], "2": ["22"]}, clock=clock, per_minute=2)
    z = serve_zoho(sim)
    z.refresh()
    for _ in range(2):
        z.call("GET", "/contacts/11/contactpersons", org="1")
    assert z.call("GET", "/contacts/11/contactpersons", org="1").status_code == 429
    assert z.call("GET", "/contacts/22/contactpersons", org="2").status_code == 200


def test_daily_cap_is_429_naming_the_day_until_midnight_utc(
    clock: Clock, serve_zoho: Callable[[ZohoBooksSim], Zoho]
) -> None:
    sim = seeded(persons=2, clock=clock, daily_limit=3)
    z = serve_zoho(sim)
    z.refresh()
    for _ in range(3):
        assert z.call("GET", f"/contacts/{PARENT}/contactpersons").status_code == 200
    clock.advance(minutes=2)  # a new minute does not help
    answer = z.call("GET", f"/contacts/{PARENT}/contactpersons")
    assert answer.status_code == 429 and "retry-after" not in answer.headers
    assert answer.json() == {"code": CODE_DAILY_LIMIT, "message": DAILY_LIMIT_MESSAGE}
    assert "for the day" in answer.json()["message"]
    assert CODE_DAILY_LIMIT != CODE_MINUTE_LIMIT
    clock.now = datetime(2026, 3, 3, 0, 0, 1, tzinfo=UTC)
    z.refresh()
    assert z.call("GET", f"/contacts/{PARENT}/contactpersons").status_code == 200


def test_daily_cap_defaults_to_1000_and_can_be_lowered_by_admin(zoho: Zoho,
                                                                sim: ZohoBooksSim) -> None:
    assert sim.daily_limit == 1000
    httpx.post(f"{zoho.url}/_admin/zoho", json={"daily_limit": 1})
    assert zoho.call("GET", f"/contacts/{PARENT}/contactpersons").status_code == 200
    assert zoho.call("GET", f"/contacts/{PARENT}/contactpersons").status_code == 429


# -- shared faults and admin --------------------------------------------------------------------


def test_throttle_fault_answers_zoho_429(sim: ZohoBooksSim, zoho: Zoho) -> None:
    httpx.post(f"{zoho.url}/_admin/faults", json={"throttle_next": 1})
    answer = zoho.call("GET", f"/contacts/{PARENT}/contactpersons")
    assert answer.status_code == 429 and answer.json()["code"] == CODE_MINUTE_LIMIT
    assert zoho.call("GET", f"/contacts/{PARENT}/contactpersons").status_code == 200


def test_error_and_drop_faults(sim: ZohoBooksSim, zoho: Zoho) -> None:
    httpx.post(f"{zoho.url}/_admin/faults", json={"drop_next": 1})
    with pytest.raises(httpx.HTTPError):
        zoho.call("GET", f"/contacts/{PARENT}/contactpersons")
    httpx.post(f"{zoho.url}/_admin/faults", json={"error_next": 1})
    assert zoho.call("GET", f"/contacts/{PARENT}/contactpersons").status_code == 500
    assert zoho.call("GET", f"/contacts/{PARENT}/contactpersons").status_code == 200


def test_admin_round_trip_in_canonical_fields(sim: ZohoBooksSim, zoho: Zoho) -> None:
    fields = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
              "phone": "+44 20", "mobile": "+44 77", "job_title": "CFO",
              "department": "Finance", "salutation": "Ms."}
    rid = httpx.post(f"{zoho.url}/_admin/records",
                     json={"org": "460000000099999", "fields": {**fields, "fax": "1"}}).json()["id"]
    state = {r["id"]: r for r in httpx.get(f"{zoho.url}/_admin/state").json()["records"]}
    assert state[rid] == {"id": rid, "org": "460000000099999", **fields}
    served = zoho.call("GET", "/contacts/460000000099999/contactpersons").json()
    person = served["contact_persons"][0]
    assert person["designation"] == "CFO" and person["is_primary_contact"] is True
    httpx.patch(f"{zoho.url}/_admin/records/{rid}", json={"fields": {"job_title": ""}})
    assert {r["id"]: r for r in sim.admin_dump()}[rid]["job_title"] == ""
    httpx.delete(f"{zoho.url}/_admin/records/{rid}")
    assert rid not in {r["id"] for r in sim.admin_dump()}
    counters = httpx.get(f"{zoho.url}/_admin/counters").json()
    assert counters["writes"] == 0 and counters["GET"] == 1


def test_config_for_validates_as_zoho_books_config() -> None:
    cfg = ZohoBooksConfig.model_validate(config_for("http://127.0.0.1:9"))
    assert cfg.base_url == f"http://127.0.0.1:9{API_PREFIX}"
    assert cfg.accounts_url == f"http://127.0.0.1:9{ACCOUNTS_PREFIX}"


# -- the sandbox registration -------------------------------------------------------------------


def test_sandbox_serves_zoho_and_its_config_now_that_the_connector_exists(
    tmp_path: Any,
) -> None:
    from syncd.config import load_settings
    from syncd.sandbox import serve as sandbox

    assert "zoho_books" in sandbox.build_sandbox(6, synced_only=True).sims  # the demo's sandbox
    box = sandbox.build_sandbox(6)
    box.start()
    try:
        zoho = box.sims["zoho_books"]
        assert {r["org"] for r in zoho.admin_dump()} == {"460000000026049", "460000000026050"}
        written = tmp_path / "sandbox.toml"
        sandbox.write_config(box.config("sqlite:///x.db"), written)
        settings = load_settings(written)
        assert "zoho_books" in settings.systems and "harvest" in settings.systems
        doc = box.config("sqlite:///x.db")
        url = box.handles["zoho_books"].url
        assert doc["systems"]["zoho_books"]["accounts_url"] == url + ACCOUNTS_PREFIX
        assert doc["organizations"]["acme"]["zoho_books"] == "460000000026049"
        ZohoBooksConfig.model_validate(doc["systems"]["zoho_books"])
    finally:
        box.stop()
