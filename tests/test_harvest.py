"""Harvest v1: the shared connector contract plus Harvest's own traps, each by name.

Everything but the wire-level assertions talks to :class:`HarvestSim` over
real HTTP on 127.0.0.1; wire-level checks use ``syncd.http.MockTransport``.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from syncd.config import HarvestConfig
from syncd.connectors.base import check_limits
from syncd.connectors.harvest import (
    OVERLAP,
    HarvestConnector,
    error_message,
    from_config,
    id_from_location,
    parse_xml,
    updated_since_param,
)
from syncd.connectors.memory import MemoryConnector
from syncd.contact import content_hash
from syncd.errors import AuthError, RecordRejected, RetriableError, SystemUnavailable
from syncd.http import (
    Answers,
    BasicAuth,
    HttpClient,
    MockTransport,
    RateLimiter,
    Request,
    Response,
    RetryPolicy,
)
from syncd.sandbox.harvest import SANDBOX_PASSWORD, SANDBOX_USER, HarvestSim
from tests.contract import PERSON, ConnectorContract, by_id, dump, listed
from tests.e2e import once_json
from tests.world import Clock, SimTime

ORG = "11072"
OTHER = "11073"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<contact><client-id>11072</client-id><first-name>&lol3;</first-name><last-name>X</last-name></contact>
"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE contact [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<contact><client-id>11072</client-id><first-name>&xxe;</first-name><last-name>X</last-name></contact>
"""


def make(
    base_url: str,
    *,
    password: str = SANDBOX_PASSWORD,
    transport: Any = None,
    **options: Any,
) -> HarvestConnector:
    cfg = HarvestConfig(
        kind="harvest", base_url=base_url, username=SANDBOX_USER, password=password
    )
    options.setdefault("max_rps", 200.0)  # pacing has its own test; keep the rest fast
    return from_config("harvest", cfg, transport=transport, **options)


def raw(base_url: str) -> HttpClient:
    """A bare client for talking to the simulator without the connector's help."""
    return HttpClient(
        "harvest-raw",
        base_url,
        headers={"Accept": "application/xml", "Content-Type": "application/xml"},
        auth=BasicAuth(SANDBOX_USER, SANDBOX_PASSWORD),
        retry=RetryPolicy(max_retries=0),
        answers=Answers(error_message=error_message),
    )




def contact_xml(**over: str) -> str:
    values = {
        "id": '<id type="integer">9</id>',
        "client-id": '<client-id type="integer">11072</client-id>',
        "first-name": "<first-name>Jane</first-name>",
        "last-name": "<last-name>Doe</last-name>",
        "email": "<email>Jane@Doe.com</email>",
        "updated-at": '<updated-at type="datetime">2008-04-09T12:07:56Z</updated-at>',
        **over,
    }
    return "<contact>" + "".join(values.values()) + "</contact>"


def mock(handler: Callable[[Request], Response]) -> tuple[HarvestConnector, list[Request]]:
    seen: list[Request] = []

    def record(request: Request) -> Response:
        seen.append(request)
        return handler(request)

    return make("https://acme.harvestapp.com", transport=MockTransport(record)), seen


# -- the shared contract -------------------------------------------------------------------


class TestHarvestContract(ConnectorContract):
    @pytest.fixture
    def sim(self) -> HarvestSim:
        return HarvestSim(clients=[ORG, OTHER], fault_retry_after=1)

    @pytest.fixture
    def base_url(self, sim: HarvestSim, served_sim: Callable[[HarvestSim], str]) -> str:
        return served_sim(sim)

    @pytest.fixture
    def connector(self, base_url: str) -> Iterator[HarvestConnector]:
        connector = make(base_url)
        yield connector
        connector.close()

    @pytest.fixture
    def org(self) -> str:
        return ORG

    @pytest.fixture
    def bad_connector(self, base_url: str) -> Iterator[HarvestConnector]:
        connector = make(base_url, password="not-the-password")
        yield connector
        connector.close()


