"""The instance lock: one syncd process per store.

SQLite: a lock file next to the database (``<file>.lock``).  Postgres: a
session-level advisory lock, keyed by the schema the store really uses and held
by a connection of its own for as long as the process runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import sqlalchemy as sa
from filelock import FileLock, Timeout
from sqlalchemy.engine import Connection, Engine

from syncd.errors import StoreLockedError
from syncd.logs import get_logger
from syncd.store.startup import safe_url

__all__ = ["InstanceLock", "lock_key"]

log = get_logger("syncd.store")


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def lock_key(conn: Connection, name: str = "syncd") -> int:
    """The advisory lock key of the schema this store really uses.

    Keyed by what the server says (``current_schema()``, else the
    effective ``search_path``), so two tenants in two schemas of one
    database lock independently however their schema is named (the
    Store's ``schema`` argument or ``options=-csearch_path=...`` in the
    URL), while two spellings of one schema share a lock.
    """
    where = conn.execute(
        sa.text("SELECT coalesce(current_schema(), current_setting('search_path'))")
    ).scalar_one()
    return _advisory_key(f"{name}:{where}")


class InstanceLock:
    """The lock of one store: a file lock on SQLite (none in memory), an advisory lock on
    Postgres."""

    def __init__(self, engine: Engine, url: str, *, is_sqlite: bool, path: Path | None) -> None:
        self._engine = engine
        self._url = url
        self._is_sqlite = is_sqlite
        self._path = path
        self._key = 0
        self._conn: Connection | None = None
        self._file: FileLock | None = None

    def acquire(self, name: str = "syncd") -> None:
        """Take the lock or raise ``StoreLockedError`` (exit 3)."""
        if self._is_sqlite:
            path = self._path
            if path is None:
                return
            # Not thread-local: the daemon's scheduler threads ask held().
            lock = FileLock(str(path) + ".lock", thread_local=False)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                raise StoreLockedError(
                    f"store {path} is locked by another syncd instance ({path}.lock); "
                    "wait for it to finish or stop it"
                ) from None
            self._file = lock
            return
        conn = self._engine.connect()
        self._key = lock_key(conn, name)
        got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key})
        if not got.scalar():
            conn.close()
            raise StoreLockedError(
                f"store {safe_url(self._url)} is locked by another syncd instance "
                "(Postgres advisory lock); wait for it or stop it"
            )
        conn.commit()
        self._conn = conn

    @property
    def taken(self) -> bool:
        """Whether this process took the lock (and has not released it)."""
        return self._conn is not None or self._file is not None

    def held(self) -> bool:
        """Whether this process still holds the lock.

        A Postgres advisory lock lives exactly as long as its session: when
        the connection dies (``pg_terminate_backend``, a failover, a network
        cut) the lock is gone and another instance may already be writing.
        The daemon asks before every cycle and stops rather than race.
        """
        if self._is_sqlite:
            if self._path is None:
                return True  # an in-memory store has no other writer
            return self._file is not None and self._file.is_locked
        if self._conn is None:
            return False
        hi, lo = (self._key >> 32) & 0xFFFFFFFF, self._key & 0xFFFFFFFF
        try:
            held = self._conn.execute(
                sa.text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid = pg_backend_pid() AND granted AND classid = :hi AND objid = :lo "
                    "AND objsubid = 1)"
                ),
                {"hi": hi, "lo": lo},
            ).scalar_one()
            self._conn.rollback()
        except sa.exc.SQLAlchemyError:
            return False
        return bool(held)

    def release(self) -> None:
        if self._file is not None:
            self._file.release()
            self._file = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                # Session-level lock: unlock explicitly, the pooled connection outlives close().
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                conn.commit()
            except sa.exc.SQLAlchemyError:
                # The session is gone and its lock with it: nothing left to release.
                log.warning("store_lock_connection_lost", store=safe_url(self._url))
                conn.invalidate()
            finally:
                conn.close()
