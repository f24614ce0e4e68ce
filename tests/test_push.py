"""The push with several writes in flight per system keeps every rule of the one-at-a-time push.

Speed is measured by ``benchmarks/push_rate.py``; these tests check the rules,
never a duration: how many writes are in flight (bounded by the setting, and
reached), no resend of a create whose outcome is unknown, a throttle answer
blocking every thread of the system, results recorded as they come (in
batches of at most 50), ``stop`` and ``SystemUnavailable`` stopping new
writes after those in hand, and a crash recording nothing more.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest

from syncd.config import (
    HarvestConfig,
    LogisenseConfig,
    MemoryConfig,
    Settings,
    ZohoBooksConfig,
)
from syncd.connectors.base import Capabilities, Connector, build_connector
from syncd.connectors.memory import MemoryConnector, SimulatedCrash
from syncd.contact import Fields
from syncd.engine import push
from syncd.engine.push import Pusher, in_flight
from syncd.errors import OutcomeUnknown, SystemUnavailable
from syncd.http import HttpClient
from syncd.model import Action, Link, LinkKey, Write, WriteResult
from syncd.store.repo import Failure, Store, Tx

NOW = datetime(2026, 1, 1, tzinfo=UTC)


# -- doubles ------------------------------------------------------------------------------


@dataclass
class Flush:
    links: dict[LinkKey, Link]
    removed: set[LinkKey]
    cleared: list[tuple[str, str]]
    failures: list[Failure] = field(default_factory=list)


class RecordingStore:
    """What the push writes to the store, one entry per transaction."""

    def __init__(self) -> None:
        self.flushes: list[Flush] = []
        self._lock = threading.Lock()
        self._open: dict[int, Flush] = {}

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        token = object()
        flush = Flush({}, set(), [])
        with self._lock:
            self._open[id(token)] = flush
            revision = len(self.flushes) + len(self._open)
        yield Tx(token, revision)  # type: ignore[arg-type]
        with self._lock:
            self.flushes.append(self._open.pop(id(token)))

    def save_changes(self, conn: object, *, goldens: Mapping[str, Any],
                     links: Mapping[LinkKey, Link], removed: set[LinkKey], now: datetime) -> None:
        flush = self._open[id(conn)]
        flush.links.update(links)
        flush.removed.update(removed)

    def clear_failures(self, conn: object, keys: list[tuple[str, str]]) -> None:
        self._open[id(conn)].cleared.extend(keys)

    def record_failure(self, conn: object, failure: Failure) -> None:
        self._open[id(conn)].failures.append(failure)

    def links(self) -> dict[LinkKey, Link]:
        with self._lock:
            return {k: v for f in self.flushes for k, v in f.links.items()}

    def failures(self) -> list[Failure]:
        with self._lock:
            return [x for f in self.flushes for x in f.failures]


class SlowSystem:
    """A thread-safe connector whose writes take ``delay`` and that counts what is in flight.

    ``on_create`` runs inside each create, with the create's rank (1, 2 ...):
    it may raise, set an event, or wait.
    """

    capabilities = Capabilities(fields=frozenset({"first_name", "last_name"}))

    def __init__(self, name: str = "slow", *, max_in_flight: int = 4, delay: float = 0.0,
                 on_create: Any = None) -> None:
        self.name = name
        self.max_in_flight = max_in_flight
        self.delay = delay
        self.on_create = on_create
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.created: list[str] = []
        self.calls: list[str] = []
        self.active_people: set[str] = set()
        self.overlap_same_person = False

    def create(self, org_id: str, fields: Fields) -> WriteResult:
        person = fields["last_name"]
        with self.lock:
            self.calls.append(person)
            rank = len(self.calls)
            if person in self.active_people:
                self.overlap_same_person = True
            self.active_people.add(person)
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if self.on_create is not None:
                self.on_create(rank, person)
            if self.delay:
                time.sleep(self.delay)
            with self.lock:
                self.created.append(person)
            return WriteResult(f"r-{person}")
        finally:
            with self.lock:
                self.active -= 1
                self.active_people.discard(person)

    def update(self, remote_id: str, org_id: str, changed: Fields, desired: Fields,
               extra: Mapping[str, Any]) -> WriteResult:
        return self.create(org_id, desired)

    def delete(self, remote_id: str, org_id: str, extra: Mapping[str, Any]) -> None:
        return None


def creates(n: int, system: str = "slow") -> list[Write]:
    return [Write(system, f"p{i}", Action.CREATE, "1",
                  desired={"first_name": "Ada", "last_name": f"p{i}"}) for i in range(n)]


def pusher(store: RecordingStore, *connectors: Any,
           stop: threading.Event | None = None) -> Pusher:
    return Pusher(cast(Store, store), {c.name: cast(Connector, c) for c in connectors},
                  max_attempts=5, now=NOW, failures={}, stop=stop)


# -- the setting --------------------------------------------------------------------------


def test_in_flight_comes_from_the_config_capped_by_the_connector() -> None:
    logisense = LogisenseConfig(kind="logisense", base_url="http://l.test", client_id="c",
                                username="u", password="p")
    assert logisense.max_in_flight == 4  # the documented default
    assert in_flight(build_connector("l", logisense)) == 4
    assert in_flight(build_connector("l", logisense.model_copy(update={"max_in_flight": 7}))) == 7
    harvest = HarvestConfig(kind="harvest", base_url="http://h.test", username="u", password="p",
                            max_in_flight=8)
    assert in_flight(build_connector("h", harvest)) == 2
    zoho = ZohoBooksConfig(kind="zoho_books", organization_id="1", client_id="c",
                           client_secret="s", refresh_token="t", max_in_flight=8)
    assert in_flight(build_connector("z", zoho)) == 1
    assert in_flight(build_connector("m", MemoryConfig(kind="memory", max_in_flight=8))) == 1


def test_max_in_flight_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        Settings(systems={"m": {"kind": "memory", "max_in_flight": 0}})  # type: ignore[dict-item]


# -- how many in flight -------------------------------------------------------------------


def test_writes_in_flight_reach_the_setting_and_never_pass_it() -> None:
    full = threading.Event()
    system = SlowSystem(max_in_flight=3)

    def wait_for_company(rank: int, person: str) -> None:
        with system.lock:
            if system.active >= 3:
                full.set()
        if rank <= 3:
            full.wait(5)  # the first three meet here: proof that three were in flight

    system.on_create = wait_for_company
    store = RecordingStore()
    outcome = pusher(store, system).push(creates(40))
    assert system.peak == 3
    assert sorted(system.created) == sorted(f"p{i}" for i in range(40))
    assert outcome.done[("slow", "create")] == 40
    assert set(store.links()) == {(f"p{i}", "slow") for i in range(40)}
    assert not system.overlap_same_person


def test_one_at_a_time_when_the_connector_says_one() -> None:
    system = SlowSystem(max_in_flight=1, delay=0.001)
    pusher(RecordingStore(), system).push(creates(10))
    assert system.peak == 1
    assert system.created == [f"p{i}" for i in range(10)]  # and in order


def test_several_writes_for_one_person_are_never_in_flight_together() -> None:
    """derive_writes makes one write per (person, system); should two ever come, no race."""
    system = SlowSystem(max_in_flight=4, delay=0.002)
    writes = [Write("slow", "p1", Action.CREATE, "1",
                    desired={"first_name": "Ada", "last_name": "same"}) for _ in range(6)]
    pusher(RecordingStore(), system).push(writes)
    assert system.peak == 1 and not system.overlap_same_person


def test_systems_are_pushed_side_by_side_each_within_its_own_bound() -> None:
    a, b = SlowSystem("a", max_in_flight=2, delay=0.002), SlowSystem("b", max_in_flight=3,
                                                                      delay=0.002)
    store = RecordingStore()
    outcome = pusher(store, a, b).push(creates(30, "a") + creates(30, "b"))
    assert a.peak <= 2 and b.peak <= 3
    assert outcome.done == {("a", "create"): 30, ("b", "create"): 30}
    assert len(store.links()) == 60


# -- the rules that held one at a time ------------------------------------------------------


def test_a_create_of_unknown_outcome_is_not_resent() -> None:
    def lose_one(rank: int, person: str) -> None:
        if person == "p7":
            raise OutcomeUnknown("slow: create: timed out; outcome unknown, not resent",
                                 system="slow")

    system = SlowSystem(max_in_flight=4, on_create=lose_one)
    store = RecordingStore()
    outcome = pusher(store, system).push(creates(20))
    assert system.calls.count("p7") == 1
    assert outcome.failed["slow"] == 1 and outcome.done[("slow", "create")] == 19
    [failure] = store.failures()
    assert failure.golden_id == "p7" and failure.unknown and "outcome unknown" in failure.last_error
    assert push.outcome_unknown(failure)
    assert ("p7", "slow") not in store.links()


def test_results_are_recorded_as_they_come_in_batches_of_at_most_fifty() -> None:
    store = RecordingStore()
    seen: list[int] = []

    def look(rank: int, person: str) -> None:
        if rank == 180:
            seen.append(len(store.links()))

    system = SlowSystem(max_in_flight=4, on_create=look)
    pusher(store, system).push(creates(200))
    assert all(len(f.links) <= push._BATCH for f in store.flushes)
    assert len(store.links()) == 200
    # By the 180th write, all but the last batch and those in flight were in the store.
    assert seen and seen[0] >= 180 - push._BATCH - system.max_in_flight


def test_stop_lets_the_writes_in_hand_finish_and_takes_no_new_one() -> None:
    stop = threading.Event()

    def stop_at_ten(rank: int, person: str) -> None:
        if rank == 10:
            stop.set()

    system = SlowSystem(max_in_flight=4, delay=0.002, on_create=stop_at_ten)
    store = RecordingStore()
    outcome = pusher(store, system, stop=stop).push(creates(100))
    assert 10 <= len(system.calls) <= 10 + 4 - 1
    assert set(store.links()) == {(p, "slow") for p in system.created}  # all recorded
    assert any("stopped" in m for m in outcome.messages)


def test_an_unavailable_system_gets_no_new_write_and_keeps_what_was_done() -> None:
    def go_down(rank: int, person: str) -> None:
        if rank == 12:
            raise SystemUnavailable("slow: down for maintenance", system="slow")

    system = SlowSystem(max_in_flight=4, delay=0.002, on_create=go_down)
    store = RecordingStore()
    outcome = pusher(store, system).push(creates(100))
    assert len(system.calls) <= 12 + 4 - 1
    assert "maintenance" in outcome.unavailable["slow"]
    assert set(store.links()) == {(p, "slow") for p in system.created}
    assert len(system.created) == len(system.calls) - 1


def test_a_crash_mid_push_records_nothing_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """SimulatedCrash is a dead process: it leaves the push, and no worker records after it."""
    monkeypatch.setattr(push, "_BATCH_SECONDS", 3600.0)  # only the crash decides what is kept
    monkeypatch.setattr(push, "_BATCH", 10)

    def die(rank: int, person: str) -> None:
        if rank == 25:
            raise SimulatedCrash("slow: create")

    system = SlowSystem(max_in_flight=4, delay=0.002, on_create=die)
    store = RecordingStore()
    with pytest.raises(SimulatedCrash):
        pusher(store, system).push(creates(100))
    assert len(system.calls) <= 25 + 4 - 1
    recorded = len(store.links())
    assert recorded <= 20 and recorded % 10 == 0  # whole batches flushed before the crash
    time.sleep(0.05)
    assert len(store.links()) == recorded


def test_a_crash_in_the_memory_system_still_kills_the_cycle() -> None:
    """The memory connector stays one at a time: its crash counts writes in order."""
    memory = MemoryConnector("m")
    memory.crash_after_writes = 3
    store = RecordingStore()
    with pytest.raises(SimulatedCrash):
        pusher(store, memory).push(creates(10, "m"))
    assert len(memory.records) == 3 and store.links() == {}


# -- one HTTP client, several threads -------------------------------------------------------


def test_a_throttle_answer_blocks_every_thread_of_the_system() -> None:
    arrivals: list[tuple[float, str]] = []
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            arrivals.append((time.monotonic(), request.url.path))
            first = len(arrivals) == 1
        if first:
            return httpx.Response(429, headers={"Retry-After": "0.3"})
        return httpx.Response(201, json={})

    client = HttpClient("sys", "http://sys.test", transport=httpx.MockTransport(handler))
    a = threading.Thread(target=client.request, args=("POST", "/a"))
    a.start()
    deadline = time.monotonic() + 5
    while client.throttled_for() == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    blocked_at = time.monotonic()
    assert client.throttled_for() > 0
    b = threading.Thread(target=client.request, args=("POST", "/b"))
    b.start()
    a.join(5)
    b.join(5)
    later = [(t, path) for t, path in arrivals[1:]]
    assert sorted(path for _, path in later) == ["/a", "/b"]  # the throttled create is resent
    assert all(t >= blocked_at + 0.25 for t, _ in later)
    assert client.stats.snapshot()["rate_limited"] == 1
    client.close()


def test_http_counters_are_exact_under_threads() -> None:
    client = HttpClient("sys", "http://sys.test",
                        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})))

    def hammer() -> None:
        for _ in range(200):
            client.request("PUT", "/x")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.stats.snapshot()["requests"] == 1600
    assert client.stats.snapshot()["writes"] == 1600
    assert client.stats.by_method["PUT"] == 1600
    client.close()
