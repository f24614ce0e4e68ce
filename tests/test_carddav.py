"""CardDAV: the shared connector contract and the connector's own rules, against real
Radicale and Xandikos servers (``tests/dav.py``) — every test runs on both."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from syncd.connectors.carddav import CarddavConnector
from syncd.errors import AuthError, NotFound, Stale
from syncd.model import Discovered, Page
from syncd.sandbox.carddav import SANDBOX_PASSWORD, CarddavSim
from tests.contract import PERSON, ConnectorContract, by_id, listed
from tests.dav import ORG, book, dav_server, make, sim

__all__ = ["book", "dav_server", "sim"]  # the fixtures, for pytest


@pytest.fixture
def connector(sim: CarddavSim) -> Iterator[CarddavConnector]:
    c = make(sim)
    yield c
    c.close()


@pytest.fixture
def bad_connector(sim: CarddavSim) -> Iterator[CarddavConnector]:
    if sim.server.kind == "xandikos":
        pytest.skip("Xandikos serves Basic auth over TLS only; it is run without auth here")
    c = make(sim, password="not-the-password")
    yield c
    c.close()


@pytest.fixture
def org() -> str:
    return ORG


SINCE = datetime(2026, 1, 1, tzinfo=UTC)
"""Any moment: a token system reads what changed since its token, not since a time."""


def pages(connector: CarddavConnector, *, incremental: bool = False) -> list[Page]:
    return list(connector.list_records([ORG], SINCE if incremental else None))


class TestCarddavContract(ConnectorContract):
    def test_incremental_listing_returns_what_changed_since(
        self, sim: CarddavSim, connector: CarddavConnector, org: str
    ) -> None:
        # A sync token, not a time, says "since": only what changed after it is listed.
        old = sim.admin_create(org, {**PERSON, "email": "old@example.com"})
        first = pages(connector)
        token = first[-1].token
        assert token, "the full listing's last page carries the sync token"
        new = sim.admin_create(org, {**PERSON, "email": "new@example.com"})
        connector.resume_sync(token, {})
        changed = {r.remote_id for p in pages(connector, incremental=True) for r in p.records}
        assert changed == {new}
        assert old in by_id(connector, org)


def test_a_no_op_read_is_one_request(sim: CarddavSim, connector: CarddavConnector) -> None:
    for i in range(5):
        sim.admin_create(ORG, {**PERSON, "email": f"p{i}@example.com"})
    token = pages(connector)[-1].token
    connector.resume_sync(token, {})
    before = connector.traffic.request_count()
    assert [r for p in pages(connector, incremental=True) for r in p.records] == []
    assert connector.traffic.request_count() - before == 1


def test_multiget_fetches_cards_in_batches(sim: CarddavSim) -> None:
    for i in range(7):
        sim.admin_create(ORG, {**PERSON, "email": f"p{i}@example.com"})
    connector = make(sim, multiget_batch=3)
    sim.counters.clear()
    assert len(by_id(connector, ORG)) == 7
    # open (PROPFIND) + sync report + ceil(7 / 3) multigets
    assert sim.counters["PROPFIND"] == 1 and sim.counters["REPORT"] == 1 + 3


def test_a_full_listing_refetches_only_changed_cards(sim: CarddavSim,
                                                     connector: CarddavConnector) -> None:
    uids = [sim.admin_create(ORG, {**PERSON, "email": f"p{i}@example.com"}) for i in range(6)]
    listed(connector, ORG)
    sim.admin_update(uids[2], {"job_title": "Engineer"})
    sim.counters.clear()
    records = by_id(connector, ORG)
    assert records[uids[2]].fields["job_title"] == "Engineer"
    assert sim.counters["REPORT"] == 2  # the listing and one multiget (of one card)


def test_update_keeps_properties_syncd_does_not_map(sim: CarddavSim,
                                                    connector: CarddavConnector) -> None:
    href = sim.put_raw(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:keep-1\r\nFN:Ada Lovelace\r\n"
        "N:Lovelace;Ada;Augusta;;\r\nEMAIL;TYPE=INTERNET,WORK:ada@example.com\r\n"
        "EMAIL;TYPE=HOME:ada@home.example\r\nTEL;TYPE=HOME:+44 1\r\n"
        "NOTE:met at the Analytical Engine demo\r\nPHOTO;VALUE=URI:http://example.com/a.jpg\r\n"
        "item1.ADR;TYPE=WORK:;;12 St James's Square;London;;SW1Y 4JH;UK\r\n"
        "item1.X-ABLabel:office\r\nX-SOCIALPROFILE;TYPE=twitter:ada\r\n"
        f"ORG:{ORG};Research\r\nEND:VCARD\r\n", "keep-1")
    current = by_id(connector, ORG)["keep-1"]
    desired = {**current.fields, "email": "ada.l@example.com", "job_title": "Countess"}
    connector.update("keep-1", ORG, {"email": "ada.l@example.com", "job_title": "Countess"},
                     desired, current.extra)
    _, text = sim.cards()[href]
    assert "ada.l@example.com" in text and "TITLE:Countess" in text
    for kept in ("ada@home.example", "TEL;TYPE=HOME:+44 1", "NOTE:met at the Analytical",
                 "PHOTO;VALUE=URI:http://example.com/a.jpg", "item1.ADR", "12 St James",
                 "X-SOCIALPROFILE", "N:Lovelace;Ada;Augusta;;", f"ORG:{ORG};Research"):
        assert kept.lower() in text.lower(), kept
    assert "ada@example.com" not in text


def test_a_card_changed_since_it_was_read_is_stale_not_overwritten(
    sim: CarddavSim, connector: CarddavConnector
) -> None:
    uid = sim.admin_create(ORG, PERSON)
    current = by_id(connector, ORG)[uid]
    sim.admin_update(uid, {"job_title": "Poet"})  # another client, after our read
    with pytest.raises(Stale):
        connector.update(uid, ORG, {"email": "x@example.com"},
                         {**current.fields, "email": "x@example.com"}, current.extra)
    with pytest.raises(Stale):
        connector.delete(uid, ORG, current.extra)
    card = next(c for c in sim.admin_dump() if c["id"] == uid)
    assert card["job_title"] == "Poet" and card["email"] == PERSON["email"]


def test_a_412_on_the_put_itself_is_stale(sim: CarddavSim, connector: CarddavConnector) -> None:
    uid = sim.admin_create(ORG, PERSON)
    current = by_id(connector, ORG)[uid]
    sim.hostile.before_write = lambda path: sim.admin_update(uid, {"job_title": "Poet"})
    with pytest.raises(Stale):
        connector.update(uid, ORG, {"email": "x@example.com"},
                         {**current.fields, "email": "x@example.com"}, current.extra)
    assert next(c for c in sim.admin_dump() if c["id"] == uid)["job_title"] == "Poet"


def test_update_of_a_deleted_card_is_not_found(sim: CarddavSim,
                                               connector: CarddavConnector) -> None:
    uid = sim.admin_create(ORG, PERSON)
    current = by_id(connector, ORG)[uid]
    sim.admin_delete(uid)
    fresh = make(sim)  # nothing in memory: it must ask the server
    with pytest.raises(NotFound):
        fresh.update(uid, ORG, {"email": "x@example.com"}, dict(current.fields), current.extra)


def test_create_is_conditional_and_writes_vcard_3(sim: CarddavSim,
                                                  connector: CarddavConnector) -> None:
    result = connector.create(ORG, {"first_name": "Zoë", "last_name": "Ångström",
                                    "email": "zoe@example.com", "mobile": "+46 70 123"})
    href = result.extra["href"]
    _, text = sim.cards()[href]
    assert "VERSION:3.0" in text and f"UID:{result.remote_id}" in text
    assert "FN:Zoë Ångström" in text and "TEL;TYPE=CELL:+46 70 123" in text


def test_a_server_without_sync_collection_is_a_full_scan_system(sim: CarddavSim) -> None:
    sim.hostile.no_sync = True
    connector = make(sim)
    uid = sim.admin_create(ORG, PERSON)
    assert connector.open() == Discovered(incremental=False)
    assert not connector.open().apply(connector.capabilities).incremental
    assert uid in by_id(connector, ORG)
    assert all(p.token is None for p in pages(connector))


def test_a_server_that_stops_offering_sync_reports_is_listed_in_full(sim: CarddavSim) -> None:
    connector = make(sim)
    uid = sim.admin_create(ORG, PERSON)
    connector.open()
    sim.hostile.no_sync = True  # advertised, then refused
    assert uid in by_id(connector, ORG)
    assert connector.open() == Discovered(incremental=False)  # the next poll reads in full


def test_an_expired_token_falls_back_to_a_complete_listing_with_deletions(
    sim: CarddavSim, connector: CarddavConnector
) -> None:
    keep = sim.admin_create(ORG, PERSON)
    gone = sim.admin_create(ORG, {**PERSON, "email": "gone@example.com"})
    first = pages(connector)
    linked = {r.remote_id: (r.org_id, dict(r.extra)) for p in first for r in p.records}
    sim.admin_delete(gone)
    sim.hostile.expire_next = 1
    connector.resume_sync(first[-1].token, linked)
    records = [r for p in pages(connector, incremental=True) for r in p.records]
    assert sim.hostile.expire_next == 0  # the token was refused
    assert {r.remote_id for r in records if r.deleted} == {gone}
    assert keep in {r.remote_id for r in records if not r.deleted}


def test_a_deletion_in_the_sync_report_is_a_tombstone_in_a_fresh_process(
    sim: CarddavSim, connector: CarddavConnector
) -> None:
    uid = sim.admin_create(ORG, PERSON)
    first = pages(connector)
    linked = {r.remote_id: (r.org_id, dict(r.extra)) for p in first for r in p.records}
    sim.admin_delete(uid)
    fresh = make(sim)  # knows the card only from the links
    fresh.resume_sync(first[-1].token, linked)
    records = [r for p in pages(fresh, incremental=True) for r in p.records]
    assert [(r.remote_id, r.org_id, r.deleted) for r in records] == [(uid, ORG, True)]


def test_cards_without_uid_or_with_a_shared_uid_are_skipped_not_merged(
    sim: CarddavSim, connector: CarddavConnector
) -> None:
    card = ("BEGIN:VCARD\r\nVERSION:3.0\r\n{uid}FN:{name}\r\nN:{name};;;;\r\n"
            f"EMAIL:{{name}}@example.com\r\nORG:{ORG}\r\nEND:VCARD\r\n")
    sim.put_raw(card.format(uid="UID:twin\r\n", name="one"))
    twin = card.format(uid="UID:twin\r\n", name="two")
    if sim.server.kind == "radicale":
        with pytest.raises(RuntimeError, match="409"):
            sim.put_raw(twin)  # Radicale refuses a second card with one UID itself ...
        sim.put_behind(twin, "two")  # ... but a tool sharing its folder does not ask
    else:
        sim.put_raw(twin)
    nouid = card.format(uid="", name="nouid")
    radicale = sim.server.kind == "radicale"
    if radicale:  # Radicale refuses a card without UID, and serves none from its folder
        with pytest.raises(RuntimeError, match="400"):
            sim.put_raw(nouid)
    else:
        sim.put_raw(nouid)
    ok = sim.admin_create(ORG, PERSON)
    got = pages(connector)
    records = {r.remote_id for p in got for r in p.records}
    skipped = [s for p in got for s in p.skipped]
    assert records == {ok}
    assert any(s.remote_id == "twin" and "not merged" in s.reason for s in skipped)
    assert radicale or any("no UID" in s.reason for s in skipped), skipped


def test_secrets_never_reach_the_logs(sim: CarddavSim) -> None:
    if sim.server.kind == "xandikos":
        pytest.skip("run without auth")
    bad = make(sim, password="hunter2-not-it")
    with capture_logs() as logs, pytest.raises(AuthError) as caught:
        listed(bad, ORG)
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(logs)
    good = make(sim)
    with capture_logs() as logs:
        listed(good, ORG)
    assert SANDBOX_PASSWORD not in repr(logs)