@pytest.fixture
def sim() -> HarvestSim:
    return HarvestSim(clients=[ORG, OTHER], fault_retry_after=1)


@pytest.fixture
def url(sim: HarvestSim, served_sim: Callable[[HarvestSim], str]) -> str:
    return served_sim(sim)


@pytest.fixture
def connector(url: str) -> Iterator[HarvestConnector]:
    connector = make(url)
    yield connector
    connector.close()


# -- XML: defusedxml both ways, typed attributes, empty values, escaping ---------------------


def test_our_parser_refuses_entity_expansion_and_external_entities() -> None:
    for doc in (BILLION_LAUGHS, EXTERNAL_ENTITY):
        with pytest.raises(SystemUnavailable, match="refused an XML answer"):
            parse_xml(doc)
    connector, _ = mock(lambda r: Response(200, content=BILLION_LAUGHS))
    with pytest.raises(SystemUnavailable):
        listed(connector, ORG)


def test_simulator_refuses_entity_expansion_and_external_entities(
    sim: HarvestSim, url: str
) -> None:
    client = raw(url)
    for doc in (BILLION_LAUGHS, EXTERNAL_ENTITY):
        with pytest.raises(RecordRejected, match="HTTP 400"):
            client.request("POST", "/contacts", content=doc)
    assert sim.contacts == {}


def test_empty_values_nil_and_both_datetime_spellings_are_read() -> None:
    body = (
        '<contacts type="array">'
        + contact_xml(
            fax='<fax nil="true"/>',
            title="<title/>",
            mobile="<phone-mobile></phone-mobile>",
            **{"updated-at": '<updated-at type="dateTime">2008-04-09T12:07:56Z</updated-at>'},
        )
        + "</contacts>"
    )
    connector, _ = mock(lambda r: Response(200, content=body.encode()))
    [rec] = listed(connector, ORG)
    assert rec.remote_id == "9" and rec.org_id == ORG
    assert rec.fields["fax"] == rec.fields["job_title"] == rec.fields["mobile"] == ""
    assert rec.fields["first_name"] == "Jane"
    assert rec.updated_at == datetime(2008, 4, 9, 12, 7, 56, tzinfo=UTC)


def test_values_are_escaped_when_written(sim: HarvestSim, connector: HarvestConnector) -> None:
    tricky = {**PERSON, "last_name": 'O\'Brien & <Sons> "Ltd"', "job_title": "R&D </title>"}
    result = connector.create(ORG, tricky)
    stored = dump(sim)[result.remote_id]
    assert stored["last_name"] == tricky["last_name"]
    assert stored["job_title"] == tricky["job_title"]
    assert by_id(connector, ORG)[result.remote_id].fields["last_name"] == tricky["last_name"]


def test_xml_headers_and_basic_auth_are_sent() -> None:
    def answer(request: Request) -> Response:
        if request.method == "POST":
            return Response(201, headers={"Location": "/contacts/77"})
        return Response(200, content=b'<contacts type="array"></contacts>')

    connector, seen = mock(answer)
    listed(connector, ORG)
    connector.create(ORG, PERSON)
    expected = "Basic " + base64.b64encode(f"{SANDBOX_USER}:{SANDBOX_PASSWORD}".encode()).decode()
    assert len(seen) == 2
    for request in seen:
        assert request.headers["Accept"] == "application/xml"
        assert request.headers["Content-Type"] == "application/xml"
        assert request.headers["Authorization"] == expected
        assert "syncd" in request.headers["User-Agent"]
    post = seen[1].content.decode()
    assert '<client-id type="integer">11072</client-id>' in post
    assert "<first-name>Ada</first-name>" in post and "<last-name>Lovelace</last-name>" in post


def test_bad_credentials_never_show_the_password(url: str) -> None:
    connector = make(url, password="hunter2-very-secret")
    with pytest.raises(AuthError) as info:
        listed(connector, ORG)
    assert "hunter2" not in str(info.value)


