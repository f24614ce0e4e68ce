"""Field policies end to end: the five simulated APIs over real HTTP on 127.0.0.1, the
configuration as an operator writes it, ``syncd once`` cycles and the dry run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.app import syncer
from syncd.config import load_settings
from syncd.contact import normalise
from syncd.engine.cycle import Syncer
from syncd.sandbox.serve import Sandbox, build_sandbox, write_config

FIVE = ("lightening", "harvest", "zoho", "logisense", "valomnia")


class Box:
    """A served sandbox (Zoho Books named ``zoho``, as in CONTRACT §6) and a syncer on it."""

    def __init__(self, sandbox: Sandbox, config: Path, sync: Syncer) -> None:
        self.sandbox = sandbox
        self.config = config
        self.sync = sync

    def sim(self, system: str) -> Any:
        return self.sandbox.sims["zoho_books" if system == "zoho" else system]

    def record(self, system: str, email: str) -> dict[str, Any]:
        sim = self.sim(system)
        with sim.lock:
            (rec,) = [r for r in sim.admin_dump()
                      if normalise("email", r.get("email")) == normalise("email", email)]
        return dict(rec)

    def edit(self, system: str, who: str, **fields: str) -> None:
        rec = self.record(system, who)
        sim = self.sim(system)
        with sim.lock:
            # Admin updates take the canonical fields; Harvest's wants the name along.
            sim.admin_update(str(rec["id"]), {"first_name": rec["first_name"],
                                              "last_name": rec["last_name"], **fields})

    def plus_book(self, *systems: str) -> set[str]:
        """These simulators, and the address book when the sandbox serves one (Radicale)."""
        return set(systems) | ({"carddav"} if "carddav" in self.sandbox.sims else set())

    def writes(self) -> dict[str, int]:
        return {name: sim.writes() for name, sim in self.sandbox.sims.items()}

    def once(self) -> dict[str, int]:
        """One cycle (a full sweep, as the periodic one); the writes each simulator got."""
        before = self.writes()
        report = self.sync.run_once(full=set())
        assert report.exit_code == 0, report.as_dict()
        return {name: n - before[name] for name, n in self.writes().items() if n != before[name]}


@pytest.fixture
def box(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Box]:
    fields: dict[str, Any] = request.param
    sandbox = build_sandbox(12, synced_only=True)
    assert {"zoho_books" if n == "zoho" else n for n in FIVE} <= set(sandbox.sims)
    sandbox.start()
    try:
        doc = sandbox.config(f"sqlite:///{tmp_path / 'syncd.db'}")
        doc["systems"]["zoho"] = doc["systems"].pop("zoho_books")
        for ids in doc["organizations"].values():
            ids["zoho"] = ids.pop("zoho_books")
        doc["fields"] = fields
        path = tmp_path / "syncd.toml"
        write_config(doc, path)
        with syncer(load_settings(path)) as sync:
            box = Box(sandbox, path, sync)
            box.once()  # the first sync: everyone everywhere
            assert box.once() == {}
            yield box
    finally:
        sandbox.stop()


KATHERINE = "katherine.hamilton3@globex.example"
"""Seeded in all five systems, with a mobile number."""


@pytest.mark.parametrize("box", [{"email": {"sources": ["logisense"]}}], indirect=True)
def test_email_owned_by_logisense(box: Box) -> None:
    box.edit("harvest", KATHERINE, email="kate@harvest.example")
    # The dry run (what `once --dry-run --json` prints) shows the write-back for what it is.
    planned = box.sync.run_once(dry_run=True).as_dict()["planned"]
    assert [(p["system"], list(p["changes"]), p.get("reason")) for p in planned] == [
        ("harvest", ["email"], "policy")]
    assert normalise("email", planned[0]["changes"]["email"]["new"]) == KATHERINE
    assert box.once() == {"harvest": 1}  # reverted in Harvest, sent nowhere else
    for system in FIVE:
        assert normalise("email", box.record(system, KATHERINE)["email"]) == KATHERINE
    assert box.once() == {}
    box.edit("logisense", KATHERINE, email="kate@billing.example")
    assert set(box.once()) == box.plus_book("lightening", "harvest", "zoho_books", "valomnia")
    for system in FIVE:
        assert box.record(system, "kate@billing.example")["first_name"] == "Katherine"
    assert box.once() == {}


@pytest.mark.parametrize("box", [{"mobile": {"never_clear": True}}], indirect=True)
def test_mobile_never_cleared(box: Box) -> None:
    held = {s: box.record(s, KATHERINE)["mobile"] for s in FIVE}
    assert all(normalise("mobile", m) == "15550203" for m in held.values()), held
    box.edit("harvest", KATHERINE, mobile="")
    assert box.once() == {"harvest": 1}  # undone there, and nowhere else touched
    for system in FIVE:
        assert normalise("mobile", box.record(system, KATHERINE)["mobile"]) == "15550203"
    assert box.once() == {}


@pytest.mark.parametrize("box", [{"job_title": {"targets": ["harvest", "zoho"]}}],
                         indirect=True)
def test_job_title_only_in_harvest_and_zoho(box: Box) -> None:
    own = {s: box.record(s, KATHERINE).get("job_title") for s in ("lightening", "valomnia")}
    box.edit("harvest", KATHERINE, job_title="Chief Buyer")
    assert box.once() == {"zoho_books": 1}
    assert box.record("zoho", KATHERINE)["job_title"] == "Chief Buyer"
    assert {s: box.record(s, KATHERINE).get("job_title") for s in own} == own
    assert "job_title" not in box.record("logisense", KATHERINE)  # LogiSense has none
    assert box.once() == {}
    # Another system's title is its own: not read, so it goes nowhere.
    box.edit("valomnia", KATHERINE, job_title="Field Rep")
    assert box.once() == {}
    assert box.record("harvest", KATHERINE)["job_title"] == "Chief Buyer"
    # A person first seen in Harvest reaches the others without a title.
    harvest = box.sim("harvest")
    org = str(box.record("harvest", KATHERINE)["org"])
    with harvest.lock:
        harvest.admin_create(org, {"first_name": "Hedy", "last_name": "Lamarr",
                                   "email": "hedy@globex.example", "job_title": "Inventor"})
    assert set(box.once()) == box.plus_book("lightening", "zoho_books", "logisense", "valomnia")
    assert box.record("zoho", "hedy@globex.example")["job_title"] == "Inventor"
    for system in ("lightening", "valomnia"):
        assert not box.record(system, "hedy@globex.example").get("job_title"), system
    assert box.once() == {}
