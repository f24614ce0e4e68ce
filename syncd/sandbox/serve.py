"""``syncd sandbox``: every simulator that exists, seeded, on 127.0.0.1, with a ready config.

Ports are fixed per kind from a base (CONTRACT §3): lightening +0, harvest +1,
zoho_books +2, logisense +3, valomnia +4, and carddav +5 (a real Radicale on a
port of its own behind it, when Radicale is installed).  A kind without a simulator yet is
simply not served; one whose connector is not in the build yet is served but
left out of the written config (and of ``syncd demo``).  Seed data is
deterministic: realistic people in two organizations, some of them entered in
several systems (so the first sync has matching to do), with small
differences in how they were typed.
"""

from __future__ import annotations

import importlib.util
import random
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from syncd.sandbox.common import ServerHandle, Simulator, serve, stop_all

__all__ = ["PORT_OFFSETS", "Sandbox", "build_sandbox", "has_connector", "serve_forever"]

PORT_OFFSETS = {"lightening": 0, "harvest": 1, "zoho_books": 2, "logisense": 3, "valomnia": 4,
                "carddav": 5}
ORGS = ("acme", "globex")

FIRST = ["Ada", "Grace", "Alan", "Katherine", "Linus", "Margaret", "Dennis", "Barbara",
         "Edsger", "Frances", "Ken", "Radia", "Tim", "Hedy", "John", "Sophie"]
LAST = ["Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "Ritchie",
        "Liskov", "Dijkstra", "Allen", "Thompson", "Perlman", "Berners-Lee", "Lamarr",
        "McCarthy", "Wilson"]
TITLES = ["Accounts Payable", "CFO", "Office Manager", "Procurement", "IT Lead", ""]


@dataclass(frozen=True)
class _Kind:
    """How to build one simulator and the config table that points at it."""

    make: Callable[[], Simulator]
    org_ids: dict[str, str]
    config: Callable[[str], dict[str, Any]]


def _lightening() -> _Kind:
    from syncd.sandbox.lightening import SANDBOX_TOKEN, LighteningSim

    orgs = {"acme": "1", "globex": "2"}
    return _Kind(
        make=lambda: LighteningSim(customers=[int(v) for v in orgs.values()]),
        org_ids=orgs,
        config=lambda url: {"kind": "lightening", "base_url": url, "token": SANDBOX_TOKEN},
    )


def _harvest() -> _Kind:
    from syncd.sandbox.harvest import SANDBOX_PASSWORD, SANDBOX_USER, HarvestSim

    orgs = {"acme": "11072", "globex": "11073"}
    return _Kind(
        make=lambda: HarvestSim(clients=[int(v) for v in orgs.values()]),
        org_ids=orgs,
        config=lambda url: {"kind": "harvest", "base_url": url, "username": SANDBOX_USER,
                            "password": SANDBOX_PASSWORD},
    )


def _logisense() -> _Kind:
    from syncd.sandbox.logisense import LogisenseSim

    orgs = {"acme": "16", "globex": "17"}
    return _Kind(
        make=lambda: LogisenseSim(accounts=[int(v) for v in orgs.values()]),
        org_ids=orgs,
        config=lambda url: {"kind": "logisense", "base_url": url, "client_id": "syncd",
                            "username": "api", "password": "secret", "contact_type_id": 9},
    )


def _valomnia() -> _Kind:
    from syncd.sandbox.valomnia import SANDBOX_PASSWORD, SANDBOX_USER, ValomniaSim

    orgs = {"acme": "3229", "globex": "3230"}
    return _Kind(
        make=lambda: ValomniaSim(customers=[int(v) for v in orgs.values()]),
        org_ids=orgs,
        config=lambda url: {"kind": "valomnia", "base_url": url, "username": SANDBOX_USER,
                            "password": SANDBOX_PASSWORD},
    )


def _zoho_books() -> _Kind:
    from syncd.sandbox.zoho_books import SANDBOX_ORGANIZATION_ID, ZohoBooksSim, config_for

    orgs = {"acme": "460000000026049", "globex": "460000000026050"}  # parent contact ids
    return _Kind(
        make=lambda: ZohoBooksSim(organizations={SANDBOX_ORGANIZATION_ID: list(orgs.values())}),
        org_ids=orgs,
        config=config_for,
    )


def _carddav() -> _Kind:
    """A real Radicale (when installed: it is with the dev extras) behind a counted front."""
    from syncd.sandbox.carddav import (
        SANDBOX_PASSWORD,
        SANDBOX_USER,
        CarddavSim,
        available,
        start_server,
    )

    if not available("radicale"):
        raise ImportError("radicale is not installed")
    orgs = {"acme": "Acme Inc", "globex": "Globex Corporation"}  # the vCard ORG
    collection = f"/{SANDBOX_USER}/contacts/"
    return _Kind(
        make=lambda: CarddavSim(start_server("radicale")),
        org_ids=orgs,
        config=lambda url: {"kind": "carddav", "url": url + collection,
                            "username": SANDBOX_USER, "password": SANDBOX_PASSWORD},
    )


