"""The store on both backends: migrations, round trips, constraints, the instance lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from syncd.errors import StoreLockedError
from syncd.model import Conflict, Golden, Link
from syncd.store import Store
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
