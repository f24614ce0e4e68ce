"""The console's read model (``syncd.readmodel``): the snapshot it searches and the status it
reports, rebuilt when the store's revision moves on (in the background, or on the next read)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from syncd.config import load_settings
from tests.e2e import write_config

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def test_the_console_snapshot_follows_the_store_revision(tmp_path: Path) -> None:
    import time

    from syncd.model import Golden, Link
    from syncd.readmodel import ReadModel
    from syncd.readside import connected
    from syncd.store import Store

    settings = load_settings(write_config(tmp_path))
    store = Store(settings.store.url)
    store.upgrade()

    def add(i: int, name: str) -> None:
        gid = f"{i:032x}"
        fields = {"first_name": name, "last_name": "Tester", "email": f"{name.lower()}@x.io"}
        with store.write() as conn:
            store.save_changes(conn, goldens={gid: Golden(gid, "acme", fields)},
                               links={(gid, "crm"): Link("crm", gid, str(i), "1", fields)},
                               removed=(), now=NOW)

    add(1, "Ada")
    with connected(settings) as connectors:
        model = ReadModel(settings, store, connectors)
        assert [p["name"] for p in model.search("tester")[0]] == ["Ada Tester"]
        assert model.status()["systems"]["billing"]["pending_writes"] == 1
        add(2, "Grace")
        deadline = time.monotonic() + 20
        while len(model.search("tester")[0]) < 2:  # rebuilt in the background after the write
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert model.status()["systems"]["billing"]["pending_writes"] == 2
        waiting = ReadModel(settings, store, connectors, background=False)
        assert len(waiting.search("tester")[0]) == 2
        add(3, "Linus")
        assert len(waiting.search("tester")[0]) == 3
    store.close()
