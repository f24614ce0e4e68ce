"""Push-rate benchmark: 1 000 creates into a simulated LogiSense answering in 100 ms.

The target (issue 15): with 100 ms of latency per request, a push reaches at
least 90 % of the system's rate budget (``max_rps`` here, LogiSense documents
none) with a bounded number of requests in flight.  One request at a time
cannot: 100 ms an answer is ~10 writes/s whatever the budget.

The LogiSense simulator is served on 127.0.0.1 with ``Faults.latency`` added
to every answer; a memory system holds ``-n`` people under a mapped
organization and ``Syncer.run_once`` pushes them (one ``PATCH Account`` per
create) through the real connector, rate limiter and SQLite store.  The push
is timed from the cycle's ``planned`` event for LogiSense to the end of the
cycle (the last batch of bookkeeping included), median of ``--repeat`` runs::

    python benchmarks/push_rate.py [-n 1000] [--repeat 3] [--max-rps 20]
                                   [--in-flight 4] [--latency 0.1]

prints ``writes_per_s=``, ``budget_rps=``, ``share_of_budget=`` (medians),
``max_in_flight=`` and ``latency_s=``.  Traffic goes to 127.0.0.1 only, and
each run is bounded: ``-n`` writes, at ``--max-rps`` at most.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from syncd.config import LogisenseConfig, MemoryConfig, Settings, SyncConfig
from syncd.connectors.base import Connector, build_connector
from syncd.connectors.memory import MemoryConnector
from syncd.engine.cycle import Syncer
from syncd.logs import configure_logging
from syncd.sandbox.common import Faults, serve
from syncd.sandbox.logisense import LogisenseSim
from syncd.store import Store

ACCOUNT = "16"  # one of the simulator's accounts


def person(i: int) -> dict[str, str]:
    return {
        "first_name": f"First{i}",
        "last_name": f"Last{i}",
        "email": f"push{i}@example.com",
        "phone": f"+1 555 {i:07d}",
    }


def one_run(n: int, max_rps: float, in_flight: int, latency: float, workdir: Path) -> float:
    """Writes per second of one push of ``n`` creates into a fresh simulator."""
    sim = LogisenseSim()
    handle = serve(sim.app)
    store = Store(f"sqlite:///{workdir / f'push-{time.monotonic_ns()}.db'}")
    syncer: Syncer | None = None
    try:
        store.upgrade()
        source = MemoryConnector("source", page_size=1000)
        for i in range(n):
            source.add("1", person(i))
        target_cfg = LogisenseConfig(
            kind="logisense", base_url=handle.url, client_id=sim.client_id,
            username=sim.username, password=sim.password, contact_type_id=9,
            max_rps=max_rps, max_in_flight=in_flight,
        )
        settings = Settings(
            systems={"source": MemoryConfig(kind="memory"), "logisense": target_cfg},
            organizations={"acme": {"source": "1", "logisense": ACCOUNT}},
            sync=SyncConfig(max_delete_fraction=1.0),
        )
        connectors: dict[str, Connector] = {
            "source": source, "logisense": build_connector("logisense", target_cfg),
        }
        syncer = Syncer(settings, store, connectors)
        before = sim.writes()
        sim.faults = Faults(latency=latency)
        marks: dict[str, float] = {}

        def progress(system: str, what: str, count: int) -> None:
            if system == "logisense" and what == "planned":
                marks["push"] = time.perf_counter()

        syncer.progress = progress
        report = syncer.run_once()
        end = time.perf_counter()
        written = sim.writes() - before
        created = sum(1 for r in sim.admin_dump() if str(r.get("org")) == ACCOUNT
                      and str(r.get("email", "")).startswith("push"))
        assert report.exit_code == 0, report.as_dict()
        assert created == n and written == n, f"{created} created, {written} writes, of {n}"
        return n / (end - marks["push"])
    finally:
        if syncer is not None:
            syncer.close()
            for connector in syncer.connectors.values():
                connector.close()
        store.close()
        handle.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-n", type=int, default=1000, help="creates per push (default 1000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-rps", type=float, default=20.0, help="the system's rate budget")
    parser.add_argument("--in-flight", type=int,
                        default=LogisenseConfig.model_fields["max_in_flight"].default,
                        help="max_in_flight (default: the setting's default)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added per request")
    args = parser.parse_args()
    if not 0 < args.n <= 5000 or not 0 < args.repeat <= 10 or args.max_rps <= 0:
        parser.error("keep it bounded: 0 < n <= 5000, 0 < repeat <= 10, max-rps > 0")
    configure_logging("error", json=True)
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            rates.append(one_run(args.n, args.max_rps, args.in_flight, args.latency, Path(tmp)))
    rate = statistics.median(rates)
    print(f"creates={args.n}")
    print(f"latency_s={args.latency}")
    print(f"max_in_flight={args.in_flight}")
    print(f"budget_rps={args.max_rps:g}")
    print(f"writes_per_s={rate:.2f}")
    print(f"share_of_budget={rate / args.max_rps:.3f}")
    print(f"runs_writes_per_s={','.join(f'{r:.2f}' for r in rates)}")


if __name__ == "__main__":
    main()
