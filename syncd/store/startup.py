"""Opening a store and the start-up checks: is it reachable, sound and writable.

Every problem found here is one ``StoreUnavailable`` line (exit 4) naming the
store, never a traceback from deep inside a cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from syncd.errors import ConfigError, StoreUnavailable

__all__ = [
    "check_usable", "check_writable", "open_engine", "problem", "safe_url", "sqlite_file",
    "unusable_as",
]


def open_engine(url: str, *, is_sqlite: bool, schema: str | None) -> Engine:
    """The engine of ``url``: SQLite in WAL mode with foreign keys, Postgres in ``schema``."""
    kwargs: dict[str, Any] = {"future": True}
    if is_sqlite:
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = sa.pool.StaticPool
    elif schema:
        kwargs["connect_args"] = {"options": f"-csearch_path={schema}"}
    try:
        engine = sa.create_engine(url, **kwargs)
    except (sa.exc.ArgumentError, ModuleNotFoundError) as exc:
        raise ConfigError(f"store.url: cannot use {safe_url(url)}: {type(exc).__name__}") from None
    if is_sqlite:
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite engine, also when the URL is a ``file:`` URI (``?uri=true``)."""
    url = engine.url
    database = url.database
    if not database or database == ":memory:":
        return None
    if database.startswith("file:") and str(url.query.get("uri", "")).lower() in ("true", "1"):
        database = database.removeprefix("file:").split("?", 1)[0]
        if not database or database == ":memory:" or url.query.get("mode") == "memory":
            return None
    return Path(database)


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable URL>"


def problem(exc: BaseException) -> str:
    """The driver's or the OS's own words, on one line and without SQL or parameters."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        text = str(exc.orig)
    elif isinstance(exc, OSError):
        text = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    else:
        text = str(exc)
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or type(exc).__name__


def _lost_connection_errors() -> tuple[type[BaseException], ...]:
    """What a store that went away mid-work raises: through SQLAlchemy, and from the raw
    driver cursors the hot paths use.  Programming errors (a bad query, a broken
    constraint) are not among them: those are bugs, and keep their traceback."""
    import sqlite3

    import psycopg

    return (sa.exc.OperationalError, sa.exc.InterfaceError, sqlite3.OperationalError,
            psycopg.OperationalError, psycopg.InterfaceError)


@contextmanager
def unusable_as(where: str, what: str, *, mid_work: bool = False) -> Iterator[None]:
    """Turn a database or OS error into one ``StoreUnavailable`` line (exit 4).

    Around start-up steps any such error means the store itself is out of
    reach, not a bug in a query.  ``mid_work`` (a cycle): only a store that went
    away (Postgres restarted, the disk full, a file locked too long) is caught;
    whatever the cycle committed stays, the rest is redone.
    """
    caught = _lost_connection_errors() if mid_work else (sa.exc.DBAPIError, OSError)
    try:
        yield
    except caught as exc:
        raise StoreUnavailable(f"store {where} {what}: {problem(exc)}") from None


def check_usable(engine: Engine, where: str, *, is_sqlite: bool) -> None:
    """Open the store and, on SQLite, check the file is a sound database.

    Runs before anything else, so a down Postgres, a path under a file or
    a damaged SQLite file is one message instead of a traceback from
    deep inside a cycle.  ``quick_check`` reads every page once: fast for
    the sizes syncd stores, and it catches a truncated file that opens
    fine and fails only at the first query that reaches the missing pages.
    """
    with unusable_as(where, "cannot be opened"), engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    if not is_sqlite:
        return
    with unusable_as(where, "is damaged"), engine.connect() as conn:
        found = [str(row[0]) for row in conn.exec_driver_sql("PRAGMA quick_check").all()]
    if found != ["ok"]:
        raise StoreUnavailable(f"store {where} is damaged: {'; '.join(found[:3])}")


def check_writable(engine: Engine, where: str) -> None:
    """Prove the store takes writes, then roll back: before polling, not at the commit.

    A read-only SQLite file (or a read-only Postgres role or replica) used
    to fail only when the cycle committed, after every system had been
    polled.  An UPDATE that changes nothing still needs the write lock
    and a writable file, so it fails the same way, up front.
    """
    with unusable_as(where, "is read-only or not writable"), engine.connect() as conn:
        conn.exec_driver_sql("UPDATE store_revision SET value = value WHERE id = 1")
        conn.rollback()
