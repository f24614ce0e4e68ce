"""Real CardDAV servers for the tests: one Radicale and one Xandikos per session, a fresh
address book per test, served through :class:`CarddavSim` (counters, faults, hostility)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from syncd.config import CarddavConfig, MemoryConfig, Settings, SyncConfig
from syncd.connectors.carddav import CarddavConnector, from_config
from syncd.connectors.memory import MemoryConnector
from syncd.engine.cycle import CycleReport, Syncer
from syncd.sandbox.carddav import (
    SANDBOX_PASSWORD,
    SANDBOX_USER,
    CarddavSim,
    DavServer,
    available,
    start_server,
)
from syncd.sandbox.common import serve
from syncd.store import Store
from tests.contract import STOPPING
from tests.world import Clock

__all__ = ["ORG", "Pair", "book", "dav_server", "make", "pair", "sim"]

ORG = "Acme Inc"
_BOOKS = itertools.count(1)
_MKCOL = ('<?xml version="1.0" encoding="utf-8"?><D:mkcol xmlns:D="DAV:" '
          'xmlns:C="urn:ietf:params:xml:ns:carddav"><D:set><D:prop><D:resourcetype>'
          "<D:collection/><C:addressbook/></D:resourcetype></D:prop></D:set></D:mkcol>")


@pytest.fixture(scope="session", params=["radicale", "xandikos"])
def dav_server(request: pytest.FixtureRequest) -> Iterator[DavServer]:
    kind = str(request.param)
    if not available(kind):
        pytest.skip(f"{kind} is not installed (pip install -e '.[dev]')")
    server = start_server(kind)
    yield server
    server.stop()


@pytest.fixture
def book(dav_server: DavServer) -> DavServer:
    """A new, empty address book on the session's server."""
    parent = dav_server.collection.rstrip("/").rsplit("/", 1)[0]
    collection = f"{parent}/book{next(_BOOKS)}/"
    status, _, body = dav_server.request("MKCOL", collection, _MKCOL.encode(),
                                         {"Content-Type": "application/xml"})
    assert status in (200, 201), (status, body[:300])
    return dataclasses.replace(dav_server, collection=collection, owns_folder=False)


@pytest.fixture
def sim(book: DavServer) -> Iterator[CarddavSim]:
    simulator = CarddavSim(book)
    handle = serve(simulator.app)
    simulator.front = handle.url
    yield simulator
    handle.ask_to_stop()
    STOPPING.append(handle)


def make(sim: CarddavSim, *, password: str = SANDBOX_PASSWORD, direct: bool = False,
         **options: Any) -> CarddavConnector:
    """A connector for ``sim``'s address book (``direct``: to the server, not the front)."""
    origin = sim.server.origin if direct else sim.front
    cfg = CarddavConfig(kind="carddav", url=origin + sim.server.collection,
                        username=SANDBOX_USER, password=password)
    return from_config("book", cfg, sleep=lambda s: None, **options)


@dataclasses.dataclass
class Pair:
    """CardDAV + a memory system around one store: the two-system scenarios."""

    sim: CarddavSim
    store: Store
    book: CarddavConnector
    mem: MemoryConnector
    clock: Clock
    settings: Settings
    syncer: Syncer | None = None

    def cycle(self, **options: Any) -> CycleReport:
        self.clock.advance()
        if self.syncer is None:
            self.syncer = Syncer(self.settings, self.store, {"book": self.book, "mem": self.mem},
                                 clock=self.clock)
        return self.syncer.run_once(**options)

    def restart(self) -> None:
        """A new process: new connector, new engine, only the store is kept."""
        self.book.close()
        self.book = make(self.sim)
        self.syncer = None

    def card(self, email: str) -> dict[str, Any]:
        found = [c for c in self.sim.admin_dump() if c["email"] == email]
        assert len(found) == 1, (email, found)
        return found[0]

    def person(self, email: str) -> tuple[str, dict[str, str]]:
        for rid, rec in self.mem.records.items():
            if rec.fields.get("email") == email:
                return rid, dict(rec.fields)
        raise KeyError(email)


def pair(sim: CarddavSim, store: Store, **sync: Any) -> Pair:
    clock = Clock()
    settings = Settings(
        systems={
            "book": CarddavConfig(kind="carddav", url=sim.front + sim.server.collection,
                                  username=SANDBOX_USER, password=SANDBOX_PASSWORD),
            "mem": MemoryConfig(kind="memory"),
        },
        organizations={"acme": {"book": ORG, "mem": "org-mem"}},
        sync=SyncConfig(**sync),
    )
    return Pair(sim, store, make(sim), MemoryConnector("mem", clock=clock), clock, settings)
