"""Runs inside a throw-away venv with vdirsyncer installed (see engine.py).

Prints one JSON line: median initial and no-op sync times over N vCards.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import time
from pathlib import Path

from vdirsyncer.storage.memory import MemoryStorage
from vdirsyncer.sync import sync
from vdirsyncer.sync.status import SqliteStatus
from vdirsyncer.vobject import Item


def vcard(i: int) -> str:
    return (
        "BEGIN:VCARD\r\nVERSION:3.0\r\n"
        f"UID:person{i}\r\nFN:First{i} Last{i}\r\nN:Last{i};First{i};;;\r\n"
        f"EMAIL:person{i}@example.com\r\nTEL:+1 555 {i:07d}\r\n"
        f"TITLE:{'Engineer' if i % 3 else 'Manager'}\r\nEND:VCARD\r\n"
    )


async def one_run(n: int, workdir: Path, k: int) -> tuple[float, float]:
    a, b = MemoryStorage(), MemoryStorage()
    for i in range(n):
        await a.upload(Item(vcard(i)))
    status = SqliteStatus(str(workdir / f"status-{k}.sqlite"))
    gc.collect()  # same rule as engine.py: no garbage pending when a timing starts
    start = time.perf_counter()
    await sync(a, b, status)
    initial = time.perf_counter() - start
    assert len(b.items) == n
    gc.collect()
    start = time.perf_counter()
    await sync(a, b, status)
    noop = time.perf_counter() - start
    return initial, noop


def main() -> None:
    n, repeat, workdir = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    runs = [asyncio.run(one_run(n, workdir, k)) for k in range(repeat)]
    print(json.dumps({
        "initial_s": statistics.median(r[0] for r in runs),
        "noop_s": statistics.median(r[1] for r in runs),
    }))


if __name__ == "__main__":
    main()
