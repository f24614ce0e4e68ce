"""All five sandbox APIs at once, failing a fifth of their answers: syncd still converges.

Each cycle is ``syncd once`` in a fresh process, as a CronJob runs it; logins and token
requests fail like every other request, and Harvest throttles at 5 requests a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from syncd.contact import normalise
from syncd.sandbox.serve import build_sandbox, write_config
from tests.e2e import REPO

FIELDS = ("first_name", "last_name", "email", "phone", "mobile", "job_title")


def once(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(config), "once", "--json"],
        cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=240, check=False,
    )


def holdings(box: Any) -> dict[str, dict[str, dict[str, str]]]:
    """system → email → the mapped fields it holds, normalised."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for name, sim in box.sims.items():
        with sim.lock:
            records = sim.admin_dump()
        out[name] = {normalise("email", str(r.get("email", ""))): {
            f: normalise(f, str(r.get(f) or "")) for f in FIELDS if f in r} for r in records}
    return out


@pytest.mark.slow
def test_twenty_people_converge_within_five_onces_with_every_api_failing_a_fifth_of_requests(
    tmp_path: Path,
) -> None:
    box = build_sandbox(20)
    box.sims["harvest"].limit, box.sims["harvest"].window = 5, 1.0
    box.start()
    try:
        config = tmp_path / "syncd.toml"
        doc = box.config(f"sqlite:///{tmp_path / 'syncd.db'}")
        for system in doc["systems"].values():
            system["timeout"] = "10s"
        write_config(doc, config)
        for seed, sim in enumerate(box.sims.values()):
            sim.faults.error_rate, sim.faults.seed = 0.2, seed
            sim._random.seed(seed)
        for name in ("valomnia", "logisense", "zoho_books"):
            box.sims[name].faults.error_next = 1  # the first request, its login, surely fails
        seeded = {normalise("email", p["email"]) for p in box.seeded}
        codes: list[int] = []
        for _ in range(5):
            done = once(config)
            codes.append(done.returncode)
            assert done.returncode in (0, 1), (codes, done.stdout[-3000:], done.stderr[-3000:])
            report = json.loads(done.stdout)
            for name in box.sims:  # an error names its system once
                assert not any(f"{name}: {name}:" in e for e in report["errors"]), report["errors"]
            assert not any("given up" in e or ("outcome unknown, not resent" in e and "login" in e)
                           for e in report["errors"]), report["errors"]
        held = holdings(box)
        for name, people in held.items():
            assert set(people) == seeded, (name, codes, sorted(seeded - set(people)))
        # Every field each system can hold agrees across systems.
        for email in seeded:
            copies = {name: people[email] for name, people in held.items()}
            for field in FIELDS:
                values = {v[field] for v in copies.values() if field in v}
                assert len(values) <= 1, (email, field, copies)
        assert sum(s.counters["login"] for s in box.sims.values()) > 0
    finally:
        box.stop()