# -- incremental reads --------------------------------------------------------------------


def test_updated_since_is_minute_grained_utc_and_url_encoded() -> None:
    connector, seen = mock(lambda r: Response(200, content=b'<contacts type="array"/>'))
    local = timezone(timedelta(hours=2))
    listed(connector, ORG, datetime(2010, 9, 25, 20, 30, 45, 123, tzinfo=local))
    assert seen[0].url.raw_path == b"/contacts?updated_since=2010-09-25+18%3A30"
    late_in_the_minute = datetime(2010, 9, 25, 18, 30, 59, tzinfo=UTC)
    assert updated_since_param(late_in_the_minute) == "2010-09-25+18%3A30"
    with pytest.raises(ValueError, match="timezone-aware"):
        updated_since_param(datetime(2010, 9, 25, 18, 30))


def test_simulator_refuses_seconds_in_updated_since(url: str) -> None:
    with pytest.raises(RecordRejected, match="Hint: updated_since"):
        raw(url).request("GET", "/contacts", params={"updated_since": "2010-09-25 18:30:15"})


def test_contact_updated_twice_in_the_same_minute_is_not_missed(
    served_sim: Callable[[HarvestSim], str],
) -> None:
    clock = Clock(datetime(2024, 5, 1, 12, 0, 10, tzinfo=UTC))
    sim = HarvestSim(clients=[ORG], clock=clock)
    connector = make(served_sim(sim))
    rid = sim.admin_create(ORG, PERSON)
    first = by_id(connector, ORG)[rid]
    watermark = first.updated_at
    assert watermark == clock.now

    clock.now = datetime(2024, 5, 1, 12, 0, 50, tzinfo=UTC)  # same minute, later second
    sim.admin_update(rid, {"email": "ada.second@example.com"})
    assert timedelta(minutes=1) <= OVERLAP
    assert connector.capabilities.overlap >= timedelta(minutes=1)
    # what the engine asks: the watermark minus the overlap (the connector floors it)
    again = by_id(connector, ORG, watermark - connector.capabilities.overlap)
    assert again[rid].fields["email"] == "ada.second@example.com"
    # even the bare watermark is floored to its minute, never rounded past the change
    assert rid in by_id(connector, ORG, watermark)

    # a re-seen record that did not change is recognised by its hash
    clock.now = datetime(2024, 5, 1, 12, 1, 5, tzinfo=UTC)
    seen_twice = by_id(connector, ORG, again[rid].updated_at - OVERLAP)[rid]
    assert content_hash(seen_twice.fields) == content_hash(again[rid].fields)


def test_incremental_pages_come_in_ascending_updated_at_order(
    served_sim: Callable[[HarvestSim], str],
) -> None:
    clock = Clock(datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC))
    sim = HarvestSim(clients=[ORG], clock=clock)
    connector = make(served_sim(sim))
    ids = [sim.admin_create(ORG, {**PERSON, "email": f"p{i}@x.com"}) for i in range(3)]
    for i, rid in enumerate(reversed(ids)):
        clock.now = datetime(2024, 5, 1, 12, 1, i, tzinfo=UTC)
        sim.admin_update(rid, {"job_title": f"t{i}"})
    order = [r.remote_id for r in listed(connector, ORG, clock.now - OVERLAP)]
    assert order == list(reversed(ids))


def test_one_get_for_all_clients_and_other_clients_are_listed_as_theirs(
    sim: HarvestSim, connector: HarvestConnector
) -> None:
    """Every client's contacts come with their client-id: a contact moved to an unmapped
    client is then seen as moved out of scope (the planner stops syncing it), not deleted."""
    mine = sim.admin_create(ORG, PERSON)
    theirs = sim.admin_create(OTHER, {**PERSON, "email": "other@example.com"})
    nobody = sim.admin_create("99999", {**PERSON, "email": "nobody@example.com"})
    sim.counters.clear()
    pages = list(connector.list_records([ORG, OTHER], None))
    assert len(pages) == 1
    orgs = {r.remote_id: r.org_id for r in pages[0].records}
    assert orgs == {mine: ORG, theirs: OTHER, nobody: "99999"}
    assert sim.counters["GET"] == 1  # one GET, whatever the number of clients


