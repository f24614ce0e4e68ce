"""The memory connector (``syncd.connectors.memory``) held to the shared connector contract.

The contract talks to a simulator; the memory system lives in this process, so
:class:`MemorySim` plays the simulator's admin side ("the UI") straight on the
connector's records.  The contract tests of the HTTP transport (throttle
answers, server errors and cut connections retried by the client) have no
transport to act on here: they are skipped by name, and the lost-write case is
played with the memory system's own switch.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest

from syncd.connectors.base import FieldLimit
from syncd.connectors.memory import MemoryConnector
from syncd.errors import RetriableError
from tests.contract import PERSON, ConnectorContract, dump

ORG = "org-1"


class _Requests(Counter[str]):
    """The simulator's request counters: here the memory system's own count since ``clear()``."""

    def __init__(self, system: MemoryConnector) -> None:
        super().__init__()
        self.system = system
        self.since = system.requests

    def clear(self) -> None:
        self.since = self.system.requests

    def values(self) -> Any:
        return [self.system.requests - self.since]


class MemorySim:
    """The admin side of a memory system, in the shape the contract expects of a simulator."""

    def __init__(self, system: MemoryConnector) -> None:
        self.system = system
        self.lock = threading.RLock()
        self.counters = _Requests(system)

    def admin_create(self, org: str, fields: Mapping[str, str]) -> str:
        return self.system.add(org, fields)

    def admin_dump(self) -> list[dict[str, Any]]:
        return [{"id": rid, "org": rec.org_id, **rec.fields}
                for rid, rec in self.system.records.items()]

    def writes(self) -> int:
        return self.system.writes


@pytest.fixture(params=["full-scan", "incremental"])
def connector(request: pytest.FixtureRequest) -> MemoryConnector:
    """Memory's limits are configuration (none by default, as a store without bounds):
    the contract's limit test needs some declared."""
    return MemoryConnector("memory", incremental=request.param == "incremental",
                           limits={"email": FieldLimit(max_length=254)})


@pytest.fixture
def sim(connector: MemoryConnector) -> MemorySim:
    return MemorySim(connector)


@pytest.fixture
def bad_connector() -> MemoryConnector:
    pytest.skip("an in-process system takes no credentials")


@pytest.fixture
def org() -> str:
    return ORG


class TestMemoryContract(ConnectorContract):
    def test_throttle_signal_is_waited_out_not_failed(
        self, sim: Any, connector: Any, org: str
    ) -> None:
        pytest.skip("in-process: no transport to answer with a throttle signal")

    def test_server_error_and_cut_connection_on_a_read_are_retried(
        self, sim: Any, connector: Any, org: str
    ) -> None:
        pytest.skip("in-process: no transport to fail a read and retry it")

    def test_a_write_whose_answer_is_lost_is_not_sent_twice(
        self, sim: MemorySim, connector: MemoryConnector, org: str
    ) -> None:
        before, writes = len(dump(sim)), sim.writes()
        connector.fail_writes = 1  # the memory system's own lost write: nothing applied
        with pytest.raises(RetriableError):
            connector.create(org, self.supported(connector, PERSON))
        assert sim.writes() - writes == 1
        assert len(dump(sim)) == before
