"""CardDAV benchmark: 1 000 new people into a local Radicale, then a no-op cycle.

The bar (issue 24): vdirsyncer 0.21 puts 1 000 new cards into Radicale in
27 s, and a no-op sync costs it one request.  Here a memory system holds
``-n`` people under a mapped organization; ``Syncer.run_once`` creates them
in a fresh Radicale address book (one ``PUT`` + ``If-None-Match: *`` each,
through the real connector, HTTP client and SQLite store), and a second
cycle finds nothing to do.  Radicale is started by
:func:`syncd.sandbox.carddav.start_server` on 127.0.0.1 (htpasswd auth, a
temporary folder) and talked to directly, with no front in between::

    python benchmarks/carddav.py [-n 1000] [--repeat 3] [--in-flight 4]

prints ``create_s=`` (the first cycle, median of ``--repeat`` runs),
``noop_requests=`` and ``noop_s=`` (the second cycle).  ``--floor`` adds
``floor_s=``: as many bare PUTs of ready-made cards, one after the other,
into another fresh Radicale — what the server itself takes on this machine.
``--vs-vdirsyncer`` installs vdirsyncer 0.21 into a temporary venv and times
its ``sync()`` of the same number of cards from a ``MemoryStorage`` into a
fresh Radicale, then a no-op sync (``benchmarks/vdirsyncer_dav_side.py``):
``vdirsyncer_create_s=`` and ``vdirsyncer_noop_s=``, medians too, so the
bar is measured on the machine that runs it.  Traffic goes to
127.0.0.1 only and each run is bounded by ``-n``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from syncd.config import CarddavConfig, MemoryConfig, Settings, SyncConfig
from syncd.connectors.base import Connector, build_connector
from syncd.connectors.memory import MemoryConnector
from syncd.connectors.vcard import new_card
from syncd.engine.cycle import Syncer
from syncd.http import BasicAuth, HttpClient
from syncd.logs import configure_logging
from syncd.sandbox.carddav import SANDBOX_PASSWORD, SANDBOX_USER, start_server
from syncd.store import Store

ORG = "Acme Inc"


def person(i: int) -> dict[str, str]:
    return {
        "first_name": f"First{i}",
        "last_name": f"Last{i}",
        "email": f"person{i}@example.com",
        "phone": f"+1 555 {i:07d}",
        "job_title": "Engineer" if i % 3 else "Manager",
    }


def one_run(n: int, in_flight: int, workdir: Path) -> tuple[float, int, float]:
    """(seconds of the creating cycle, requests of the no-op cycle, its seconds)."""
    server = start_server("radicale", workdir / f"radicale-{time.monotonic_ns()}")
    store = Store(f"sqlite:///{workdir / f'dav-{time.monotonic_ns()}.db'}")
    syncer: Syncer | None = None
    try:
        store.upgrade()
        source = MemoryConnector("source", page_size=1000)
        for i in range(n):
            source.add("1", person(i))
        cfg = CarddavConfig(kind="carddav", url=server.url, username=SANDBOX_USER,
                            password=SANDBOX_PASSWORD, max_in_flight=in_flight)
        settings = Settings(
            systems={"source": MemoryConfig(kind="memory"), "book": cfg},
            organizations={"acme": {"source": "1", "book": ORG}},
            sync=SyncConfig(max_delete_fraction=1.0),
        )
        book = build_connector("book", cfg)
        connectors: dict[str, Connector] = {"source": source, "book": book}
        syncer = Syncer(settings, store, connectors)
        start = time.perf_counter()
        report = syncer.run_once()
        created = time.perf_counter() - start
        assert report.exit_code == 0, report.as_dict()
        assert report.systems["book"].created == n, report.as_dict()
        before = book.traffic.request_count()
        start = time.perf_counter()
        quiet = syncer.run_once()
        noop = time.perf_counter() - start
        assert quiet.exit_code == 0 and quiet.writes == 0, quiet.as_dict()
        return created, book.traffic.request_count() - before, noop
    finally:
        if syncer is not None:
            syncer.close()
            for connector in syncer.connectors.values():
                connector.close()
        store.close()
        server.stop()


def floor(n: int, workdir: Path) -> float:
    """Seconds of ``n`` bare conditional PUTs into a fresh Radicale: the server's own cost."""
    server = start_server("radicale", workdir / f"floor-{time.monotonic_ns()}")
    cards = [new_card(f"floor{i}", ORG, person(i)) for i in range(n)]
    http = HttpClient("floor", server.origin, auth=BasicAuth(SANDBOX_USER, SANDBOX_PASSWORD))
    try:
        start = time.perf_counter()
        for i, card in enumerate(cards):
            http.request("PUT", f"{server.collection}floor{i}.vcf", content=card.encode(),
                         headers={"If-None-Match": "*", "Content-Type": "text/vcard"})
        return time.perf_counter() - start
    finally:
        http.close()
        server.stop()