# -- create / update / delete ---------------------------------------------------------------


def test_create_takes_the_new_id_from_location_only(
    sim: HarvestSim, connector: HarvestConnector, url: str
) -> None:
    # the simulator answers 201 with an empty body: Location is all there is
    response = raw(url).request(
        "POST",
        "/contacts",
        content="<contact><client-id>11072</client-id><first-name>A</first-name>"
        "<last-name>B</last-name></contact>",
    )
    assert response.status_code == 201 and response.content == b""
    assert response.headers["Location"].startswith("/contacts/")

    result = connector.create(ORG, PERSON)
    assert result.remote_id == str(max(sim.contacts))
    assert id_from_location("/contacts/12345") == "12345"
    assert id_from_location("https://acme.harvestapp.com/contacts/12345/") == "12345"
    assert id_from_location("/contacts/new") is None
    assert id_from_location(None) is None


def test_create_without_location_looks_up_instead_of_posting_again() -> None:
    listing = (
        '<contacts type="array">'
        + contact_xml(email="<email>ada@example.com</email>", id='<id type="integer">41</id>')
        + "</contacts>"
    )

    def answer(request: Request) -> Response:
        if request.method == "POST":
            return Response(201)  # no Location at all
        assert request.url.path == f"/clients/{ORG}/contacts"
        return Response(200, content=listing.encode())

    connector, seen = mock(answer)
    assert connector.create(ORG, PERSON).remote_id == "41"
    assert [r.method for r in seen] == ["POST", "GET"]

    # no email to match on: first + last name decide
    by_name = '<contacts type="array">' + contact_xml(
        email="<email/>", id='<id type="integer">43</id>',
        **{
            "first-name": "<first-name>Ada</first-name>",
            "last-name": "<last-name>Lovelace</last-name>",
        },
    ) + "</contacts>"
    connector, seen = mock(
        lambda r: Response(201) if r.method == "POST" else Response(200, content=by_name.encode())
    )
    assert connector.create(ORG, {**PERSON, "email": ""}).remote_id == "43"
    assert [r.method for r in seen] == ["POST", "GET"]

    empty = '<contacts type="array"></contacts>'
    connector, seen = mock(
        lambda r: Response(201, headers={"Location": "/contacts/oops"})
        if r.method == "POST"
        else Response(200, content=empty.encode())
    )
    with pytest.raises(RetriableError, match="next poll"):
        connector.create(ORG, PERSON)
    assert [r.method for r in seen] == ["POST", "GET"]


def test_required_fields_are_rejected_before_sending() -> None:
    connector, seen = mock(lambda r: Response(500))
    nameless = {**PERSON, "last_name": ""}
    problem = check_limits(connector.capabilities, nameless, creating=True)
    assert problem is not None and problem[0] == "last_name"
    with pytest.raises(RecordRejected, match="last_name"):
        connector.create(ORG, nameless)
    with pytest.raises(RecordRejected, match="first_name"):
        connector.update("9", ORG, {"first_name": ""}, {**PERSON, "first_name": ""}, {})
    with pytest.raises(RecordRejected, match="limit is 255"):
        connector.update("9", ORG, {"job_title": "x" * 256}, PERSON, {})
    assert seen == []


