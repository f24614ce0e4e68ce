"""The console at scale: every page and endpoint over a store of 100 000 people.

Builds an SQLite store (people linked in three systems, quarantined writes of a
few kinds, logged conflicts, a day of runs), starts ``syncd web`` on it in a
subprocess, and times each page over loopback HTTP after one warm-up request
(the first builds the snapshot the console keeps per store revision)::

    python benchmarks/console.py [-n 100000] [--requests 40]

It prints ``NAME_p50_ms=… NAME_p95_ms=…`` per page or endpoint (``overview_``,
``errors_``, ``person_``, ``search_…`` …), plus ``snapshot_s=``: how long the
first request took.  Targets: pages under 200 ms at the median, search under 100 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from syncd.model import Conflict, Failure, Golden, Link, Watermark
from syncd.store import Store

TOKEN = "benchmark-console-token"
SYSTEMS = ("crm", "billing", "erp")
ERRORS = (
    "billing: PUT /contacts/{rid} (update): HTTP 422 '{email}' email is not allowed",
    "erp: POST /customers/{rid}/contacts (create): HTTP 400 phone: invalid number",
    "crm: PUT /people/{rid} (update): HTTP 409 record locked by another user",
)


def person(i: int) -> dict[str, str]:
    return {"first_name": f"First{i}", "last_name": f"Last{i}", "email": f"person{i}@example.com",
            "phone": f"+1 555 {i:07d}", "job_title": "Engineer"}


def gid_of(i: int) -> str:
    return f"{i:032x}"


def build(n: int, tmp: Path) -> Path:
    db = tmp / "syncd.db"
    store = Store(f"sqlite:///{db}")
    store.upgrade()
    now = datetime.now(UTC)
    goldens = {gid_of(i): Golden(gid_of(i), "acme", person(i)) for i in range(n)}
    links = {(gid_of(i), s): Link(s, gid_of(i), str(100_000 + i), "1", person(i), now)
             for i in range(n) for s in SYSTEMS}
    with store.write() as conn:
        store.save_changes(conn, goldens=goldens, links=links, removed=(), now=now)
        store.save_watermarks(conn, [Watermark(s, now, now, now, now, None) for s in SYSTEMS])
        for k in range(600):
            i = (k * 7919) % n
            system = SYSTEMS[k % 3]
            error = ERRORS[k % 3].format(rid=100_000 + i, email=f"person{i}@example.com")
            store.record_failure(conn, Failure(system, gid_of(i), "update", str(100_000 + i), 5,
                                               error, "h", True, None, now))
        store.save_conflicts(conn, [
            Conflict(gid_of(i), "phone", (("crm", f"+1 555 {i:07d}", now),
                                          ("billing", "+1 555 9999999", now - timedelta(hours=1))),
                     "crm", f"+1 555 {i:07d}", "newest")
            for i in range(0, n, max(1, n // 2000))
        ], now)
    for k in range(288):  # a day of five-minute cycles
        started = now - timedelta(minutes=5 * (288 - k))
        store.record_run("poll", started, started + timedelta(seconds=3), 0, {
            "systems": {s: {"created": 0, "updated": k % 4, "deleted": 0, "failed": 0,
                            "requests": 3} for s in SYSTEMS}, "errors": [], "capped_until": {}})
    store.close()
    cfg = tmp / "syncd.toml"
    systems = "".join(f'\n[systems.{s}]\nkind = "memory"\n' for s in SYSTEMS)
    orgs = "".join(f'{s} = "1"\n' for s in SYSTEMS)
    cfg.write_text(f'[store]\nurl = "sqlite:///{db}"\n{systems}\n[organizations.acme]\n{orgs}')
    return cfg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(client: httpx.Client, path: str) -> float:
    start = time.perf_counter()
    answer = client.get(path)
    elapsed = (time.perf_counter() - start) * 1000
    if answer.status_code != 200:
        raise SystemExit(f"{path}: HTTP {answer.status_code}: {answer.text[:200]}")
    return elapsed


def report(name: str, times: list[float]) -> None:
    times = sorted(times)
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    print(f"{name}_p50_ms={statistics.median(times):.1f} {name}_p95_ms={p95:.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        began = time.perf_counter()
        cfg = build(args.n, tmp)
        print(f"build_s={time.perf_counter() - began:.1f}", flush=True)
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(cfg), "--log-level", "warning", "web",
             "--port", str(port)],
            env={**os.environ, "SYNCD_WEB__TOKEN": TOKEN},
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                              headers={"Authorization": f"Bearer {TOKEN}"}) as client:
                for _ in range(200):
                    try:
                        client.get("/healthz")
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
                print(f"snapshot_s={timed(client, '/') / 1000:.2f}", flush=True)
                n = args.n
                cases = {
                    "overview": lambda: "/",
                    "errors": lambda: "/errors",
                    "errors_csv": lambda: "/errors.csv",
                    "conflicts": lambda: "/conflicts",
                    "runs": lambda: "/runs",
                    "person": lambda: f"/people/{gid_of(rng.randrange(n))}",
                    "search_name": lambda: f"/people?q=Last{rng.randrange(n)}",
                    "search_email": lambda: f"/people?q=person{rng.randrange(n)}@example.com",
                    "search_phone": lambda: f"/people?q=555%20{rng.randrange(n):07d}",
                    "search_remote_id": lambda: f"/people?q=crm:{100_000 + rng.randrange(n)}",
                    "api_status": lambda: "/api/status",
                    "api_errors": lambda: "/api/errors",
                    "api_person": lambda: f"/api/people/{gid_of(rng.randrange(n))}",
                    "api_search": lambda: f"/api/people?q=First{rng.randrange(n)}",
                }
                for name, path in cases.items():
                    report(name, [timed(client, path()) for _ in range(args.requests)])
                # Right after a write (here an operator's retry) the snapshot is rebuilt in
                # the background: the overview must not wait for it.
                ids = [e["id"] for e in client.get("/api/errors").json()["errors"]]
                after = []
                for fid in ids[:10]:
                    client.post(f"/api/errors/{fid}/retry")
                    after.append(timed(client, "/"))
                report("overview_after_write", after)
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