def has_connector(kind: str) -> bool:
    """Whether this build has the connector for ``kind`` (looked up, not imported)."""
    from syncd.connectors.base import KINDS

    return kind in KINDS and importlib.util.find_spec(KINDS[kind]) is not None


def available_kinds(*, synced_only: bool = False) -> dict[str, _Kind]:
    """The simulators this build has (a connector issue adds its own here).

    ``synced_only`` leaves out a simulator whose connector is not in this build
    yet: ``syncd demo`` syncs every simulator it starts and checks they agree.
    """
    kinds: dict[str, _Kind] = {}
    for name, factory in (("lightening", _lightening), ("harvest", _harvest),
                          ("zoho_books", _zoho_books), ("logisense", _logisense),
                          ("valomnia", _valomnia), ("carddav", _carddav)):
        if synced_only and not has_connector(name):
            continue
        try:
            kinds[name] = factory()
        except ImportError:  # pragma: no cover - a build without that simulator
            continue
    return kinds


@dataclass
class Sandbox:
    sims: dict[str, Simulator]
    kinds: dict[str, _Kind]
    handles: dict[str, ServerHandle] = field(default_factory=dict)
    seeded: list[dict[str, str]] = field(default_factory=list)

    def start(self, base_port: int = 0) -> None:
        for name, sim in self.sims.items():
            port = base_port + PORT_OFFSETS[name] if base_port else 0
            self.handles[name] = serve(sim.app, port)

    def stop(self) -> None:
        stop_all(self.handles.values())
        for sim in self.sims.values():
            close = getattr(sim, "close", None)  # a simulator fronting a real server
            if close is not None:
                close()

    def config(self, store_url: str) -> dict[str, Any]:
        # A simulator served before its connector exists stays out of the config
        # (`syncd once` would stop on "has no connector in this build yet"); it joins
        # by itself once syncd/connectors/<kind>.py exists.
        synced = [name for name in self.handles if has_connector(name)]
        systems = {name: self.kinds[name].config(self.handles[name].url) for name in synced}
        orgs = {org: {name: self.kinds[name].org_ids[org] for name in synced} for org in ORGS}
        return {
            "store": {"url": store_url},
            "sync": {"interval": "1m", "conflict": "newest", "deletes": "propagate",
                     "max_delete_fraction": 0.5},
            "systems": systems,
            "organizations": orgs,
        }


def build_sandbox(contacts: int = 20, seed: int = 7, *, synced_only: bool = False) -> Sandbox:
    """Simulators seeded with ``contacts`` people; about a third are in several systems."""
    kinds = available_kinds(synced_only=synced_only)
    sims = {name: kind.make() for name, kind in kinds.items()}
    rng = random.Random(seed)
    names = list(sims)
    box = Sandbox(sims, kinds)
    for i in range(contacts):
        first, last = FIRST[i % len(FIRST)], LAST[(i * 7) % len(LAST)]
        org = ORGS[i % len(ORGS)]
        person = {
            "first_name": first,
            "last_name": last,
            "email": f"{first}.{last}{i}@{org}.example".lower(),
            "phone": f"+1 555 01{i:02d}",
            "mobile": f"+1 555 02{i:02d}" if i % 2 else "",
            "job_title": TITLES[i % len(TITLES)],
            "salutation": rng.choice(["Ms.", "Mr.", "Dr.", ""]),
        }
        homes = names if i % 3 == 0 else [rng.choice(names)]
        for j, name in enumerate(homes):
            typed = dict(person)
            if j:  # the same person typed again elsewhere: other case, other phone format
                typed["email"] = typed["email"].upper()
                typed["phone"] = typed["phone"].replace(" ", "-")
            with sims[name].lock:
                sims[name].admin_create(kinds[name].org_ids[org], typed)
        box.seeded.append(person)
    return box


def write_config(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Written by `syncd sandbox`: the simulated systems on 127.0.0.1.\n"
        "# The credentials below are the simulators' published sandbox logins.\n"
        + tomli_w.dumps(doc)
    )


def serve_forever(base_port: int, contacts: int, config_path: str | None) -> int:
    box = build_sandbox(contacts)
    box.start(base_port)
    path = Path(config_path or "sandbox.toml")
    write_config(box.config(f"sqlite:///{path.with_suffix('.db').resolve()}"), path)
    for name, handle in box.handles.items():
        note = "" if has_connector(name) else "  [no connector yet: not in the config]"
        print(f"{name:10} {handle.url}  (admin: {handle.url}/_admin/state){note}")
    print(f"config written to {path}; try: syncd --config {path} once")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    box.stop()
    return 0
