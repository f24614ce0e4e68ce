"""The Lightening simulator over real HTTP on 127.0.0.1: the seed's shapes and DECISIONS' readings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from syncd.sandbox.lightening import (
    LIMITS,
    SANDBOX_TOKEN,
    LighteningSim,
    join_name,
    seeded,
    split_name,
)
from syncd.sandbox.serve import available_kinds, build_sandbox
from tests.world import Clock

START = datetime(2026, 3, 1, 9, 30, 15, tzinfo=UTC)
ADA = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
       "phone": "+44 20 7946 0000", "mobile": "+44 7700 900123", "fax": "",
       "job_title": "Buyer", "department": "Purchasing"}




@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def sim(clock: Clock) -> LighteningSim:
    return LighteningSim(customers=[1, 2], clock=clock)


@pytest.fixture
def http(sim: LighteningSim, served_sim: Callable[[LighteningSim], str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served_sim(sim), headers={"Authorization": SANDBOX_TOKEN},
                      timeout=5) as client:
        yield client


def entities(http: httpx.Client, *customers: int) -> list[dict[str, Any]]:
    answer = http.get("/contact", params=[("customer_id[]", str(c)) for c in customers])
    assert answer.status_code == 200
    body = answer.json()
    assert body["result"] is True
    return list(body["entities"])


def create(http: httpx.Client, **fields: Any) -> str:
    body = http.post("/contact", json={"customer_id": 1, "name": "Ada Lovelace", **fields}).json()
    assert body["result"] is True, body
    return str(body["id"])


# -- list ----------------------------------------------------------------------------------


def test_list_requires_the_customer_id_array(http: httpx.Client) -> None:
    missing = http.get("/contact")
    assert missing.status_code == 200
    assert missing.json() == {"errors": {"customer_id": "Field is required."}, "result": False}
    scalar = http.get("/contact", params={"customer_id": "1"}).json()
    assert scalar["result"] is False and "array" in scalar["errors"]["customer_id"]
    junk = http.get("/contact", params={"customer_id[]": "one"}).json()
    assert junk["result"] is False and "customer_id" in junk["errors"]


def test_list_returns_only_the_asked_customers_in_the_documented_shape(
    sim: LighteningSim, http: httpx.Client
) -> None:
    ada = sim.admin_create("1", ADA)
    sim.admin_create("2", {"first_name": "Grace", "last_name": "Hopper"})
    sim.admin_create("3", {"first_name": "Not", "last_name": "Asked"})
    rows = entities(http, 1)
    assert [r["id"] for r in rows] == [ada]
    row = rows[0]
    assert set(row) >= {
        "email", "tel", "tel1", "fax", "mobile", "role", "department", "milestone",
        "cost_center_id", "email2", "email3", "customer_portal_profile_id", "customer_name",
        "customer_account", "customer_id", "portal_profile", "name", "cost_center_name",
        "customer_custom_identifier", "portal_fullname", "portal_branch_id", "vendor_account",
        "vendor_id", "vendor_name", "vendor_type", "id", "created_at", "updated_at",
        "is_active", "portal_active", "locale", "customer_portal_profile_name",
    }
    assert "portal_password" not in row
    assert row["id"] == ada and isinstance(row["id"], str)
    assert row["customer_id"] == 1
    assert row["name"] == "Ada Lovelace"
    assert (row["tel"], row["role"], row["department"]) == ("+44 20 7946 0000", "Buyer",
                                                              "Purchasing")
    assert (row["is_active"], row["cost_center_id"], row["locale"]) == ("1", "0", "en_US")
    assert row["created_at"] == "2026-03-01 09:30:15"
    both = entities(http, 1, 2)
    assert {r["customer_id"] for r in both} == {1, 2}
    indexed = http.get("/contact", params={"customer_id[0]": "2"}).json()["entities"]
    assert [r["name"] for r in indexed] == ["Grace Hopper"]


def test_read_one_is_wrapped_in_entity(sim: LighteningSim, http: httpx.Client) -> None:
    rid = sim.admin_create("1", ADA)
    body = http.get(f"/contact/{rid}").json()
    assert body["result"] is True and body["entity"]["id"] == rid
    assert http.get("/contact/999999").json() == {"msg": "Entity not found.", "result": False}


# -- create --------------------------------------------------------------------------------


def test_create_answers_the_new_id_as_a_string_and_stores_under_the_customer(
    sim: LighteningSim, http: httpx.Client
) -> None:
    answer = http.post("/contact", json={
        "customer_id": 2, "name": "Ada Lovelace", "email": "ada@example.com",
        "tel": "+44 20 7946 0000", "role": "Buyer", "department": "Purchasing",
        "is_active": 1, "portal_active": "0", "milestone": True, "portal_password": "s3cret-pw",
    })
    assert answer.status_code == 200
    body = answer.json()
    assert body["msg"] == "Successfully created entity." and body["result"] is True
    assert isinstance(body["id"], str)
    [row] = entities(http, 2)
    assert row["id"] == body["id"]
    assert (row["is_active"], row["portal_active"], row["milestone"]) == ("1", "0", "1")
    assert sim.contacts[int(body["id"])].portal_password == "s3cret-pw"


def test_an_empty_or_form_body_is_nothing_sent(http: httpx.Client) -> None:
    nothing = {"error": "Nothing sent for request.", "result": False}
    assert http.post("/contact").json() == nothing
    assert http.post("/contact", json={}).json() == nothing
    # DECISIONS: bodies are JSON; a form body reaches a JSON-reading server as nothing.
    assert http.post("/contact", data={"customer_id": "1", "name": "Ada"}).json() == nothing


def test_create_refusals_name_every_field(sim: LighteningSim, http: httpx.Client) -> None:
    answer = http.post("/contact", json={
        "email": "not-an-email", "is_active": "yes", "create_method": "api",
        "customer_portal_profile_id": -1, "portal_password": "short", "locale": "english",
    })
    assert answer.status_code == 200
    body = answer.json()
    assert body["result"] is False
    errors = body["errors"]
    assert errors["name"] == "Field is required."
    assert errors["customer_id"] == "Field is required."
    assert errors["create_method"] == "Not allowed."
    assert set(errors) == {"name", "customer_id", "create_method", "email", "is_active",
                           "customer_portal_profile_id", "portal_password", "locale"}
    unknown = http.post("/contact", json={"customer_id": 99, "name": "Ada"}).json()
    assert unknown["result"] is False and "customer_id" in unknown["errors"]
    assert sim.contacts == {}


@pytest.mark.parametrize("field", sorted(LIMITS))
def test_limits_are_enforced_not_truncated(
    sim: LighteningSim, http: httpx.Client, field: str
) -> None:
    limit = LIMITS[field]
    fits = "a" * limit if field != "email" else "a" * (limit - 12) + "@example.com"
    rid = create(http, **{field: fits} if field != "name" else {"name": fits})
    assert len(sim.contacts[int(rid)].values[field]) == limit
    over = fits + "a"
    body = http.post("/contact", json={"customer_id": 1, "name": "Ada", field: over}).json()
    assert body["result"] is False
    assert list(body["errors"]) == [field]
    assert str(limit) in body["errors"][field]
    assert len(sim.contacts) == 1


# -- update --------------------------------------------------------------------------------


def test_update_needs_name_and_keeps_absent_fields(
    sim: LighteningSim, http: httpx.Client, clock: Clock
) -> None:
    rid = sim.admin_create("1", ADA)
    no_name = http.post(f"/contact/{rid}", json={"tel": "123"}).json()
    assert no_name == {"errors": {"name": "Field is required."}, "result": False}
    clock.now = START + timedelta(minutes=5)
    ok = http.post(f"/contact/{rid}", json={"name": "Ada King", "tel": "123"}).json()
    assert ok == {"msg": "Successfully updated entity.", "result": True}
    [row] = entities(http, 1)
    assert (row["name"], row["tel"]) == ("Ada King", "123")
    assert (row["email"], row["mobile"], row["role"]) == ("ada@example.com", "+44 7700 900123",
                                                          "Buyer")
    assert row["updated_at"] == "2026-03-01 09:35:15"
    assert row["created_at"] == "2026-03-01 09:30:15"


def test_update_refuses_over_long_values_and_changes_nothing(
    sim: LighteningSim, http: httpx.Client
) -> None:
    rid = sim.admin_create("1", ADA)
    body = http.post(f"/contact/{rid}", json={"name": "Ada", "role": "r" * 33}).json()
    assert body["result"] is False and list(body["errors"]) == ["role"]
    assert sim.admin_dump()[0]["first_name"] == "Ada"
    assert sim.admin_dump()[0]["job_title"] == "Buyer"


def test_update_with_customer_id_moves_the_contact(sim: LighteningSim, http: httpx.Client) -> None:
    rid = sim.admin_create("1", ADA)
    assert http.post(f"/contact/{rid}", json={"name": "Ada Lovelace", "customer_id": 2}).json()[
        "result"] is True
    assert entities(http, 1) == []
    assert [r["id"] for r in entities(http, 2)] == [rid]


def test_update_of_an_unknown_id_or_with_nothing_sent(
    sim: LighteningSim, http: httpx.Client
) -> None:
    rid = sim.admin_create("1", ADA)
    assert http.post("/contact/999999", json={"name": "X"}).json() == {
        "msg": "Entity not found.", "result": False}
    assert http.post(f"/contact/{rid}").json() == {
        "error": "Nothing sent for request.", "result": False}


# -- delete --------------------------------------------------------------------------------


def test_delete_is_a_get_whose_success_says_result_false(
    sim: LighteningSim, http: httpx.Client
) -> None:
    rid = sim.admin_create("1", ADA)
    gone = http.get(f"/contact/{rid}/delete")
    assert gone.status_code == 200
    assert gone.json() == {"msg": "Entity has been successfully deleted.", "result": False}
    assert sim.admin_dump() == []
    again = http.get(f"/contact/{rid}/delete")
    assert again.status_code == 200
    assert again.json() == {"msg": "Entity not found.", "result": False}
    assert sim.writes() == 2  # deletes are writes even though they are GETs


# -- auth ----------------------------------------------------------------------------------


def test_token_is_compared_verbatim(sim: LighteningSim, http: httpx.Client) -> None:
    sim.admin_create("1", ADA)
    for header in ({"Authorization": f"Bearer {SANDBOX_TOKEN}"}, {"Authorization": "nope"}):
        answer = http.get("/contact", params={"customer_id[]": "1"}, headers=header)
        assert answer.status_code == 401
        assert answer.json() == {"result": False, "error": "Unauthorized"}
    bare = httpx.get(str(http.base_url).rstrip("/") + "/contact", params={"customer_id[]": "1"}, timeout=5)
    assert bare.status_code == 401
    assert len(entities(http, 1)) == 1


def test_an_expired_token_is_refused_until_restored(sim: LighteningSim, http: httpx.Client) -> None:
    rid = sim.admin_create("1", ADA)
    assert http.post("/_admin/token", json={"expired": True}).json() == {"expired": True}
    assert http.get("/contact", params={"customer_id[]": "1"}).status_code == 401
    assert http.get(f"/contact/{rid}/delete").status_code == 401
    assert rid in {r["id"] for r in sim.admin_dump()}
    sim.expire_token(False)
    assert len(entities(http, 1)) == 1


def test_a_token_can_start_expired(served_sim: Callable[[LighteningSim], str]) -> None:
    url = served_sim(LighteningSim(token_expired=True))
    answer = httpx.get(f"{url}/contact", params={"customer_id[]": "1"},
                       headers={"Authorization": SANDBOX_TOKEN}, timeout=5)
    assert answer.status_code == 401


# -- faults --------------------------------------------------------------------------------


def test_injected_throttle_error_and_drop(sim: LighteningSim, http: httpx.Client) -> None:
    sim.admin_create("1", ADA)
    http.post("/_admin/faults", json={"throttle_next": 1})
    throttled = http.get("/contact", params={"customer_id[]": "1"})
    assert throttled.status_code == 429
    assert throttled.json()["result"] is False
    assert len(entities(http, 1)) == 1
    http.post("/_admin/faults", json={"error_next": 1})
    assert http.get("/contact", params={"customer_id[]": "1"}).status_code == 500
    http.post("/_admin/faults", json={"drop_next": 1})
    with pytest.raises(httpx.TransportError):
        http.get("/contact", params={"customer_id[]": "1"})
    assert len(entities(http, 1)) == 1


def test_a_dropped_delete_is_still_counted_as_a_write(
    sim: LighteningSim, http: httpx.Client
) -> None:
    rid = sim.admin_create("1", ADA)
    http.post("/_admin/faults", json={"drop_next": 1})
    with pytest.raises(httpx.TransportError):
        http.get(f"/contact/{rid}/delete")
    counters = http.get("/_admin/counters").json()
    assert counters["writes"] == 1 and counters["delete"] == 1


# -- admin side channel ----------------------------------------------------------------------


def test_admin_round_trip_in_canonical_fields(sim: LighteningSim, http: httpx.Client) -> None:
    created = http.post("/_admin/records", json={"org": "1", "fields": ADA})
    assert created.status_code == 201
    rid = created.json()["id"]
    [row] = http.get("/_admin/state").json()["records"]
    assert row == {"id": rid, "org": "1", **ADA}
    [native] = entities(http, 1)
    assert (native["name"], native["tel"], native["role"]) == ("Ada Lovelace",
                                                               "+44 20 7946 0000", "Buyer")
    http.patch(f"/_admin/records/{rid}", json={"fields": {"last_name": "King", "org": "2",
                                                          "phone": ""}})
    [row] = http.get("/_admin/state").json()["records"]
    assert (row["first_name"], row["last_name"], row["org"], row["phone"]) == ("Ada", "King",
                                                                              "2", "")
    http.delete(f"/_admin/records/{rid}")
    assert http.get("/_admin/state").json()["records"] == []
    assert http.get("/_admin/counters").json()["total"] == 1  # the admin side is not counted


def test_name_splits_on_the_last_space() -> None:
    assert split_name("Mary Ann Evans") == ("Mary Ann", "Evans")
    assert split_name("Plato") == ("", "Plato")
    assert join_name("Mary Ann", "Evans") == "Mary Ann Evans"
    assert join_name("", "Plato") == "Plato"


def test_seeded_and_served_by_the_sandbox() -> None:
    sim = seeded(6)
    assert {r["org"] for r in sim.admin_dump()} == {"1", "2"}
    assert "lightening" in available_kinds()
    box = build_sandbox(6)
    assert "lightening" in box.sims
    assert box.sims["lightening"].admin_dump()


def test_a_lost_answer_is_applied_but_never_heard(sim: LighteningSim, http: httpx.Client) -> None:
    sim.faults.lose_next = 1
    with pytest.raises(httpx.TransportError):
        http.post("/contact", json={"customer_id": 1, "name": "Ada Lovelace"})
    assert [c.values["name"] for c in sim.contacts.values()] == ["Ada Lovelace"]
    assert sim.faults.lose_next == 0 and sim.writes() == 1
    assert entities(http, 1)[0]["name"] == "Ada Lovelace"  # reads are never lost
