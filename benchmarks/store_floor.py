"""The floor under an initial sync: only the rows syncd must make durable, nothing else.

For N new people syncd stores a golden record, a link in the source system and
a link in the target system — three rows with their JSON — in SQLite (WAL).
This script does just that with the bare ``sqlite3`` module: no planning,
matching, connectors or SQLAlchemy.  Whatever it prints is a lower bound for
``initial_s`` in ``engine.py``::

    python benchmarks/store_floor.py [-n 10000] [--repeat 3]   # prints floor_s=
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

LINK = (
    "INSERT INTO link (system, remote_id, golden_id, org_id, fields_json, hash, "
    "remote_updated_at, extra_json, excluded, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (golden_id, system) DO UPDATE SET remote_id = excluded.remote_id"
)


def one_run(n: int, path: Path) -> float:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE golden (id TEXT PRIMARY KEY, org TEXT, fields_json TEXT, "
               "deleted INT, updated_at TEXT)")
    db.execute("CREATE TABLE link (id INTEGER PRIMARY KEY, system TEXT, remote_id TEXT, "
               "golden_id TEXT, org_id TEXT, fields_json TEXT, hash TEXT, remote_updated_at TEXT, "
               "extra_json TEXT, excluded INT, updated_at TEXT, UNIQUE (system, remote_id), "
               "UNIQUE (golden_id, system))")
    people = [
        {"first_name": f"First{i}", "last_name": f"Last{i}", "email": f"person{i}@example.com",
         "phone": f"+1 555 {i:07d}", "job_title": "Engineer", "mobile": "", "fax": "",
         "salutation": "", "department": ""}
        for i in range(n)
    ]
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    stamp = "2026-11-23 09:00:00.000000"
    gc.collect()
    start = time.perf_counter()
    goldens, source, target = [], [], []
    for i, fields in enumerate(people):
        gid = hashlib.blake2b(f"a\x00{i}".encode(), digest_size=16).hexdigest()
        doc = encode(fields)
        goldens.append((gid, "acme", doc, 0, stamp))
        source.append(("a", str(i), gid, "1", doc, "h", stamp, "{}", 0, stamp))
        target.append(("b", str(i), gid, "1", doc, "h", stamp, "{}", 0, stamp))
    db.executemany("INSERT INTO golden VALUES (?,?,?,?,?)", goldens)
    db.executemany(LINK, source)
    db.commit()
    db.executemany(LINK, target)
    db.commit()
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="syncd-floor-") as tmp:
        runs = [one_run(args.n, Path(tmp) / f"floor-{k}.db") for k in range(args.repeat)]
    print(f"n={args.n}")
    print(f"floor_s={statistics.median(runs):.3f}")


if __name__ == "__main__":
    main()
