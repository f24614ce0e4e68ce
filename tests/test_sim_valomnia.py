"""The Valomnia simulator over real HTTP on 127.0.0.1: what a connector will meet.

No connector exists yet, so these tests speak the wire protocol themselves
(httpx, form bodies, the JSESSIONID cookie) and check the simulator keeps the
readings of ``systems/valomnia.md`` and ``DECISIONS.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from syncd.sandbox.valomnia import (
    MAX_LENGTH,
    MAX_PAGE_SIZE,
    SANDBOX_PASSWORD,
    SANDBOX_USER,
    ValomniaSim,
    seeded,
)
from tests.world import Clock

API = "/api/v1.0/contacts"
ORG = "3229"
OTHER = "3230"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LOGIN = {"j_username": SANDBOX_USER, "j_password": SANDBOX_PASSWORD, "ajax": "true"}




Serve = Callable[[ValomniaSim], str]


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def sim(clock: Clock) -> ValomniaSim:
    return ValomniaSim(clock=clock)


@pytest.fixture
def url(sim: ValomniaSim, served_sim: Serve) -> str:
    return served_sim(sim)


def client(url: str) -> httpx.Client:
    """A client that never follows redirects and keeps no cookies of its own."""
    return httpx.Client(base_url=url, timeout=10, follow_redirects=False)


def login(http: httpx.Client) -> str:
    answer = http.post("/j_spring_security_check", data=LOGIN)
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]
    assert isinstance(token, str) and token
    return token


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with client(url) as c:
        token = login(c)
        c.cookies.clear()
        c.headers["Cookie"] = f"JSESSIONID={token}"
        yield c


def create(http: httpx.Client, **form: str) -> dict[str, Any]:
    body = {"firstName": "Ada", "lastName": "Lovelace", "customerId": ORG, **form}
    answer = http.post(API, data=body)
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


def refused(answer: httpx.Response, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] == code
    assert isinstance(body["error_description"], str) and body["error_description"]
    return str(body["error_description"])


# -- login and sessions ----------------------------------------------------------------------

def test_direct_login_answers_token_and_cookie_and_counts_as_login(
    sim: ValomniaSim, url: str
) -> None:
    with client(url) as c:
        answer = c.post("/j_spring_security_check", data=LOGIN)
        assert answer.status_code == 200
        body = answer.json()
        assert body["success"] is True
        assert answer.cookies["JSESSIONID"] == body["token"]
        assert c.get(API, headers={"Cookie": f"JSESSIONID={body['token']}"}).status_code == 200
    assert sim.logins[0] == LOGIN
    assert sim.counters["login"] == 1 and sim.writes() == 0


def test_redirect_login_hands_the_token_on_ajax_success(served_sim: Serve) -> None:
    sim = ValomniaSim(login_redirect=True)
    url = served_sim(sim)
    with client(url) as c:
        first = c.post("/j_spring_security_check", data=LOGIN)
        assert first.status_code == 302
        assert first.headers["location"].endswith("/login/ajaxSuccess")
        cookie = first.cookies["JSESSIONID"]
        follow = c.get(first.headers["location"], headers={"Cookie": f"JSESSIONID={cookie}"})
        assert follow.status_code == 200
        token = follow.json()["token"]
        assert token == cookie
        assert c.get(API, headers={"Cookie": f"JSESSIONID={token}"}).status_code == 200
        # Without the cookie the redirect target has nothing to hand out.
        c.cookies.clear()
        assert c.get("/login/ajaxSuccess").status_code == 401
    assert sim.writes() == 0


def test_bad_credentials_give_no_session_either_way(served_sim: Serve) -> None:
    for redirect in (False, True):
        url = served_sim(ValomniaSim(login_redirect=redirect))
        with httpx.Client(base_url=url, timeout=10, follow_redirects=True) as c:
            answer = c.post("/j_spring_security_check", data={**LOGIN, "j_password": "nope"})
            assert answer.status_code == 401
            assert answer.json()["success"] is False and "token" not in answer.json()
            assert "JSESSIONID" not in c.cookies


def test_login_without_ajax_is_refused(url: str) -> None:
    with client(url) as c:
        answer = c.post("/j_spring_security_check",
                        data={"j_username": SANDBOX_USER, "j_password": SANDBOX_PASSWORD})
        refused(answer, 400, "missing_param")


def test_api_without_session_is_401(sim: ValomniaSim, url: str) -> None:
    with client(url) as c:
        refused(c.get(API), 401, "unauthorized")
        refused(c.get(API, headers={"Cookie": "JSESSIONID=forged"}), 401, "unauthorized")
    assert sim.counters["unauthorized"] == 2


def test_session_dies_after_idle_lifetime_and_use_keeps_it_alive(
    served_sim: Serve, clock: Clock
) -> None:
    sim = ValomniaSim(clock=clock, session_ttl=60)
    url = served_sim(sim)
    with client(url) as c:
        token = login(c)
        c.cookies.clear()
        cookie = {"Cookie": f"JSESSIONID={token}"}
        clock.now = T0 + timedelta(seconds=50)
        assert c.get(API, headers=cookie).status_code == 200
        clock.now = T0 + timedelta(seconds=100)  # 50 s after the last use: still alive
        assert c.get(API, headers=cookie).status_code == 200
        clock.now = T0 + timedelta(seconds=161)
        refused(c.get(API, headers=cookie), 401, "unauthorized")
        # Logging in again works on the same clock.
        assert c.get(API, headers={"Cookie": f"JSESSIONID={login(c)}"}).status_code == 200


def test_admin_expires_every_session_now(http: httpx.Client) -> None:
    assert http.get(API).status_code == 200
    assert http.post("/_admin/sessions/expire").status_code == 200
    refused(http.get(API), 401, "unauthorized")


# -- the list ----------------------------------------------------------------------------------

def test_paging_with_max_and_offset_and_the_envelope(served_sim: Serve) -> None:
    sim = seeded(7)
    url = served_sim(sim)
    with client(url) as c:
        c.headers["Cookie"] = f"JSESSIONID={login(c)}"
        c.cookies.clear()
        seen: list[int] = []
        offset = 0
        while True:
            page = c.get(API, params={"max": 3, "offset": offset}).json()
            assert page["paging"]["total"] == 7 and page["paging"]["max"] == 3
            assert page["paging"]["offset"] == offset
            assert (page["paging"]["previous"] is None) == (offset == 0)
            seen += [row["id"] for row in page["data"]]
            if page["paging"]["next"] is None:
                break
            assert "offset=" + str(offset + 3) in page["paging"]["next"]
            offset += 3
        assert seen == sorted(int(r["id"]) for r in sim.admin_dump())
        # max above the ceiling is served at the ceiling, and said so.
        assert c.get(API, params={"max": 500}).json()["paging"]["max"] == MAX_PAGE_SIZE


def test_default_page_is_the_documented_100(served_sim: Serve) -> None:
    url = served_sim(seeded(MAX_PAGE_SIZE + 5))
    with client(url) as c:
        c.headers["Cookie"] = f"JSESSIONID={login(c)}"
        c.cookies.clear()
        page = c.get(API).json()
        assert len(page["data"]) == MAX_PAGE_SIZE and page["paging"]["total"] == MAX_PAGE_SIZE + 5


def test_last_updated_gte_with_many_records_in_one_second(
    sim: ValomniaSim, http: httpx.Client, clock: Clock
) -> None:
    clock.now = T0
    old = sim.admin_create(ORG, {"first_name": "Old", "last_name": "One"})
    clock.now = T0 + timedelta(seconds=5, microseconds=100)
    same = [sim.admin_create(ORG, {"first_name": f"P{i}", "last_name": "Same"}) for i in range(7)]
    clock.now = T0 + timedelta(seconds=5, microseconds=900_000)
    sim.admin_update(old, {"phone": "+1 555"})  # same second again, touched last
    since = "2024-05-01T12:00:05Z"
    rows: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = http.get(API, params={"max": 3, "offset": offset, "lastUpdated_gte": since,
                                     "sort": "lastUpdated", "order": "asc"}).json()
        rows += page["data"]
        offset += len(page["data"])
        if offset >= page["paging"]["total"]:
            break
    assert {r["lastUpdated"] for r in rows} == {since}  # second grain, no fraction
    assert [str(r["id"]) for r in rows] == sorted([*same, old], key=int)
    assert len({r["id"] for r in rows}) == 8  # stable order: nothing repeated or skipped
    strict = http.get(API, params={"lastUpdated_gt": since}).json()
    assert strict["data"] == []
    earlier = http.get(API, params={"lastUpdated_gte": "2024-05-01T12:00:00Z",
                                    "sort": "lastUpdated", "order": "desc"}).json()
    assert earlier["paging"]["total"] == 8
    assert earlier["data"][0]["lastUpdated"] >= earlier["data"][-1]["lastUpdated"]


def test_date_created_bounds_and_customer_reference_filter(
    sim: ValomniaSim, http: httpx.Client, clock: Clock
) -> None:
    a = sim.admin_create(ORG, {"first_name": "A", "last_name": "X"})
    clock.now = T0 + timedelta(minutes=1)
    b = sim.admin_create(OTHER, {"first_name": "B", "last_name": "X"})
    rows = http.get(API, params={"dateCreated_lt": "2024-05-01T12:01:00Z"}).json()["data"]
    assert [str(r["id"]) for r in rows] == [a]
    by_ref = http.get(API, params={"customerReference": f"C{OTHER}"}).json()["data"]
    assert [str(r["id"]) for r in by_ref] == [b]
    assert by_ref[0]["customer"]["id"] == int(OTHER)
    assert http.get(API, params={"customerReference": OTHER}).json()["data"] == []  # by reference


@pytest.mark.parametrize("value", ["2016-08-1Z", "2024-05-01T12:00:00", "2024-05-01 12:00:00Z",
                                   "2024-05-01T12:00:00.123Z", "2024-05-01T12:00:00+00:00",
                                   "2024-13-01T12:00:00Z"])
def test_a_date_not_exactly_iso_8601_z_is_invalid_datetime_format(
    http: httpx.Client, value: str
) -> None:
    text = refused(http.get(API, params={"lastUpdated_gte": value}), 400,
                   "invalid_datetime_format")
    assert value in text


def test_unknown_query_parameters_are_invalid_param(http: httpx.Client) -> None:
    text = refused(http.get(API, params={"dateCreated_gta": "2024-05-01T12:00:00Z"}), 400,
                   "invalid_param")
    assert "dateCreated_gta" in text
    refused(http.get(API, params={"updated_since": "x", "max": 1}), 400, "invalid_param")
    refused(http.get(API, params={"order": "up"}), 400, "invalid_param")
    refused(http.get(API, params={"sort": "nope"}), 400, "invalid_param")
    refused(http.get(API, params={"max": "ten"}), 400, "invalid_param_type")


# -- writes --------------------------------------------------------------------------------------

def test_form_encoded_create_answers_201_with_the_contact(
    sim: ValomniaSim, http: httpx.Client
) -> None:
    body = create(http, email="helene@example.com", fonction="Buyer", phone="+33 1",
                  mobile="+33 6", fax="+33 9", country="FR", firstName="Hélène",
                  lastName="Müller")
    assert body["firstName"] == "Hélène" and body["lastName"] == "Müller"
    assert body["fonction"] == "Buyer" and body["country"] == "FR"
    assert body["customer"]["id"] == int(ORG) and body["customerReference"] == f"C{ORG}"
    assert body["organization"] == "entity1" and body["photo"] is None
    assert body["comment"] == "" and body["isDecisionMaker"] is False
    assert body["dateCreated"] == body["lastUpdated"] == "2024-05-01T12:00:00Z"
    assert http.get(f"{API}/{body['id']}").json() == body
    assert sim.admin_dump() == [{
        "id": str(body["id"]), "org": ORG, "first_name": "Hélène", "last_name": "Müller",
        "email": "helene@example.com", "phone": "+33 1", "mobile": "+33 6", "fax": "+33 9",
        "job_title": "Buyer",
    }]
    posted = [e for e in sim.log if e["method"] == "POST"]
    assert posted[0]["content_type"].startswith("application/x-www-form-urlencoded")
    assert sim.writes() == 1


def test_create_by_customer_reference_with_use_external_id(http: httpx.Client) -> None:
    body = create(http, customerId=f"C{OTHER}", useExternalId="true")
    assert body["customer"]["id"] == int(OTHER)


@pytest.mark.parametrize("missing", ["firstName", "lastName", "customerId"])
def test_create_without_a_required_field_is_missing_param(
    sim: ValomniaSim, http: httpx.Client, missing: str
) -> None:
    form = {"firstName": "Ada", "lastName": "Lovelace", "customerId": ORG}
    del form[missing]
    text = refused(http.post(API, data=form), 400, "missing_param")
    assert missing in text
    assert sim.contacts == {}


def test_a_json_body_is_not_a_form(sim: ValomniaSim, http: httpx.Client) -> None:
    answer = http.post(API, json={"firstName": "Ada", "lastName": "L", "customerId": ORG})
    refused(answer, 400, "missing_param")
    assert sim.contacts == {}


def test_create_refuses_fields_not_offered_and_unknown_customers(http: httpx.Client) -> None:
    base = {"firstName": "Ada", "lastName": "Lovelace", "customerId": ORG}
    assert "comment" in refused(http.post(API, data={**base, "comment": "x"}), 400,
                                "invalid_param")
    refused(http.post(API, data={**base, "customerId": "999999"}), 400, "invalid_param")
    refused(http.post(API, data={**base, "customerId": "abc"}), 400, "invalid_param_type")


def test_strings_over_255_are_save_failed_and_255_is_fine(
    sim: ValomniaSim, http: httpx.Client
) -> None:
    text = refused(http.post(API, data={"firstName": "A", "lastName": "B", "customerId": ORG,
                                        "email": "x" * (MAX_LENGTH + 1)}), 400, "save_failed")
    assert "email" in text
    body = create(http, fonction="y" * MAX_LENGTH)
    refused(http.put(f"{API}/{body['id']}", data={"lastName": "z" * (MAX_LENGTH + 1)}), 400,
            "save_failed")
    assert sim.contacts[body["id"]].values["lastName"] == "Lovelace"


def test_update_is_partial_keeps_own_fields_and_moves_the_customer(
    sim: ValomniaSim, http: httpx.Client, clock: Clock
) -> None:
    rid = sim.admin_create(ORG, {"first_name": "Ada", "last_name": "Lovelace",
                                 "email": "ada@example.com", "phone": "+1"})
    sim.set_own_fields(rid, comment="VIP", city="Lyon", phone2="+2", is_decision_maker=True,
                       photo="/photoContact/ada.png")
    clock.now = T0 + timedelta(seconds=30)
    answer = http.put(f"{API}/{rid}", data={"phone": "", "fonction": "CFO", "customerId": OTHER})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["phone"] == "" and body["fonction"] == "CFO" and body["email"] == "ada@example.com"
    assert body["comment"] == "VIP" and body["city"] == "Lyon" and body["phone2"] == "+2"
    assert body["isDecisionMaker"] is True and body["photo"] == "/photoContact/ada.png"
    assert body["user"]["id"] == 4
    assert body["customer"]["id"] == int(OTHER)
    assert body["lastUpdated"] == "2024-05-01T12:00:30Z"
    assert body["dateCreated"] == "2024-05-01T12:00:00Z"
    assert sim.admin_dump()[0]["org"] == OTHER


def test_update_cannot_blank_a_required_field_and_unknown_is_404(
    sim: ValomniaSim, http: httpx.Client
) -> None:
    body = create(http)
    refused(http.put(f"{API}/{body['id']}", data={"firstName": ""}), 400, "missing_param")
    assert "777777" in refused(http.put(f"{API}/777777", data={"fonction": "x"}), 404,
                               "not_found")
    refused(http.get(f"{API}/777777"), 404, "not_found")
    refused(http.get(f"{API}/abc"), 400, "invalid_param_type")


def test_delete_answers_204_then_404(sim: ValomniaSim, http: httpx.Client) -> None:
    body = create(http)
    answer = http.delete(f"{API}/{body['id']}")
    assert answer.status_code == 204 and answer.content == b""
    assert sim.contacts == {}
    refused(http.delete(f"{API}/{body['id']}"), 404, "not_found")


def test_without_deletes_delete_is_405_and_nothing_goes(served_sim: Serve) -> None:
    sim = ValomniaSim(deletes=False)
    url = served_sim(sim)
    rid = sim.admin_create(ORG, {"first_name": "Ada", "last_name": "Lovelace"})
    with client(url) as c:
        c.headers["Cookie"] = f"JSESSIONID={login(c)}"
        c.cookies.clear()
        answer = c.delete(f"{API}/{rid}")
        refused(answer, 405, "method_not_allowed")
        assert "DELETE" not in answer.headers.get("allow", "")
        assert c.get(f"{API}/{rid}").status_code == 200
    assert len(sim.contacts) == 1


def test_unique_email_switch_answers_not_unique(served_sim: Serve) -> None:
    sim = ValomniaSim(unique_email=True)
    url = served_sim(sim)
    sim.admin_create(ORG, {"first_name": "Ada", "last_name": "L", "email": "ada@example.com"})
    with client(url) as c:
        c.headers["Cookie"] = f"JSESSIONID={login(c)}"
        c.cookies.clear()
        form = {"firstName": "Ada", "lastName": "Two", "customerId": ORG,
                "email": "ADA@example.com"}
        refused(c.post(API, data=form), 400, "not_unique")
        assert c.post(API, data={**form, "customerId": OTHER}).status_code == 201


# -- faults, throttle, admin --------------------------------------------------------------------

def test_injected_faults_throttle_error_and_drop(sim: ValomniaSim, http: httpx.Client) -> None:
    assert http.post("/_admin/faults", json={"throttle_next": 1}).status_code == 200
    refused(http.get(API), 429, "too_many_requests")
    http.post("/_admin/faults", json={"error_next": 1})
    assert http.get(API).status_code == 500
    http.post("/_admin/faults", json={"drop_next": 1})
    with pytest.raises(httpx.HTTPError):
        http.get(API)
    assert http.get(API).status_code == 200
    assert sim.counters["GET"] == 4 and sim.writes() == 0


def test_admin_round_trip_in_canonical_fields(sim: ValomniaSim, url: str) -> None:
    with client(url) as c:
        made = c.post("/_admin/records", json={"org": "4000", "fields": {
            "first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com",
            "job_title": "Admiral", "salutation": "Dr."}})
        assert made.status_code == 201
        rid = made.json()["id"]
        assert c.patch(f"/_admin/records/{rid}", json={"fields": {"mobile": "+1 555",
                                                                  "org": ORG}}).status_code == 200
        state = c.get("/_admin/state").json()["records"]
        assert state == [{"id": rid, "org": ORG, "first_name": "Grace", "last_name": "Hopper",
                          "email": "grace@example.com", "phone": "", "mobile": "+1 555",
                          "fax": "", "job_title": "Admiral"}]
        assert c.delete(f"/_admin/records/{rid}").status_code == 200
        assert c.get("/_admin/state").json()["records"] == []
        assert c.get("/_admin/counters").json()["total"] == 0  # the admin side is not counted


# -- `syncd sandbox` ------------------------------------------------------------------------------

def test_sandbox_serves_valomnia_and_configures_it_only_with_a_connector(tmp_path: Any) -> None:
    from syncd.config import load_settings
    from syncd.sandbox.serve import build_sandbox, has_connector, write_config

    box = build_sandbox(6)
    assert isinstance(box.sims["valomnia"], ValomniaSim)
    box.start()
    try:
        state = httpx.get(f"{box.handles['valomnia'].url}/_admin/state", timeout=5).json()
        assert {r["org"] for r in state["records"]} == {ORG, OTHER}
        doc = box.config(f"sqlite:///{tmp_path / 'x.db'}")
        wired = has_connector("valomnia")
        assert ("valomnia" in doc["systems"]) is wired
        assert all(("valomnia" in org) is wired for org in doc["organizations"].values())
        write_config(doc, tmp_path / "sandbox.toml")
        assert set(load_settings(tmp_path / "sandbox.toml").systems) == set(doc["systems"])
    finally:
        box.stop()
    assert ("valomnia" in build_sandbox(3, synced_only=True).sims) is wired
