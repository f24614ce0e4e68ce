"""Engine benchmark: N contacts from one memory system into an empty second one.

Runs through the real store (an SQLite file), both systems in full-scan mode,
so a no-op cycle does the same work as a full comparison.  Timings are
in-process, data generation excluded, median of ``--repeat`` runs::

    python benchmarks/engine.py [-n 10000] [--repeat 3] [--history-cost] [--vs-vdirsyncer]

prints ``initial_s=``, ``store_floor_s=`` (``store_floor.py`` in the same run) and
``initial_vs_floor=``, ``noop_s=`` (a long-lived process: the daemon), ``noop_cold_s=``
(a fresh process reading its state from the store: the CronJob), ``noop_incremental_s=``
(both systems incremental), ``incremental_share=`` and ``peak_rss_mb=``; with
``--history-cost`` it also times the initial cycle with the change history off
(``store.keep_history = "0s"``), interleaved with the runs above, and prints
``initial_no_history_s=`` and ``history_overhead=`` (and the same in process CPU
time, ``*_cpu_s=`` and ``history_overhead_cpu=``, steadier on a shared machine); with
``--vs-vdirsyncer`` it also installs vdirsyncer into a
temporary venv, runs its ``sync()`` between two ``MemoryStorage`` objects with a
``SqliteStatus`` file on the same N contacts (as vCards), and prints
``ratio_initial=`` and ``ratio_noop=`` (vdirsyncer time / syncd time).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import store_floor
from syncd.config import MemoryConfig, Settings
from syncd.connectors.memory import MemoryConnector
from syncd.engine.cycle import Syncer
from syncd.logs import configure_logging
from syncd.store import Store

HERE = Path(__file__).resolve().parent


def person(i: int) -> dict[str, str]:
    return {
        "first_name": f"First{i}",
        "last_name": f"Last{i}",
        "email": f"person{i}@example.com",
        "phone": f"+1 555 {i:07d}",
        "job_title": "Engineer" if i % 3 else "Manager",
    }


class _Clock:
    """Each cycle happens one poll interval after the previous one, as in production."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=5)
        return self.now


def one_run(n: int, workdir: Path, incremental: bool,
            history: bool = True) -> tuple[float, float, float, float]:
    db = workdir / f"syncd-{time.monotonic_ns()}.db"
    store = Store(f"sqlite:///{db}", keep_history=timedelta(days=365 if history else 0))
    store.upgrade()
    a = MemoryConnector("a", incremental=incremental, page_size=1000)
    b = MemoryConnector("b", incremental=incremental, page_size=1000)
    for i in range(n):
        a.add("1", person(i))
    settings = Settings(
        systems={"a": MemoryConfig(kind="memory", incremental=incremental),
                 "b": MemoryConfig(kind="memory", incremental=incremental)},
        organizations={"acme": {"a": "1", "b": "1"}},
    )
    syncer = Syncer(settings, store, {"a": a, "b": b}, clock=_Clock())
    cpu = time.process_time()
    initial = _timed(syncer.run_once)
    initial_cpu = time.process_time() - cpu  # what a machine shared with others inflates less
    assert len(b.records) == n, f"initial cycle left b with {len(b.records)} of {n}"
    noop = _timed(syncer.run_once)
    # A fresh Syncer has no state in memory: the CronJob case, state read from the store.
    cold = Syncer(settings, store, {"a": a, "b": b}, clock=_Clock())
    cold.clock.now = syncer.clock.now
    noop_cold = _timed(cold.run_once)
    assert b.writes == n and a.writes == 0, "a no-op cycle wrote"
    store.close()
    return initial, noop, noop_cold, initial_cpu


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()  # start each timing with no garbage pending from the previous run
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def vdirsyncer_times(n: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", "vdirsyncer==0.21.0"],
            check=True,
        )
        out = subprocess.run(
            [str(venv / "bin" / "python"), str(HERE / "vdirsyncer_side.py"), str(n), str(repeat),
             tmp],
            check=True, capture_output=True, text=True,
        ).stdout
        result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--vs-vdirsyncer", action="store_true")
    parser.add_argument("--history-cost", action="store_true",
                        help="also time the initial cycle with the change history off")
    args = parser.parse_args()
    configure_logging("error", json=True)
    bare: list[tuple[float, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        full = []
        if args.history_cost:  # warm up first: the first run of a process is slower
            one_run(min(args.n, 1000), Path(tmp), incremental=False)
        for _ in range(args.repeat):  # interleaved: a slow moment of the machine hits both
            full.append(one_run(args.n, Path(tmp), incremental=False))
            if args.history_cost:
                bare.append(one_run(args.n, Path(tmp), incremental=False, history=False))
        inc = [one_run(args.n, Path(tmp), incremental=True) for _ in range(args.repeat)]
        floor = statistics.median(store_floor.one_run(args.n, Path(tmp) / f"floor-{k}.db")
                                  for k in range(args.repeat))
    initial = statistics.median(t[0] for t in full)
    noop = statistics.median(t[1] for t in full)
    noop_cold = statistics.median(t[2] for t in full)
    noop_inc = statistics.median(t[1] for t in inc)
    print(f"n={args.n}")
    print(f"initial_s={initial:.3f}")
    print(f"store_floor_s={floor:.3f}")
    print(f"initial_vs_floor={initial / floor:.2f}")
    print(f"noop_s={noop:.3f}")
    print(f"noop_cold_s={noop_cold:.3f}")
    print(f"noop_incremental_s={noop_inc:.4f}")
    print(f"incremental_share={noop_inc / noop:.3%}")
    if bare:
        initial_bare = statistics.median(t[0] for t in bare)
        print(f"initial_no_history_s={initial_bare:.3f}")
        print(f"history_overhead={initial / initial_bare - 1:.1%}")
        cpu, cpu_bare = (statistics.median(t[3] for t in runs) for runs in (full, bare))
        print(f"initial_cpu_s={cpu:.3f}")
        print(f"initial_no_history_cpu_s={cpu_bare:.3f}")
        print(f"history_overhead_cpu={cpu / cpu_bare - 1:.1%}")
    print(f"peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")
    if args.vs_vdirsyncer:
        vd = vdirsyncer_times(args.n, args.repeat)
        print(f"vdirsyncer_initial_s={vd['initial_s']:.3f}")
        print(f"vdirsyncer_noop_s={vd['noop_s']:.3f}")
        print(f"ratio_initial={vd['initial_s'] / initial:.2f}")
        print(f"ratio_noop={vd['noop_s'] / noop:.2f}")
        print(f"ratio_noop_cold={vd['noop_s'] / noop_cold:.2f}")


if __name__ == "__main__":
    main()
