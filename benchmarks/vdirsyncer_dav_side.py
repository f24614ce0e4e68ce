"""Runs inside a throw-away venv with vdirsyncer 0.21 installed (see carddav.py).

Syncs N new vCards from a vdirsyncer ``MemoryStorage`` into the CardDAV address
book at URL (a fresh local Radicale), then a no-op sync; prints one JSON line
with both times.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
from vdirsyncer.storage.dav import CardDAVStorage
from vdirsyncer.storage.memory import MemoryStorage
from vdirsyncer.sync import sync
from vdirsyncer.sync.status import SqliteStatus
from vdirsyncer.vobject import Item


def vcard(i: int) -> str:
    return (
        "BEGIN:VCARD\r\nVERSION:3.0\r\n"
        f"UID:vd{i}\r\nFN:First{i} Last{i}\r\nN:Last{i};First{i};;;\r\n"
        f"EMAIL:person{i}@example.com\r\nTEL:+1 555 {i:07d}\r\n"
        f"TITLE:{'Engineer' if i % 3 else 'Manager'}\r\nORG:Acme Inc\r\nEND:VCARD\r\n"
    )


async def run(n: int, url: str, user: str, password: str, workdir: Path) -> dict[str, float]:
    a = MemoryStorage()
    for i in range(n):
        await a.upload(Item(vcard(i)))
    async with aiohttp.TCPConnector(limit=4) as connector:
        b = CardDAVStorage(url=url, username=user, password=password, connector=connector)
        status = SqliteStatus(str(workdir / "status.sqlite"))
        start = time.perf_counter()
        await sync(a, b, status)
        initial = time.perf_counter() - start
        start = time.perf_counter()
        await sync(a, b, status)
        noop = time.perf_counter() - start
    return {"initial_s": initial, "noop_s": noop}


def main() -> None:
    n, url, user, password, workdir = (int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4],
                                       Path(sys.argv[5]))
    print(json.dumps(asyncio.run(run(n, url, user, password, workdir))))


if __name__ == "__main__":
    main()