def test_simulator_answers_422_with_its_message_when_required_fields_are_sent_empty(
    sim: HarvestSim, connector: HarvestConnector, url: str
) -> None:
    with pytest.raises(RecordRejected) as info:
        raw(url).request(
            "POST",
            "/contacts",
            content="<contact><first-name>A</first-name><last-name></last-name></contact>",
            what="create A",
        )
    message = str(info.value)
    assert "HTTP 422" in message
    assert "Client can't be blank" in message and "Last name can't be blank" in message
    # through the connector: the record is named, the server's own words kept
    with pytest.raises(RecordRejected, match=r"Ada Lovelace.*Client must exist"):
        connector.create("424242", PERSON)
    assert sim.contacts == {}


def test_update_sends_only_changed_elements_and_empty_clears() -> None:
    def answer(request: Request) -> Response:
        return Response(200, headers={"Location": "/contacts/9"})

    connector, seen = mock(answer)
    desired = {**PERSON, "email": "new@example.com", "fax": ""}
    result = connector.update("9", ORG, {"email": "new@example.com", "fax": ""}, desired, {})
    assert seen[0].method == "PUT" and seen[0].url.path == "/contacts/9"
    assert seen[0].content == b"<contact><email>new@example.com</email><fax></fax></contact>"
    assert result.fields is not None and result.fields["email"] == "new@example.com"
    # nothing Harvest holds changed: no request at all
    connector.update("9", ORG, {"salutation": "Dr"}, desired, {})
    assert len(seen) == 1


def test_delete_of_an_unknown_id_is_already_gone(
    sim: HarvestSim, connector: HarvestConnector
) -> None:
    rid = sim.admin_create(ORG, PERSON)
    connector.delete(rid, ORG, {})
    connector.delete(rid, ORG, {})  # 404 the second time: success
    assert rid not in dump(sim)


def test_deletions_are_only_visible_to_a_full_scan(
    served_sim: Callable[[HarvestSim], str],
) -> None:
    clock = Clock(datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC))
    sim = HarvestSim(clients=[ORG], clock=clock)
    connector = make(served_sim(sim))
    keep = sim.admin_create(ORG, PERSON)
    gone = sim.admin_create(ORG, {**PERSON, "email": "gone@example.com"})
    before = by_id(connector, ORG)
    assert set(before) == {keep, gone}
    clock.now += timedelta(minutes=10)
    sim.admin_delete(gone)
    since = clock.now - timedelta(minutes=5)
    incremental = listed(connector, ORG, since)
    assert incremental == []  # no tombstone, no trace: updated_since cannot see deletions
    assert not any(r.deleted for r in incremental)
    full = by_id(connector, ORG)
    assert set(full) == {keep}  # only a complete scan tells the engine it is gone


# -- throttle and pacing -------------------------------------------------------------------


def test_503_retry_after_is_waited_out_not_counted_as_an_outage(
    sim: HarvestSim, connector: HarvestConnector
) -> None:
    rid = sim.admin_create(ORG, PERSON)
    sim.faults.throttle_next = 1  # the next call gets 503 + Retry-After: 1
    start = time.monotonic()
    assert rid in by_id(connector, ORG)
    assert time.monotonic() - start >= 0.95
    assert connector.http.stats.rate_limited == 1
    assert sim.counters["throttled"] == 1


def on_sim_time(
    connector: HarvestConnector, clock: SimTime, rate: float | None, burst: float
) -> None:
    connector.http.limiter = RateLimiter(rate, burst, clock=clock)


def test_simulator_enforces_its_budget_and_503_is_waited_out_on_a_simulated_clock(
    served_sim: Callable[[HarvestSim], str],
) -> None:
    clock = SimTime()
    sim = HarvestSim(clients=[ORG], limit=10, window=15.0, monotonic=clock.now)
    connector = make(served_sim(sim))
    on_sim_time(connector, clock, None, 1.0)  # no pacing: hit the wall on purpose
    sim.admin_create(ORG, PERSON)
    for _ in range(12):
        assert len(listed(connector, ORG)) == 1  # never an error
    assert sim.counters["throttled"] == 1
    assert connector.http.stats.rate_limited == 1
    assert clock.slept >= 14.0  # the whole Retry-After was honoured (15 s window)


