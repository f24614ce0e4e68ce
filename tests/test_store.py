"""The store on both backends: migrations, round trips, constraints, the instance lock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.errors import StoreLockedError
from syncd.model import Conflict, Golden, Link
from syncd.store import Store
from syncd.store.dialect import CHUNK, GOLDEN_COLUMNS, LINK_COLUMNS
from syncd.store.repo import Failure, Watermark
from syncd.store.tables import metadata

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _person(gid: str = "g1") -> Golden:
    return Golden(gid, "acme", {"first_name": "Ada", "last_name": "Lovelace", "email": "a@x.io"})


def _link(gid: str = "g1", system: str = "a", rid: str | None = "7") -> Link:
    return Link(system, gid, rid, "1", {"first_name": "Ada"}, NOW, {"points": {"email": 3}})


def test_migrations_create_every_table(store: Store) -> None:
    tables = set(sa.inspect(store.engine).get_table_names())
    assert set(metadata.tables) <= tables
    assert "alembic_version" in tables


def test_migration_matches_the_models(store: Store) -> None:
    inspector = sa.inspect(store.engine)
    for name, table in metadata.tables.items():
        migrated = {c["name"] for c in inspector.get_columns(name)}
        assert migrated == {c.name for c in table.columns}, name
        indexes = {(i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(name)
                   if not i.get("duplicates_constraint")}  # Postgres lists UNIQUE ones too
        assert indexes == {(i.name, tuple(c.name for c in i.columns)) for i in table.indexes}, name


def test_state_round_trip(store: Store) -> None:
    with store.write() as conn:
        store.save_changes(conn, goldens={"g1": _person()}, links={("g1", "a"): _link()},
                           removed=[], now=NOW)
    state = store.load_state()
    assert state.goldens["g1"] == _person()
    link = state.links[("g1", "a")]
    assert link == _link()
    assert link.remote_updated_at is not None and link.remote_updated_at.tzinfo is not None


def test_changing_and_removing_links(store: Store) -> None:
    with store.write() as conn:
        store.save_changes(conn, goldens={"g1": _person()}, links={("g1", "a"): _link()},
                           removed=[], now=NOW)
    moved = Link("a", "g1", "8", "1", {"first_name": "Ada L"})
    with store.write() as conn:
        store.save_changes(conn, goldens={"g1": Golden("g1", "acme", {"x": "1"}, deleted=True)},
                           links={("g1", "a"): moved}, removed=[], now=NOW)
    state = store.load_state()
    assert state.links[("g1", "a")].remote_id == "8"
    assert state.goldens["g1"].deleted
    with store.write() as conn:
        store.save_changes(conn, goldens={}, links={}, removed=[("g1", "a")], now=NOW)
    assert store.load_state().links == {}


def test_one_link_per_remote_record(store: Store) -> None:
    with store.write() as conn:
        store.save_changes(conn, goldens={"g1": _person("g1"), "g2": _person("g2")},
                           links={("g1", "a"): _link("g1")}, removed=[], now=NOW)
    with pytest.raises(sa.exc.IntegrityError), store.write() as conn:
        conn.execute(sa.insert(metadata.tables["link"]).values(
            system="a", remote_id="7", golden_id="g2", org_id="1", fields_json="{}", hash="",
            extra_json="{}", excluded=False, updated_at=NOW))


def test_one_link_per_person_per_system(store: Store) -> None:
    with store.write() as conn:
        store.save_changes(conn, goldens={"g1": _person()}, links={("g1", "a"): _link()},
                           removed=[], now=NOW)
    with pytest.raises(sa.exc.IntegrityError), store.write() as conn:
        conn.execute(sa.insert(metadata.tables["link"]).values(
            system="a", remote_id="99", golden_id="g1", org_id="1", fields_json="{}", hash="",
            extra_json="{}", excluded=False, updated_at=NOW))


def test_watermarks_are_aware_utc(store: Store) -> None:
    berlin = datetime(2026, 11, 23, 13, 0, tzinfo=UTC) + timedelta(0)
    with store.write() as conn:
        store.save_watermarks(conn, [Watermark("a", cursor=berlin, last_poll_at=NOW)])
    mark = store.watermarks()["a"]
    assert mark.cursor == berlin and mark.cursor.tzinfo is not None
    with store.write() as conn:
        store.save_watermarks(conn, [Watermark("a", cursor=NOW)])
    assert store.watermarks()["a"].cursor == NOW


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive datetime"), store.write() as conn:
        store.save_watermarks(conn, [Watermark("a", cursor=datetime(2026, 1, 1))])


def test_failures_retry_and_quarantine(store: Store) -> None:
    failure = Failure("a", "g1", "create", None, 5, "HTTP 422 bad email", "h", True, None, NOW)
    with store.write() as conn:
        store.record_failure(conn, failure)
        store.record_failure(conn, failure)
    assert [f.golden_id for f in store.failures(quarantined=True)] == ["g1"]
    assert store.retry_quarantined("a") == 1
    assert store.failures(quarantined=True) == []
    assert store.failures()[0].attempts == 0


def test_failures_are_selected_by_quarantine_system_and_person(store: Store) -> None:
    def failure(system: str, gid: str, quarantined: bool) -> Failure:
        return Failure(system, gid, "update", "7", 5, "HTTP 422", "h", quarantined, None, NOW)

    with store.write() as conn:
        for f in (failure("b", "g1", True), failure("a", "g2", True), failure("a", "g1", True),
                  failure("a", "g3", False)):
            store.record_failure(conn, f)
    assert [(f.system, f.golden_id) for f in store.failures()] == [
        ("a", "g1"), ("a", "g2"), ("a", "g3"), ("b", "g1")]
    assert [f.golden_id for f in store.failures(quarantined=False)] == ["g3"]
    assert [(f.system, f.golden_id) for f in store.quarantined()] == [
        ("a", "g1"), ("a", "g2"), ("b", "g1")]
    assert [f.golden_id for f in store.quarantined("a")] == ["g1", "g2"]
    assert [f.system for f in store.quarantined(golden_id="g1")] == ["a", "b"]
    assert [f.system for f in store.quarantined("b", "g1")] == ["b"]
    assert store.quarantined("a", "g3") == []  # failed, not quarantined


def test_the_dialect_speaks_each_driver(store: Store) -> None:
    dialect = store.dialect
    assert dialect.mark == ("?" if store.is_sqlite else "%s")
    assert dialect.marks(3) == ", ".join([dialect.mark] * 3)
    with pytest.raises(ValueError, match="naive datetime"):
        dialect.ts(datetime(2026, 1, 1))
    assert dialect.ts(None) is None
    berlin = datetime(2026, 11, 23, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert dialect.ts(berlin) == ("2026-11-23 12:00:00.000000" if store.is_sqlite else berlin)
    people = {f"g{i:04d}": _person(f"g{i:04d}") for i in range(CHUNK + 2)}  # two chunks
    with store.write() as conn:
        store.save_changes(conn, goldens=people, links={("g0001", "a"): _link("g0001")},
                           removed=[], now=NOW)
        # In the caller's transaction: a person written in it is seen before the commit.
        store.save_changes(conn, goldens={"new": _person("new")}, links={}, removed=[], now=NOW)
        seen = dialect.select_in("SELECT id FROM golden WHERE id IN ({marks})", ["new"], conn=conn)
        assert seen == [("new",)]
    rows = dialect.select_in(f"SELECT {GOLDEN_COLUMNS} FROM golden WHERE id IN ({{marks}})",
                             [*people, "nobody"])
    assert dialect.goldens(rows) == people
    with dialect.cursor() as cursor:
        cursor.execute(f"SELECT {LINK_COLUMNS} FROM link WHERE system = {dialect.mark}", ("a",))
        assert dialect.links(cursor.fetchall()) == {("g0001", "a"): _link("g0001")}


def test_conflicts_are_logged(store: Store) -> None:
    conflict = Conflict("g1", "email", (("a", "x@a", NOW), ("b", "x@b", NOW)), "a", "x@a", "newest")
    with store.write() as conn:
        store.save_conflicts(conn, [conflict], NOW)
    rows = store.conflicts()
    assert rows[0]["field"] == "email" and rows[0]["winner"] == "a"
    assert [c["system"] for c in rows[0]["candidates"]] == ["a", "b"]


def test_second_instance_is_locked_out(store_url: tuple[str, str | None]) -> None:
    url, schema = store_url
    first, second = Store(url, schema=schema), Store(url, schema=schema)
    first.acquire()
    try:
        with pytest.raises(StoreLockedError, match="locked by another syncd instance"):
            second.acquire()
    finally:
        first.release()
    second.acquire()
    second.release()
    first.close()
    second.close()


def test_upgrade_is_idempotent(store: Store) -> None:
    store.upgrade()
    assert not store.is_empty()


def _lock_pids(key_store: Store) -> list[int]:
    """Backends (other than ours) holding the advisory lock ``key_store`` would take."""
    with key_store.engine.connect() as conn:
        key = key_store.lock_key(conn)
        return [int(pid) for pid in conn.execute(
            sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid = :hi AND objid = :lo AND objsubid = 1 AND pid <> pg_backend_pid()"
            ),
            {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF},
        ).scalars()]


def test_tenants_in_separate_schemas_lock_independently(pg_schema: str) -> None:
    """Issue 10.3a: the lock is keyed by the schema the store really uses, not by a constant."""
    from tests.conftest import PG_URL

    other = pg_schema + "_b"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{other}"'))
    t1 = Store(f"{PG_URL}?options=-csearch_path%3D{pg_schema}")
    t2 = Store(f"{PG_URL}?options=-csearch_path%3D{other}")
    same_as_t1 = Store(PG_URL, schema=pg_schema)
    try:
        t1.acquire()
        t2.acquire()  # another tenant runs in parallel
        with pytest.raises(StoreLockedError, match="locked by another syncd instance"):
            same_as_t1.acquire()  # the same schema, named the other way
    finally:
        for s in (t1, t2, same_as_t1):
            s.close()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{other}" CASCADE'))
        admin.dispose()


def test_a_lock_whose_connection_died_is_reported_lost(pg_schema: str) -> None:
    """Issue 10.3b: a terminated lock connection is noticed, and releasing it is no traceback."""
    from tests.conftest import PG_URL

    holder, watcher = Store(PG_URL, schema=pg_schema), Store(PG_URL, schema=pg_schema)
    holder.acquire()
    assert holder.lock_held()
    (pid,) = _lock_pids(watcher)
    with watcher.engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    assert not holder.lock_held()
    holder.release()  # no exception on the dead connection
    watcher.acquire()  # the store is free again
    watcher.close()
    holder.close()


def test_a_cycle_that_loses_the_lock_writes_nothing_more(pg_schema: str) -> None:
    """The lock's connection dies while the cycle reads (a failover, a network cut): the
    cycle commits and pushes nothing, since another instance may be writing by now."""
    from syncd.errors import StoreLockedError
    from tests.conftest import PG_URL
    from tests.world import make_world

    holder, watcher = Store(PG_URL, schema=pg_schema), Store(PG_URL, schema=pg_schema)
    holder.create_all()
    holder.acquire()
    world = make_world(holder, ("a", "b"))
    world.systems["a"].add("org-a", {"first_name": "Ada", "last_name": "Lovelace",
                                     "email": "ada@example.com"})
    reading = world.systems["a"].list_records

    def cut_then_read(*args: Any, **kwargs: Any) -> Any:
        (pid,) = _lock_pids(watcher)
        with watcher.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        return reading(*args, **kwargs)

    world.systems["a"].list_records = cut_then_read  # type: ignore[method-assign]
    try:
        with pytest.raises(StoreLockedError, match="lost the instance lock"):
            world.cycle()
        assert world.writes() == 0
        assert not watcher.load_state().goldens
    finally:
        holder.release()
        holder.close()
        watcher.close()


def test_sqlite_lock_is_held_until_released(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'syncd.db'}")
    assert not store.lock_held()
    store.acquire()
    assert store.lock_held()
    seen: list[bool] = []
    worker = threading.Thread(target=lambda: seen.append(store.lock_held()))  # as the daemon asks
    worker.start()
    worker.join()
    assert seen == [True]
    store.release()
    assert not store.lock_held()
    store.close()


def test_runs_are_kept_for_keep_runs_and_found_by_their_start(store: Store) -> None:
    store.keep_runs = timedelta(days=30)
    for days in (0, 20, 40):  # one run each, in the order they happen
        when = NOW + timedelta(days=days)
        store.record_run("once", when, when, 0, {"day": days})
    kept = [r["summary"]["day"] for r in store.runs_since(NOW - timedelta(days=365))]
    assert kept == [20, 40]  # the first fell out of the 30 days before the newest
    assert [r["summary"]["day"] for r in store.last_runs(5)] == [40, 20]
    indexed = {tuple(i["column_names"]) for i in sa.inspect(store.engine).get_indexes("run")}
    assert ("started_at",) in indexed  # runs_since reads a day of runs, not the whole table


def test_a_store_connection_cut_mid_cycle_is_one_error_and_the_next_cycle_runs(
    pg_schema: str,
) -> None:
    """Postgres restarts (or a proxy drops us) while a cycle reads: exit 4 with the driver's
    words and no password, not a traceback that reads as "records failed" (exit 1)."""
    from syncd.connectors.memory import MemoryConnector
    from syncd.errors import StoreUnavailable
    from tests.conftest import PG_URL
    from tests.world import make_world

    admin = sa.create_engine(PG_URL)

    class CutsTheStore(MemoryConnector):
        cut = True

        def list_records(self, org_ids: Any, since: Any) -> Any:
            if self.cut:
                self.cut = False
                with admin.begin() as conn:  # every session of the store, and no other
                    conn.execute(sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :app"), {"app": pg_schema})
            return super().list_records(org_ids, since)

    store = Store(f"{PG_URL}?application_name={pg_schema}", schema=pg_schema)
    store.upgrade()
    world = make_world(store)
    world.systems["a"].add("org-a", {"first_name": "Ada", "last_name": "L", "email": "a@x.io"})
    world.cycle()
    cutter = CutsTheStore("a")
    cutter.records = world.systems["a"].records
    world.systems["a"] = cutter
    world.syncer = None
    cutter.add("org-a", {"first_name": "Bob", "last_name": "B", "email": "b@x.io"})
    with pytest.raises(StoreUnavailable) as err:
        world.cycle()
    assert err.value.exit_code == 4 and "terminat" in str(err.value)
    assert "\n" not in str(err.value) and "SELECT" not in str(err.value)
    assert world.cycle().exit_code == 0  # the pool connects again
    assert len(world.systems["b"].records) == 2
    store.close()
    admin.dispose()


def test_migration_0006_turns_the_unknown_outcome_prefix_into_its_column(tmp_path: Path) -> None:
    from syncd.store.migrate import upgrade

    old = Store(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(old.engine, "0005")
    at = datetime(2026, 11, 1, tzinfo=UTC).isoformat()
    with old.engine.begin() as conn:
        for gid, action, error in (("p1", "create", "outcome unknown: harvest: timed out"),
                                   ("p2", "create", "harvest: HTTP 422 email invalid"),
                                   ("p3", "update", "outcome unknown: not a create")):
            conn.exec_driver_sql(
                "INSERT INTO failure (system, golden_id, action, attempts, last_error, "
                "desired_hash, quarantined, created_at, updated_at) "
                "VALUES ('harvest', ?, ?, 1, ?, 'h', 0, ?, ?)", (gid, action, error, at, at))
    old.upgrade()
    found = {f.golden_id: (f.unknown, f.last_error) for f in old.failures()}
    assert found == {"p1": (True, "harvest: timed out"),
                     "p2": (False, "harvest: HTTP 422 email invalid"),
                     "p3": (False, "outcome unknown: not a create")}
    old.close()


def test_a_failure_keeps_whether_its_outcome_is_unknown(store: Store) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with store.write() as conn:
        store.record_failure(conn, Failure("a", "p1", "create", None, 1, "timed out", "h",
                                           False, now, now, unknown=True))
        store.record_failure(conn, Failure("a", "p2", "create", None, 1, "refused", "h",
                                           False, now, now))
    assert {f.golden_id: f.unknown for f in store.failures()} == {"p1": True, "p2": False}


def test_the_head_the_commands_compare_against_is_the_newest_migration(store: Store) -> None:
    from syncd.store.migrate import HEAD, head, stored_revision

    assert head() == HEAD
    with store.engine.connect() as conn:
        assert stored_revision(conn) == HEAD
