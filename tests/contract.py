"""The connector contract: one test class every connector's tests inherit.

A subclass provides three fixtures:

* ``sim``        — the system's simulator (a :class:`syncd.sandbox.common.Simulator`),
                   served over real HTTP on 127.0.0.1 (``served`` below helps);
* ``connector``  — a connector configured against it;
* ``org``        — a parent id (organization) that exists in the simulator.

and may provide ``bad_connector`` (wrong credentials).  Everything here talks to
the simulator over HTTP; nothing of ours is mocked.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from syncd.connectors.base import Connector, RemoteRecord, check_limits
from syncd.contact import normalise
from syncd.errors import AuthError, RetriableError
from syncd.sandbox.common import Simulator

PERSON = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada@example.com",
    "phone": "+44 20 7946 0000",
    "mobile": "+44 7700 900123",
}


def listed(connector: Connector, org: str, since: datetime | None = None) -> list[RemoteRecord]:
    return [r for page in connector.list_records([org], since) for r in page.records]


def by_id(connector: Connector, org: str, since: datetime | None = None) -> dict[str, RemoteRecord]:
    return {r.remote_id: r for r in listed(connector, org, since) if not r.deleted}


def dump(sim: Simulator) -> dict[str, dict[str, Any]]:
    with sim.lock:
        return {str(r["id"]): r for r in sim.admin_dump()}


def same(field: str, a: str, b: str) -> bool:
    return normalise(field, a) == normalise(field, b)


class ConnectorContract:
    """Behaviour every connector must show against its simulator."""

    def supported(self, connector: Connector, fields: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in fields.items() if k in connector.capabilities.fields}

    def test_full_scan_lists_a_record_made_in_the_ui(
        self, sim: Simulator, connector: Connector, org: str
    ) -> None:
        rid = sim.admin_create(org, PERSON)
        records = by_id(connector, org)
        assert str(rid) in records
        rec = records[str(rid)]
        assert rec.org_id == org
        for field, value in self.supported(connector, PERSON).items():
            assert same(field, rec.fields[field], value), field

    def test_create_makes_one_record_with_the_fields(
        self, sim: Simulator, connector: Connector, org: str
    ) -> None:
        before = set(dump(sim))
        result = connector.create(org, self.supported(connector, PERSON))
        after = dump(sim)
        assert set(after) - before == {result.remote_id}
        created = after[result.remote_id]
        assert str(created["org"]) == org
        for field, value in self.supported(connector, PERSON).items():
            assert same(field, created[field], value), field

    def test_update_changes_the_given_fields_and_keeps_the_rest(
        self, sim: Simulator, connector: Connector, org: str
    ) -> None:
        rid = str(sim.admin_create(org, PERSON))
        current = by_id(connector, org)[rid]
        desired = {**current.fields, "email": "ada.l@example.com"}
        connector.update(rid, org, {"email": "ada.l@example.com"}, desired, current.extra)
        after = dump(sim)[rid]
        assert same("email", after["email"], "ada.l@example.com")
        assert same("last_name", after["last_name"], "Lovelace")
        if "phone" in connector.capabilities.fields:
            assert same("phone", after["phone"], PERSON["phone"])

    def test_clearing_a_field_empties_it(
        self, sim: Simulator, connector: Connector, org: str
    ) -> None:
        rid = str(sim.admin_create(org, PERSON))
        current = by_id(connector, org)[rid]
        desired = {**current.fields, "mobile": ""}
        connector.update(rid, org, {"mobile": ""}, desired, current.extra)
        assert not by_id(connector, org)[rid].fields.get("mobile")

    def test_delete_removes_the_record(
        self, sim: Simulator, connector: Connector, org: str
    ) -> None:
        if not connector.capabilities.can_delete:
            pytest.skip("this system offers no delete")
        rid = str(sim.admin_create(org, PERSON))
        current = by_id(connector, org)[rid]
        connector.delete(rid, org, current.extra)
        assert rid not in dump(sim)
        assert rid not in by_id(connector, org)

    def test_incremental_listing_returns_what_changed_since(
        self, sim: Simulator, connector: Connector, org: str
    ) -> None:
        if not connector.capabilities.incremental:
            pytest.skip("full-scan system")
        old = str(sim.admin_create(org, {**PERSON, "email": "old@example.com"}))
        since = datetime.now(UTC) + timedelta(minutes=2)
        assert old not in by_id(connector, org, since)
        assert old in by_id(connector, org, datetime.now(UTC) - timedelta(minutes=2))

    def test_limits_are_capability_data(self, connector: Connector) -> None:
        caps = connector.capabilities
        bounded = [(f, lim) for f, lim in caps.limits.items() if lim.max_length]
        assert bounded, "a connector declares its field limits"
        field, limit = bounded[0]
        assert limit.max_length is not None
        fields = {f: "x" for f in caps.fields}
        fields[field] = "y" * (limit.max_length + 1)
        problem = check_limits(caps, fields, creating=True)
        assert problem is not None and problem[0] == field

    def test_throttle_signal_is_waited_out_not_failed(
        self, sim: Simulator, connector: Connector, org: str
    ) -> None:
        rid = str(sim.admin_create(org, PERSON))
        sim.faults.throttle_next = 1
        assert rid in by_id(connector, org)
        assert sim.faults.throttle_next == 0

    def test_server_error_and_cut_connection_on_a_read_are_retried(
        self, sim: Simulator, connector: Connector, org: str
    ) -> None:
        rid = str(sim.admin_create(org, PERSON))
        listed(connector, org)  # warm up: login, metadata
        sim.faults.error_next = 1
        assert rid in by_id(connector, org)
        sim.faults.drop_next = 1
        assert rid in by_id(connector, org)
        assert sim.faults.error_next == 0 and sim.faults.drop_next == 0

    def test_a_write_whose_answer_is_lost_is_not_sent_twice(
        self, sim: Simulator, connector: Connector, org: str
    ) -> None:
        listed(connector, org)  # warm up: login, metadata
        before, writes = len(dump(sim)), sim.writes()
        sim.faults.drop_next = 1
        with pytest.raises(RetriableError):
            connector.create(org, self.supported(connector, PERSON))
        # Sent once and not repeated: the next poll, not a blind resend, finds out.
        assert sim.writes() - writes == 1
        assert len(dump(sim)) == before

    def test_listing_makes_no_per_record_request(
        self, sim: Simulator, connector: Connector, org: str
    ) -> None:
        for i in range(12):
            sim.admin_create(org, {**PERSON, "email": f"p{i}@example.com"})
        listed(connector, org)  # warm up: login, metadata
        sim.counters.clear()
        assert len(by_id(connector, org)) >= 12
        assert sum(sim.counters.values()) < 12

    def test_bad_credentials_raise_auth_error(
        self, bad_connector: Connector, org: str
    ) -> None:
        with pytest.raises(AuthError):
            listed(bad_connector, org)


STOPPING: list[Any] = []
"""Simulators told to shut down and not yet waited for: each takes ~0.2 s, which the next
test need not sit out (every server has a port of its own); the session waits for them all
at its end (``conftest.servers_stopped``)."""


@pytest.fixture
def served_sim() -> Iterator[Any]:
    """Yield a function that serves a simulator and returns its base URL."""
    from syncd.sandbox.common import serve

    handles = []

    def start(sim: Simulator) -> str:
        handle = serve(sim.app)
        handles.append(handle)
        return handle.url

    yield start
    for handle in handles:
        handle.ask_to_stop()
    STOPPING.extend(handles)
