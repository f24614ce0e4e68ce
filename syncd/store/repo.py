"""The store: one object the engine, the CLI and the console use, for SQLite and Postgres.

:class:`Store` owns the engine, the write transactions and the store revision;
the rest is done by the modules named after their job, which it puts together:

- :mod:`syncd.store.startup`: opening the engine, the start-up checks;
- :mod:`syncd.store.locks`: the instance lock;
- :mod:`syncd.store.dialect`: the driver-level SQL every hot path shares;
- :mod:`syncd.store.state`: golden records, links, hashes, extras, unsettled people;
- :mod:`syncd.store.runs`: runs, failures, conflicts, watermarks, counts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.model import Conflict, Failure, Golden, Link, LinkKey, State, Watermark
from syncd.store import runs, startup, state
from syncd.store.dialect import Dialect
from syncd.store.locks import InstanceLock, lock_key
from syncd.store.tables import C, F, G, H, L, R, U, V, W, metadata

__all__ = ["C", "F", "Failure", "G", "H", "L", "R", "Store", "Tx", "U", "V", "W", "Watermark"]

_REVISION = "SELECT value FROM store_revision WHERE id = 1"


@dataclass(frozen=True)
class Tx:
    """An open write transaction and the store revision it commits."""

    conn: Connection
    revision: int


class Store:
    """One store (SQLite file or Postgres database)."""

    def __init__(self, url: str, *, schema: str | None = None,
                 keep_runs: timedelta = timedelta(days=90),
                 keep_history: timedelta = timedelta(days=365)) -> None:
        self.url = url
        self.keep_runs = keep_runs
        """Runs started this long before the newest one are dropped when it is recorded."""
        self.keep_history = keep_history
        """How long changes are kept (``syncd.store.history``); zero: none are written."""
        self.is_sqlite = url.startswith("sqlite")
        self.schema = schema
        self._write_lock = threading.RLock()
        self.engine: Engine = startup.open_engine(url, is_sqlite=self.is_sqlite, schema=schema)
        self.dialect = Dialect(self.engine, is_sqlite=self.is_sqlite)
        """The driver-level SQL of this store (placeholder, datetimes, raw cursor, rows)."""
        self._lock = InstanceLock(self.engine, url, is_sqlite=self.is_sqlite,
                                  path=self.sqlite_path())

    # -- start-up checks and schema ---------------------------------------------------------

    @property
    def where(self) -> str:
        """The store for messages: the SQLite path, or the URL with its password hidden."""
        path = self.sqlite_path()
        return str(path) if path is not None else startup.safe_url(self.url)

    @contextmanager
    def unusable_as(self, what: str, *, mid_work: bool = False) -> Iterator[None]:
        """Turn a database or OS error into one ``StoreUnavailable`` line (exit 4); see
        :func:`syncd.store.startup.unusable_as`."""
        with startup.unusable_as(self.where, what, mid_work=mid_work):
            yield

    def check_usable(self) -> None:
        """Open the store and, on SQLite, check the file is a sound database."""
        startup.check_usable(self.engine, self.where, is_sqlite=self.is_sqlite)

    def check_writable(self) -> None:
        """Prove the store takes writes, then roll back: before polling, not at the commit."""
        startup.check_writable(self.engine, self.where)

    def sqlite_path(self) -> Path | None:
        """The SQLite file, also when the URL is a ``file:`` URI (``?uri=true``)."""
        return startup.sqlite_file(self.engine) if self.is_sqlite else None

    def create_all(self) -> None:
        """Create the tables directly (tests); production uses :meth:`upgrade`."""
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            if conn.execute(sa.select(V.c.value)).first() is None:
                conn.execute(sa.insert(V).values(id=1, value=0))

    def upgrade(self) -> None:
        from syncd.store.migrate import upgrade

        upgrade(self.engine)

    def is_empty(self) -> bool:
        return not sa.inspect(self.engine).has_table("golden")

    def close(self) -> None:
        self.release()
        self.engine.dispose()

    # -- the instance lock (syncd.store.locks) ----------------------------------------------

    def lock_key(self, conn: Connection, name: str = "syncd") -> int:
        """The advisory lock key of the schema this store really uses."""
        return lock_key(conn, name)

    def acquire(self, name: str = "syncd") -> None:
        """Take the store's instance lock or raise ``StoreLockedError`` (exit 3)."""
        self._lock.acquire(name)

    @property
    def locking(self) -> bool:
        """Whether this process took the instance lock (and has not released it)."""
        return self._lock.taken

    def lock_held(self) -> bool:
        """Whether this process still holds the instance lock (asked before every cycle)."""
        return self._lock.held()

    def release(self) -> None:
        self._lock.release()

    # -- transactions and the store revision ------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One write transaction at a time (SQLite allows no more anyway).

        Every write bumps the store revision, first: from then on the
        transaction holds the revision row (Postgres) or the write lock
        (SQLite), so write transactions of different processes never overlap,
        and :attr:`Tx.revision` (the revision this one commits) tells the
        writer whether anyone wrote since it read (it is then more than one
        past the revision read).
        """
        with self._write_lock, self.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE store_revision SET value = value + 1 WHERE id = 1")
            yield Tx(conn, int(conn.exec_driver_sql(_REVISION).scalar_one()))

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction whose revision the caller does not need (see :meth:`transaction`)."""
        with self.transaction() as tx:
            yield tx.conn

    def revision(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.exec_driver_sql(_REVISION).scalar_one())

    # -- people and links (syncd.store.state) -----------------------------------------------

    def load_state(self) -> State:
        """Every person and link, read straight through the driver (the cold-start path)."""
        return state.load_state(self.dialect)

    def load_people(self, gids: Iterable[str], systems: Iterable[str], *,
                    counts: bool = True) -> State:
        """Some people's golden records and every link of theirs: a partial state."""
        return state.load_people(self.dialect, gids, systems, counts=counts)

    def iter_goldens(self, page: int = 5000) -> Iterator[Golden]:
        """Every golden record, a page at a time (keyset order by id)."""
        return state.iter_goldens(self.dialect, page)

    def existing_goldens(self, gids: Iterable[str]) -> set[str]:
        """Which of these golden ids are stored."""
        return state.existing_goldens(self.dialect, gids)

    def record_hashes(self, system: str) -> dict[str, int]:
        """remote id → :func:`~syncd.model.record_hash` of its link, for one system."""
        return state.record_hashes(self.dialect, system)

    def link_extras(self, system: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """remote id → its link's (parent id, connector data), for one system."""
        return state.link_extras(self.dialect, system)

    def linked_ids(self, system: str, *, excluded: bool = True) -> set[str]:
        """The remote ids of the links of one system (``excluded``: people who left too)."""
        return state.linked_ids(self.dialect, system, excluded=excluded)

    def linked_people(self, system: str, remote_ids: Iterable[str]) -> dict[str, str]:
        """remote id → golden id for the given records of one system that are linked."""
        return state.linked_people(self.dialect, system, remote_ids)

    def link_times(self, golden_id: str) -> dict[str, datetime | None]:
        """system → when we last wrote that person's link (``syncd show``)."""
        return state.link_times(self.dialect, golden_id)

    def save_changes(
        self,
        conn: Connection,
        *,
        goldens: Mapping[str, Golden],
        links: Mapping[LinkKey, Link],
        removed: Iterable[LinkKey],
        now: datetime,
    ) -> None:
        """Write changed people and links in the caller's transaction (upserts)."""
        state.save_changes(self.dialect, conn, goldens=goldens, links=links, removed=removed,
                           now=now)

    def unsettled(self, marker: str) -> set[str] | None:
        """People who may still have writes to receive; None: not known (derive for all)."""
        return state.unsettled(self.dialect, marker)

    def add_unsettled(self, conn: Connection, gids: Iterable[str]) -> None:
        state.add_unsettled(self.dialect, conn, gids)

    def settle(self, conn: Connection, gids: Iterable[str]) -> None:
        state.settle(conn, gids)

    def track_unsettled(self, conn: Connection, gids: Iterable[str] | None, marker: str) -> None:
        """Replace the whole set (after writes were derived for everyone); None: not known."""
        state.track_unsettled(self.dialect, conn, gids, marker)

    # -- what runs leave behind (syncd.store.runs) ------------------------------------------

    def watermarks(self) -> dict[str, Watermark]:
        return runs.watermarks(self.dialect)

    def save_watermarks(self, conn: Connection, marks: Iterable[Watermark]) -> None:
        runs.save_watermarks(self.dialect, conn, marks)

    def failures(self, *, quarantined: bool | None = None) -> list[Failure]:
        return [f for _, f in runs.failures(self.dialect, quarantined=quarantined)]

    def quarantined(self, system: str | None = None, golden_id: str | None = None) -> list[Failure]:
        """Quarantined writes, optionally of one system and/or one person."""
        return [f for _, f in runs.failures(self.dialect, quarantined=True, system=system,
                                            golden_id=golden_id)]

    def record_failure(self, conn: Connection, failure: Failure) -> None:
        runs.record_failure(conn, failure)

    def clear_failures(self, conn: Connection, keys: Iterable[tuple[str, str]]) -> None:
        runs.clear_failures(conn, keys)

    def retry_quarantined(self, system: str | None = None, golden_id: str | None = None) -> int:
        with self.write() as conn:
            return runs.retry_quarantined(conn, system, golden_id)

    def save_conflicts(self, conn: Connection, conflicts: Iterable[Conflict], now: datetime) -> None:
        runs.save_conflicts(conn, conflicts, now)

    def conflicts(self, *, limit: int = 200, golden_id: str | None = None) -> list[dict[str, Any]]:
        """Logged conflicts, newest first; of one person (``syncd show``) when given."""
        return runs.conflicts(self.dialect, limit=limit, golden_id=golden_id)

    def record_run(
        self, kind: str, started: datetime, finished: datetime, exit_code: int, summary: Any,
        *, run_id: int | None = None,
    ) -> int:
        """One row per cycle: what `status` shows as the last run (secrets masked); the
        store revision it committed.

        ``run_id``: the row the cycle's first committed change opened (see
        ``syncd.store.history.start_run``), finished here instead of a new one.
        Runs older than :attr:`keep_runs` go in the same transaction: a CronJob
        every five minutes would otherwise add a hundred thousand rows a year;
        a run some kept change still names stays, so ``undo --run`` reaches it.
        """
        with self.transaction() as tx:
            runs.record_run(self.dialect, tx.conn, kind, started, finished, exit_code, summary,
                            run_id=run_id, keep=self.keep_runs)
        return tx.revision

    def last_runs(self, limit: int = 1) -> list[dict[str, Any]]:
        return runs.last_runs(self.dialect, limit)

    def runs_since(self, since: datetime) -> list[dict[str, Any]]:
        """The runs started at ``since`` or later, oldest first (a day's, for daily budgets)."""
        return runs.runs_since(self.dialect, since)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per system: linked contacts and open conflicts by person."""
        return runs.counts(self.dialect)