def vdirsyncer_times(n: int, repeat: int, workdir: Path) -> list[dict[str, float]]:
    """vdirsyncer 0.21's own sync into fresh Radicales, in a throw-away venv."""
    venv = workdir / "vdirsyncer-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "vdirsyncer==0.21.0"],
                   check=True)
    side = Path(__file__).resolve().parent / "vdirsyncer_dav_side.py"
    out = []
    for k in range(repeat):
        server = start_server("radicale", workdir / f"vd-{k}")
        try:
            status = workdir / f"vd-status-{k}"
            status.mkdir()
            done = subprocess.run(
                [str(venv / "bin" / "python"), str(side), str(n), server.url, SANDBOX_USER,
                 SANDBOX_PASSWORD, str(status)],
                check=True, capture_output=True, text=True)
            out.append(json.loads(done.stdout))
        finally:
            server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-n", type=int, default=1000, help="people created (default 1000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--floor", action="store_true", help="also time bare PUTs")
    parser.add_argument("--vs-vdirsyncer", action="store_true",
                        help="also time vdirsyncer 0.21 on the same machine")
    parser.add_argument("--in-flight", type=int,
                        default=CarddavConfig.model_fields["max_in_flight"].default,
                        help="max_in_flight (default: the setting's default)")
    args = parser.parse_args()
    if not 0 < args.n <= 5000 or not 0 < args.repeat <= 10:
        parser.error("keep it bounded: 0 < n <= 5000, 0 < repeat <= 10")
    configure_logging("error", json=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(args.n, args.in_flight, Path(tmp)) for _ in range(args.repeat)]
        floors = [floor(args.n, Path(tmp)) for _ in range(args.repeat)] if args.floor else []
        vd = vdirsyncer_times(args.n, args.repeat, Path(tmp)) if args.vs_vdirsyncer else []
    print(f"creates={args.n}")
    print(f"max_in_flight={args.in_flight}")
    print(f"create_s={statistics.median(r[0] for r in runs):.2f}")
    print(f"noop_requests={statistics.median(r[1] for r in runs):g}")
    print(f"noop_s={statistics.median(r[2] for r in runs):.3f}")
    print(f"runs_create_s={','.join(f'{r[0]:.2f}' for r in runs)}")
    if floors:
        print(f"floor_s={statistics.median(floors):.2f}")
        print(f"runs_floor_s={','.join(f'{f:.2f}' for f in floors)}")
    if vd:
        print(f"vdirsyncer_create_s={statistics.median(r['initial_s'] for r in vd):.2f}")
        print(f"vdirsyncer_noop_s={statistics.median(r['noop_s'] for r in vd):.3f}")
        laps = ",".join(f"{r['initial_s']:.2f}" for r in vd)
        print(f"runs_vdirsyncer_create_s={laps}")


if __name__ == "__main__":
    main()
