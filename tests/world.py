"""A small world of memory systems around one store, for engine tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from syncd.config import MemoryConfig, Settings, SyncConfig
from syncd.connectors.memory import MemoryConnector
from syncd.contact import normalise
from syncd.engine.cycle import CycleReport, Syncer
from syncd.store import Store

ORG = "acme"


class SimTime:
    """A simulated monotonic clock (``syncd.http.Clock``) for HTTP clients and limiters.

    Sleeping just moves it on, so a throttle window or a backoff is honoured in
    full while no test waits for it, nor spins against the real clock.  A
    simulator that shares it (``HarvestSim(monotonic=clock.now)``) counts its
    own window on the same time.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.slept = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        seconds = max(seconds, 1e-6)  # a float too small to move the clock would spin forever
        self.t += seconds
        self.slept += seconds


@dataclass
class Clock:
    now: datetime = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float | None = None, **delta: float) -> None:
        """Move on by ``seconds`` and any other ``timedelta`` keywords; an hour if none."""
        if seconds is None and not delta:
            seconds = 3600
        self.now += timedelta(seconds=seconds or 0, **delta)


@dataclass
class World:
    store: Store
    systems: dict[str, MemoryConnector]
    settings: Settings
    clock: Clock = field(default_factory=Clock)
    syncer: Syncer | None = None

    def cycle(self, **options: Any) -> CycleReport:
        """One cycle by a long-lived Syncer (as in the daemon, with its state cache)."""
        self.clock.advance()
        if self.syncer is None:
            self.syncer = Syncer(self.settings, self.store, self.systems, clock=self.clock)
        return self.syncer.run_once(**options)

    def people(self, system: str) -> list[dict[str, str]]:
        return [dict(r.fields) for r in self.systems[system].records.values()]

    def find(self, system: str, email: str) -> tuple[str, dict[str, str]]:
        for rid, rec in self.systems[system].records.items():
            if normalise("email", rec.fields.get("email")) == normalise("email", email):
                return rid, dict(rec.fields)
        raise KeyError(f"{email} not in {system}")

    def writes(self) -> int:
        return sum(s.writes for s in self.systems.values())


def make_world(
    store: Store,
    names: tuple[str, ...] = ("a", "b"),
    *,
    incremental: tuple[str, ...] = (),
    sync: dict[str, Any] | None = None,
    orgs: tuple[str, ...] = (),
    fields: dict[str, Any] | None = None,
    **connector_options: Any,
) -> World:
    """Memory systems around ``store``; ``orgs`` are more organizations (``{org}-{system}``);
    ``fields``: the ``[fields.*]`` policy tables."""
    clock = Clock()
    systems = {
        name: MemoryConnector(name, incremental=name in incremental, clock=clock,
                              **connector_options)
        for name in names
    }
    settings = Settings(
        systems={n: MemoryConfig(kind="memory", incremental=n in incremental) for n in names},
        organizations={ORG: {n: f"org-{n}" for n in names},
                       **{o: {n: f"{o}-{n}" for n in names} for o in orgs}},
        sync=SyncConfig(**(sync or {})),
        fields=fields or {},
    )
    return World(store, systems, settings, clock)


# -- the three-system world of the engine tests (test_cycle, test_plan, test_match, test_writes)
# A module takes the fixture with ``from tests.world import world`` (and lists it in __all__).

ADA = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
       "phone": "+44 20 7946 0000"}
BOB = {"first_name": "Bob", "last_name": "Babbage", "email": "bob@example.com"}


@pytest.fixture
def world(store: Store) -> World:
    return make_world(store, ("a", "b", "c"), incremental=("c",),
                      sync={"max_delete_fraction": 0.5})


def seed(world: World, *people: dict[str, str], system: str = "a") -> list[str]:
    """Add ``people`` to ``system`` and run the cycle that spreads them; their ids there."""
    ids = [world.systems[system].add(f"org-{system}", p) for p in people]
    world.cycle()
    return ids


def names(world: World, system: str) -> list[str]:
    """Everyone ``system`` holds, as sorted "First Last"."""
    return sorted(f"{p['first_name']} {p['last_name']}" for p in world.people(system))