def test_pacing_keeps_a_burst_of_over_100_requests_under_the_budget(
    served_sim: Callable[[HarvestSim], str],
) -> None:
    clock = SimTime()
    sim = HarvestSim(clients=[ORG], limit=100, window=15.0, monotonic=clock.now)
    connector = make(served_sim(sim))
    defaults = from_config(
        "harvest",
        HarvestConfig(kind="harvest", base_url="https://x", username="u", password="p"),
    ).http.limiter
    on_sim_time(connector, clock, defaults.rate, defaults.burst)
    for _ in range(103):
        connector.delete("1", ORG, {})
    assert sim.counters["DELETE"] == 103
    assert sim.counters["throttled"] == 0
    assert connector.http.stats.rate_limited == 0
    assert clock.slept >= 16.0  # 103 requests at 6/s


def test_default_pacing_fits_the_documented_budget() -> None:
    connector = make("https://acme.harvestapp.com", max_rps=None)
    cfg = HarvestConfig(
        kind="harvest", base_url="https://x", username="u", password="p"
    )
    default = from_config("harvest", cfg)
    limiter = default.http.limiter
    assert limiter.rate is not None
    worst_in_15s = limiter.burst + limiter.rate * 15
    assert worst_in_15s < 100
    connector.close()
    default.close()


# -- end to end: `syncd once` between Harvest and a memory system ----------------------------



def write_config(path: Path, url: str, tmp: Path, *, full_scan_interval: str = "6h") -> None:
    path.write_text(
        f"""
[store]
url = "sqlite:///{tmp / 'syncd.db'}"

[sync]
full_scan_interval = "{full_scan_interval}"
max_delete_fraction = 0.9

[systems.harvest]
kind = "harvest"
base_url = "{url}"
username = "{SANDBOX_USER}"

[systems.mem]
kind = "memory"
path = "{tmp / 'mem.json'}"

[organizations.acme]
harvest = "{ORG}"
mem = "1"
"""
    )


def once(config: Path) -> dict[str, Any]:
    return once_json(config, {"SYNCD_SYSTEMS__HARVEST__PASSWORD": SANDBOX_PASSWORD})


def memory(tmp: Path) -> MemoryConnector:
    return MemoryConnector(name="mem", path=tmp / "mem.json")


def by_email(records: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(r["email"]).casefold(): r for r in records}


