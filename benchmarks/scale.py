"""Scale benchmark: N people across five systems whose records live outside the heap.

Each system is a :class:`GeneratedSystem`: its records are generated from the
person's index as pages are listed, with a small overlay dict for what was
edited or written since, so the peak RSS printed is syncd's own, not the
test double's.  All five systems already hold every person (first sync =
matching, no creates).  Each phase runs in a fresh process (the CronJob case)
on one SQLite file:

1. ``initial``: first sync of 5 x N records;
2. ``noop``: nothing changed anywhere (a cold process);
3. ``changed``: 1 % of the people edited in one system each, pushed to the four others.

``noop_floor_s`` is the least any engine must do to see that nothing changed:
list every record, hash its fields and look the hash up in a dict.  Usage::

    python benchmarks/scale.py -n 10000 [-n 100000] [--repeat 3] [--incremental]

prints, per N, ``initial_s``, ``noop_s``, ``changed_s``, ``noop_floor_s``,
``noop_vs_floor`` and each phase's ``peak_rss_mb`` (medians), then the ratio
of each figure between the largest and the smallest N.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from syncd.config import MemoryConfig, Settings
from syncd.connectors.base import Capabilities, Page, RemoteRecord, WriteResult
from syncd.connectors.memory import InProcess
from syncd.contact import FIELDS, Fields
from syncd.engine.cycle import Syncer
from syncd.logs import configure_logging
from syncd.store import Store

SYSTEMS = ("s0", "s1", "s2", "s3", "s4")
PAGE = 1000
BASE = datetime(2026, 1, 1, tzinfo=UTC)
CHANGED_SHARE = 0.01


def person(i: int) -> Fields:
    """Person ``i`` as every system holds it (all canonical fields, in FIELDS order)."""
    return {
        "first_name": f"First{i}",
        "last_name": f"Last{i}",
        "email": f"person{i}@example.com",
        "phone": f"+1 555 {i:07d}",
        "mobile": "",
        "fax": "",
        "job_title": "Engineer" if i % 3 else "Manager",
        "salutation": "",
        "department": f"Dept{i % 17}",
    }


def changed_people(n: int) -> list[int]:
    """The people the ``changed`` phase edits: 1 %, spread evenly."""
    step = max(1, round(1 / CHANGED_SHARE))
    return list(range(0, n, step))


class GeneratedSystem(InProcess):
    """A system of ``n`` generated records plus an overlay of what changed since.

    Remote ids are ``<system>-<i>``; a record in the overlay (edited, created
    or deleted) shadows the generated one.  Full scans list everything;
    incremental reads list the overlay entries stamped since the given moment.
    """

    def __init__(self, name: str, n: int, *, incremental: bool, start: datetime = BASE) -> None:
        self.name = name
        self.n = n
        self.incremental = incremental
        self.overlay: dict[str, tuple[Fields, datetime] | None] = {}
        self.requests = 0
        self.writes = 0
        self._lock = threading.Lock()
        self._clock = start
        """Edits are stamped from the phase's own clock: after the last cycle's cursor."""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(fields=frozenset(FIELDS), incremental=self.incremental,
                            timestamps=True, overlap=timedelta(seconds=1))

    def _stamp(self) -> datetime:
        self._clock += timedelta(microseconds=1)
        return self._clock

    def edit(self, i: int, **changes: str) -> None:
        rid = f"{self.name}-{i}"
        held = self.overlay.get(rid)
        fields = held[0] if held else person(i)
        self.overlay[rid] = ({**fields, **changes}, self._stamp())

    def list_records(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Page]:
        del org_ids
        if since is not None:
            rows = [RemoteRecord(rid, "1", held[0], held[1])
                    for rid, held in sorted(self.overlay.items(), key=lambda kv: kv[1][1]
                                            if kv[1] else BASE)
                    if held is not None and held[1] >= since]
            self.requests += 1
            yield Page(rows)
            return
        overlay = self.overlay
        prefix = self.name + "-"
        for start in range(0, self.n, PAGE):
            records: list[RemoteRecord] = []
            for i in range(start, min(start + PAGE, self.n)):
                rid = prefix + str(i)
                if rid in overlay:
                    held = overlay[rid]
                    if held is not None:
                        records.append(RemoteRecord(rid, "1", held[0], held[1]))
                else:
                    records.append(RemoteRecord(rid, "1", person(i), BASE))
            self.requests += 1
            yield Page(records)
        extra = [RemoteRecord(rid, "1", held[0], held[1]) for rid, held in overlay.items()
                 if held is not None and not rid.startswith(prefix)]
        if extra:
            yield Page(extra)

    def create(self, org_id: str, fields: Fields) -> WriteResult:
        with self._lock:
            self.writes += 1
            rid = f"new-{self.name}-{self.writes}"
            when = self._stamp()
            self.overlay[rid] = (dict(fields), when)
        return WriteResult(rid, dict(fields), when)

    def update(self, remote_id: str, org_id: str, changed: Fields, desired: Fields,
               extra: Mapping[str, Any]) -> WriteResult:
        with self._lock:
            self.writes += 1
            held = self.overlay.get(remote_id)
            fields = held[0] if held else person(int(remote_id.rsplit("-", 1)[1]))
            new = {**fields, **changed}
            when = self._stamp()
            self.overlay[remote_id] = (new, when)
        return WriteResult(remote_id, dict(new), when)

    def delete(self, remote_id: str, org_id: str, extra: Mapping[str, Any]) -> None:
        with self._lock:
            self.writes += 1
            self.overlay[remote_id] = None

    def close(self) -> None:
        return None


class _Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=5)
        return self.now


def _settings(incremental: bool) -> Settings:
    return Settings(
        systems={s: MemoryConfig(kind="memory", incremental=incremental) for s in SYSTEMS},
        organizations={"acme": dict.fromkeys(SYSTEMS, "1")},
    )


def phase(name: str, n: int, db: Path, incremental: bool) -> dict[str, float]:
    """One phase in this (fresh) process: its cycle time and the process's peak RSS."""
    configure_logging("error", json=True)
    # Each phase is an hour after the previous one.
    start = BASE + timedelta(days=1, hours={"initial": 0, "noop": 1, "changed": 2}[name])
    systems = {s: GeneratedSystem(s, n, incremental=incremental, start=start) for s in SYSTEMS}
    store = Store(f"sqlite:///{db}")
    store.upgrade()
    syncer = Syncer(_settings(incremental), store, systems, clock=_Clock(start))  # type: ignore[arg-type]
    if name == "changed":
        for k, i in enumerate(changed_people(n)):
            systems[SYSTEMS[k % len(SYSTEMS)]].edit(i, job_title=f"Changed{i}")
    gc.collect()
    began = time.perf_counter()
    report = syncer.run_once()
    elapsed = time.perf_counter() - began
    assert report.exit_code == 0, report.errors[:3]
    writes = sum(s.writes for s in systems.values())
    expected = {"initial": 0, "noop": 0, "changed": 4 * len(changed_people(n))}[name]
    assert writes == expected, f"{name}: {writes} writes, expected {expected}"
    syncer.close()
    store.close()
    return {"s": elapsed, "rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak RSS.  VmHWM where there is one: Linux's ``ru_maxrss``
    carries over an ``exec`` from the forking parent, whose size is not ours."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def noop_floor(n: int) -> float:
    """List every record of every system, hash its fields, look the hash up in a dict."""
    systems = [GeneratedSystem(s, n, incremental=False) for s in SYSTEMS]
    known = {
        f"{s.name}-{i}": hashlib.blake2b(json.dumps(person(i), sort_keys=True).encode(),
                                         digest_size=8).digest()
        for s in systems for i in range(n)
    }
    gc.collect()
    began = time.perf_counter()
    changed = 0
    for system in systems:
        for page in system.list_records(["1"], None):
            for rec in page.records:
                digest = hashlib.blake2b(json.dumps(rec.fields, sort_keys=True).encode(),
                                         digest_size=8).digest()
                if known.get(rec.remote_id) != digest:
                    changed += 1
    elapsed = time.perf_counter() - began
    assert changed == 0
    return elapsed


def _child(name: str, n: int, db: Path, incremental: bool) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", name, "-n", str(n), "--db", str(db)]
        + (["--incremental"] if incremental else []),
        check=True, capture_output=True, text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def run(n: int, repeat: int, incremental: bool) -> dict[str, float]:
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="syncd-scale-") as tmp:
        for k in range(repeat):
            db = Path(tmp) / f"scale-{k}.db"
            figures: dict[str, float] = {}
            for name in ("initial", "noop", "changed"):
                got = _child(name, n, db, incremental)
                figures[f"{name}_s"] = got["s"]
                figures[f"{name}_peak_rss_mb"] = got["rss_mb"]
            figures["noop_floor_s"] = noop_floor(n)
            runs.append(figures)
    medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    medians["noop_vs_floor"] = medians["noop_s"] / medians["noop_floor_s"]
    return medians


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, action="append")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--incremental", action="store_true")
    parser.add_argument("--phase", choices=("initial", "noop", "changed"))
    parser.add_argument("--db", type=Path)
    args = parser.parse_args()
    sizes = args.n or [10_000]
    if args.phase:
        assert args.db is not None
        print(json.dumps(phase(args.phase, sizes[0], args.db, args.incremental)))
        return
    results = {n: run(n, args.repeat, args.incremental) for n in sizes}
    for n, figures in results.items():
        print(f"n={n} systems={len(SYSTEMS)} incremental={args.incremental}")
        for key, value in figures.items():
            print(f"  {key}={value:.4f}" if key.endswith("_s") else f"  {key}={value:.2f}")
    if len(sizes) > 1:
        small, large = min(sizes), max(sizes)
        print(f"ratio {large}/{small} (linear = {large / small:.0f}):")
        for key in results[small]:
            if results[small][key]:
                print(f"  {key}={results[large][key] / results[small][key]:.2f}")


if __name__ == "__main__":
    main()
