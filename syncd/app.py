"""Wiring shared by the commands: settings → store (migrated, locked) → connectors → Syncer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from syncd.config import Settings
from syncd.connectors.base import Connector, build_connector
from syncd.engine.cycle import Syncer
from syncd.errors import ConfigError
from syncd.store.migrate import HEAD, stored_revision
from syncd.store.repo import Store

__all__ = [
    "build_connectors", "ensure_schema", "migrated_store", "open_store", "ready_store", "syncer",
]


def ensure_schema(store: Store) -> None:
    """Migrate an SQLite store in place; a Postgres store must be upgraded explicitly."""
    with store.engine.connect() as conn:
        current = stored_revision(conn)
    if current == HEAD:
        return
    if store.is_sqlite:
        store.upgrade()
        return
    raise ConfigError(
        f"store schema is at revision {current or 'none'}, syncd needs {HEAD}: "
        "run 'syncd db upgrade' first"
    )


def open_store(settings: Settings) -> Store:
    return Store(settings.store.url, keep_runs=settings.store.keep_runs,
                 keep_history=settings.store.keep_history)


def ready_store(store: Store) -> None:
    """Check the store opens and is sound, then bring it to the current schema (exit 4 if not)."""
    store.check_usable()
    with store.unusable_as("cannot be migrated"):
        ensure_schema(store)


@contextmanager
def migrated_store(settings: Settings) -> Iterator[Store]:
    """The store at the current schema, for the inspection commands (no instance lock)."""
    store = open_store(settings)
    try:
        ready_store(store)
        yield store
    finally:
        store.close()


def build_connectors(settings: Settings, **options: Any) -> dict[str, Connector]:
    return {
        name: build_connector(name, settings.systems[name], **options)
        for name in settings.enabled_systems()
    }


@contextmanager
def syncer(settings: Settings, *, lock: bool = True) -> Iterator[Syncer]:
    """A ready Syncer holding the store's instance lock; everything closed on exit.

    The store is opened, checked, locked, migrated and proven writable before
    any connector exists: a store problem stops the command before a single
    system is polled.
    """
    store = open_store(settings)
    connectors: dict[str, Connector] = {}
    try:
        store.check_usable()
        if lock:
            with store.unusable_as("cannot be locked"):
                store.acquire()
        with store.unusable_as("cannot be migrated"):
            ensure_schema(store)
        store.check_writable()
        connectors = build_connectors(settings)
        s = Syncer(settings, store, connectors)
        try:
            yield s
        finally:
            s.close()
    finally:
        for connector in connectors.values():
            connector.close()
        store.close()