def test_end_to_end_syncd_once_both_ways_then_quiet(
    tmp_path: Path, served_sim: Callable[[HarvestSim], str]
) -> None:
    sim = HarvestSim(clients=[ORG])
    url = served_sim(sim)
    config = tmp_path / "syncd.toml"
    write_config(config, url, tmp_path)
    h_ada = sim.admin_create(ORG, PERSON)
    h_bob = sim.admin_create(ORG, {"first_name": "Bob", "last_name": "Byte", "email": "bob@x.com"})
    mem = memory(tmp_path)
    m_cy = mem.add("1", {"first_name": "Cy", "last_name": "Cole", "email": "cy@x.com",
                         "phone": "555 0100", "department": "Ops"})
    mem.close()

    # 1. first sync: each side receives the other's people, nothing is duplicated
    report = once(config)
    assert report["systems"]["harvest"]["created"] == 1
    assert report["systems"]["mem"]["created"] == 2
    harvest = by_email(sim.admin_dump())
    assert set(harvest) == {"ada@example.com", "bob@x.com", "cy@x.com"}
    assert harvest["cy@x.com"]["phone"] == "555 0100"
    mem_people = by_email(r.fields for r in memory(tmp_path).records.values())
    assert set(mem_people) == set(harvest)

    # 2. a second cycle with no outside change writes nothing anywhere
    sim.counters.clear()
    quiet = once(config)
    assert sim.writes() == 0, dict(sim.counters)
    assert sum(s["created"] + s["updated"] + s["deleted"] for s in quiet["systems"].values()) == 0
    assert sim.counters["GET"] == 1  # one incremental list, no per-record GET

    # 3. updates both ways (Harvest read incrementally, by updated_since)
    sim.admin_update(h_ada, {"job_title": "Analyst"})
    mem = memory(tmp_path)
    mem.edit(m_cy, mobile="+1 555 0199")
    mem.close()
    sim.counters.clear()
    report = once(config)
    assert report["systems"]["harvest"]["full_scan"] is False
    assert sim.counters["PUT"] == 1 and sim.writes() == 1
    cy_id = next(r["id"] for r in sim.admin_dump() if r["email"] == "cy@x.com")
    assert dump(sim)[cy_id]["mobile"] == "+1 555 0199"
    mem_people = by_email(r.fields for r in memory(tmp_path).records.values())
    assert mem_people["ada@example.com"]["job_title"] == "Analyst"

    # 4. deletes both ways; Harvest's deletion is found by the full scan only
    write_config(config, url, tmp_path, full_scan_interval="0s")
    sim.admin_delete(h_bob)
    mem = memory(tmp_path)
    mem.remove(m_cy)
    mem.close()
    sim.counters.clear()
    report = once(config)
    assert report["systems"]["harvest"]["full_scan"] is True
    assert report["systems"]["harvest"]["deleted"] == 1
    assert report["systems"]["mem"]["deleted"] == 1
    assert sim.counters["DELETE"] == 1
    assert set(by_email(sim.admin_dump())) == {"ada@example.com"}
    assert set(by_email(r.fields for r in memory(tmp_path).records.values())) == {
        "ada@example.com"
    }

    # 5. and quiet again
    sim.counters.clear()
    quiet = once(config)
    assert sim.writes() == 0, dict(sim.counters)
    assert sum(s["created"] + s["updated"] + s["deleted"] for s in quiet["systems"].values()) == 0


@pytest.mark.skipif(not os.environ.get("SYNCD_ECONOMY"), reason="set SYNCD_ECONOMY=1 to measure")
def test_request_economy_with_1000_contacts(
    tmp_path: Path, served_sim: Callable[[HarvestSim], str]
) -> None:
    """``SYNCD_ECONOMY=1 pytest tests/test_harvest.py -k economy -s`` prints the figures."""
    sim = HarvestSim(clients=[ORG])
    url = served_sim(sim)
    config = tmp_path / "syncd.toml"
    write_config(config, url, tmp_path)
    ids = [
        sim.admin_create(ORG, {"first_name": f"P{i}", "last_name": "Test",
                               "email": f"p{i}@example.com", "phone": f"+1 555 {i:04d}"})
        for i in range(1000)
    ]
    sim.counters.clear()
    once(config)  # first sync: a full scan, 1 000 creates in the memory system
    first = dict(sim.counters)
    sim.counters.clear()
    once(config)
    noop = dict(sim.counters)
    sim.admin_update(ids[500], {"email": "changed@example.com"})
    sim.counters.clear()
    once(config)
    inbound = dict(sim.counters)
    mem = memory(tmp_path)
    rid = next(r for r, rec in mem.records.items() if rec.fields["email"] == "p7@example.com")
    mem.edit(rid, email="p7.new@example.com")
    mem.close()
    sim.counters.clear()
    once(config)
    outbound = dict(sim.counters)
    write_config(config, url, tmp_path, full_scan_interval="0s")
    sim.counters.clear()
    once(config)
    sweep = dict(sim.counters)
    print(f"\nfirst sync: {first}\nno-op: {noop}\none change in Harvest: {inbound}\n"
          f"one change pushed to Harvest: {outbound}\nno-op full-scan (deletion sweep): {sweep}")
    assert first == {"GET": 1}
    assert noop == {"GET": 1}
    assert inbound == {"GET": 1}
    assert outbound == {"GET": 1, "PUT": 1}
    assert sweep == {"GET": 1}
