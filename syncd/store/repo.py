"""Queries, transactions and the instance lock, for SQLite and Postgres alike.

Error texts (``last_error`` of watermarks and failures, the run summary) are
masked by ``syncd.redact`` on the way in: a server that echoes our request
must not leave a password in the database.

The hot paths (loading every golden record and link, writing a cycle's
changes) use SQLAlchemy Core on the SQLModel tables: a cycle over 10 000
people is a handful of statements, not 10 000 ORM round trips.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from filelock import FileLock, Timeout
from sqlalchemy.engine import Connection, Engine

from syncd.errors import ConfigError, StoreLockedError, StoreUnavailable
from syncd.logs import get_logger
from syncd.model import Conflict, Failure, Golden, Link, LinkKey, State, Watermark, record_hash
from syncd.redact import redact, redact_value
from syncd.store.tables import (
    ChangeRow,
    ConflictRow,
    FailureRow,
    GoldenRow,
    LinkRow,
    RevisionRow,
    RunRow,
    UnsettledRow,
    WatermarkRow,
    metadata,
    read_utc,
)

__all__ = ["Failure", "Store", "Watermark"]

G = GoldenRow.__table__  # type: ignore[attr-defined]
L = LinkRow.__table__  # type: ignore[attr-defined]
W = WatermarkRow.__table__  # type: ignore[attr-defined]
F = FailureRow.__table__  # type: ignore[attr-defined]
C = ConflictRow.__table__  # type: ignore[attr-defined]
R = RunRow.__table__  # type: ignore[attr-defined]
V = RevisionRow.__table__  # type: ignore[attr-defined]
U = UnsettledRow.__table__  # type: ignore[attr-defined]
H = ChangeRow.__table__  # type: ignore[attr-defined]

_CHUNK = 500
_MARK = "#"
"""Prefix of the ``unsettled`` row naming the set-up the set was kept under (ids are hex)."""
log = get_logger("syncd.store")


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_DECODER = json.JSONDecoder()


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def _link_hash(link: Link) -> str:
    """The link's :func:`~syncd.model.record_hash`, as stored (16 hex digits)."""
    return f"{record_hash(link.fields, link.org_id, link.extra):016x}"


def _masked(text: str | None) -> str | None:
    return None if text is None else redact(text)


_REVISION = "SELECT value FROM store_revision WHERE id = 1"
_WATERMARK_COLUMNS = (
    "system", "cursor", "last_poll_at", "last_full_scan_at", "last_success_at", "last_error",
    "token",
)
_LINK_COLUMNS = (
    "system", "remote_id", "golden_id", "org_id", "fields_json", "hash", "remote_updated_at",
    "extra_json", "excluded", "updated_at",
)


def _safe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable URL>"


def _problem(exc: BaseException) -> str:
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


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


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
        self._lock_key = 0
        self._write_lock = threading.RLock()
        kwargs: dict[str, Any] = {"future": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if url in ("sqlite://", "sqlite:///:memory:"):
                kwargs["poolclass"] = sa.pool.StaticPool
        elif schema:
            kwargs["connect_args"] = {"options": f"-csearch_path={schema}"}
        try:
            self.engine: Engine = sa.create_engine(url, **kwargs)
        except (sa.exc.ArgumentError, ModuleNotFoundError) as exc:
            raise ConfigError(f"store.url: cannot use {_safe_url(url)}: {type(exc).__name__}") from None
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._lock_conn: Connection | None = None
        self._file_lock: FileLock | None = None

    # -- start-up checks ---------------------------------------------------------------------

    @property
    def where(self) -> str:
        """The store for messages: the SQLite path, or the URL with its password hidden."""
        path = self.sqlite_path()
        return str(path) if path is not None else _safe_url(self.url)

    @contextmanager
    def unusable_as(self, what: str, *, mid_work: bool = False) -> Iterator[None]:
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
            raise StoreUnavailable(f"store {self.where} {what}: {_problem(exc)}") from None

    def check_usable(self) -> None:
        """Open the store and, on SQLite, check the file is a sound database.

        Runs before anything else, so a down Postgres, a path under a file or
        a damaged SQLite file is one message instead of a traceback from
        deep inside a cycle.  ``quick_check`` reads every page once: fast for
        the sizes syncd stores, and it catches a truncated file that opens
        fine and fails only at the first query that reaches the missing pages.
        """
        with self.unusable_as("cannot be opened"), self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        if not self.is_sqlite:
            return
        with self.unusable_as("is damaged"), self.engine.connect() as conn:
            found = [str(row[0]) for row in conn.exec_driver_sql("PRAGMA quick_check").all()]
        if found != ["ok"]:
            raise StoreUnavailable(f"store {self.where} is damaged: {'; '.join(found[:3])}")

    def check_writable(self) -> None:
        """Prove the store takes writes, then roll back: before polling, not at the commit.

        A read-only SQLite file (or a read-only Postgres role or replica) used
        to fail only when the cycle committed, after every system had been
        polled.  An UPDATE that changes nothing still needs the write lock
        and a writable file, so it fails the same way, up front.
        """
        with self.unusable_as("is read-only or not writable"), self.engine.connect() as conn:
            conn.exec_driver_sql("UPDATE store_revision SET value = value WHERE id = 1")
            conn.rollback()

    # -- schema -----------------------------------------------------------------------------

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

    # -- the instance lock ------------------------------------------------------------------

    def lock_key(self, conn: Connection, name: str = "syncd") -> int:
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

    def acquire(self, name: str = "syncd") -> None:
        """Take the store's instance lock or raise ``StoreLockedError`` (exit 3)."""
        if self.is_sqlite:
            path = self.sqlite_path()
            if path is None:
                return
            # Not thread-local: the daemon's scheduler threads ask lock_held().
            lock = FileLock(str(path) + ".lock", thread_local=False)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                raise StoreLockedError(
                    f"store {path} is locked by another syncd instance ({path}.lock); "
                    "wait for it to finish or stop it"
                ) from None
            self._file_lock = lock
            return
        conn = self.engine.connect()
        self._lock_key = self.lock_key(conn, name)
        got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self._lock_key})
        if not got.scalar():
            conn.close()
            raise StoreLockedError(
                f"store {_safe_url(self.url)} is locked by another syncd instance "
                "(Postgres advisory lock); wait for it or stop it"
            )
        conn.commit()
        self._lock_conn = conn

    @property
    def locking(self) -> bool:
        """Whether this process took the instance lock (and has not released it)."""
        return self._lock_conn is not None or self._file_lock is not None

    def lock_held(self) -> bool:
        """Whether this process still holds the instance lock.

        A Postgres advisory lock lives exactly as long as its session: when
        the connection dies (``pg_terminate_backend``, a failover, a network
        cut) the lock is gone and another instance may already be writing.
        The daemon asks before every cycle and stops rather than race.
        """
        if self.is_sqlite:
            if self.sqlite_path() is None:
                return True  # an in-memory store has no other writer
            return self._file_lock is not None and self._file_lock.is_locked
        if self._lock_conn is None:
            return False
        hi, lo = (self._lock_key >> 32) & 0xFFFFFFFF, self._lock_key & 0xFFFFFFFF
        try:
            held = self._lock_conn.execute(
                sa.text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid = pg_backend_pid() AND granted AND classid = :hi AND objid = :lo "
                    "AND objsubid = 1)"
                ),
                {"hi": hi, "lo": lo},
            ).scalar_one()
            self._lock_conn.rollback()
        except sa.exc.SQLAlchemyError:
            return False
        return bool(held)

    def release(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None
        if self._lock_conn is not None:
            conn, self._lock_conn = self._lock_conn, None
            try:
                # Session-level lock: unlock explicitly, the pooled connection outlives close().
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._lock_key})
                conn.commit()
            except sa.exc.SQLAlchemyError:
                # The session is gone and its lock with it: nothing left to release.
                log.warning("store_lock_connection_lost", store=_safe_url(self.url))
                conn.invalidate()
            finally:
                conn.close()

    def sqlite_path(self) -> Path | None:
        """The SQLite file, also when the URL is a ``file:`` URI (``?uri=true``)."""
        url = self.engine.url
        database = url.database
        if not self.is_sqlite or not database or database == ":memory:":
            return None
        if database.startswith("file:") and str(url.query.get("uri", "")).lower() in ("true", "1"):
            database = database.removeprefix("file:").split("?", 1)[0]
            if not database or database == ":memory:" or url.query.get("mode") == "memory":
                return None
        return Path(database)

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

    # -- state ------------------------------------------------------------------------------

    def load_state(self) -> State:
        """Every person and link, read straight through the driver (the cold-start path).

        ``raw_decode`` skips ``json.loads``' whitespace checks: the store only
        ever holds the compact JSON that :func:`_dumps` wrote.
        """
        decode = _DECODER.raw_decode
        goldens: dict[str, Golden] = {}
        links: dict[LinkKey, Link] = {}
        with self.engine.connect() as conn:
            cursor = conn.connection.cursor()
            try:
                cursor.execute("SELECT id, org, fields_json, deleted FROM golden")
                for gid, org, fields_json, deleted in cursor.fetchall():
                    goldens[gid] = Golden(gid, org, decode(fields_json)[0], bool(deleted))
                cursor.execute(
                    "SELECT system, golden_id, remote_id, org_id, fields_json, "
                    "remote_updated_at, extra_json, excluded FROM link"
                )
                for system, gid, rid, org_id, fields_json, stamp, extra_json, excluded in (
                    cursor.fetchall()
                ):
                    links[(gid, system)] = Link(
                        system, gid, rid, org_id, decode(fields_json)[0], read_utc(stamp),
                        decode(extra_json)[0] if extra_json != "{}" else {}, bool(excluded),
                    )
            finally:
                cursor.close()
        return State(goldens=goldens, links=links)

    def record_hashes(self, system: str) -> dict[str, int]:
        """remote id → :func:`~syncd.model.record_hash` of its link, for one system.

        All the poller needs to see that a listed record did not change: one
        integer per linked record, not its fields.
        """
        with self.engine.connect() as conn:
            cursor = conn.connection.cursor()
            try:
                mark = "?" if self.is_sqlite else "%s"
                cursor.execute(
                    "SELECT remote_id, hash FROM link "  # noqa: S608 - fixed text
                    f"WHERE system = {mark} AND remote_id IS NOT NULL", (system,)
                )
                return {rid: int(digest, 16) for rid, digest in cursor.fetchall() if digest}
            finally:
                cursor.close()

    def link_extras(self, system: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """remote id → its link's (parent id, connector data), for one system (CardDAV's
        href and ETag: what a sync report's removed href needs in a fresh process)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(L.c.remote_id, L.c.org_id, L.c.extra_json)
                .where(L.c.system == system, L.c.remote_id.is_not(None))
            ).all()
        return {str(rid): (str(org), json.loads(raw or "{}")) for rid, org, raw in rows}

    def load_people(self, gids: Iterable[str], systems: Iterable[str], *,
                    counts: bool = True) -> State:
        """Some people's golden records and every link of theirs: a partial state.

        The planner and the derived writes get what the changed records touch
        (DESIGN: "give it what it needs"); ``linked_counts`` stands in for the
        links not loaded, for the mass-delete guard (zeros unless ``counts``:
        the guard reads them only when something is deleted).
        """
        decode = _DECODER.raw_decode
        wanted = sorted(set(gids))
        goldens: dict[str, Golden] = {}
        links: dict[LinkKey, Link] = {}
        mark = "?" if self.is_sqlite else "%s"
        with self.engine.connect() as conn:
            cursor = conn.connection.cursor()
            try:
                for start in range(0, len(wanted), _CHUNK):
                    chunk = wanted[start : start + _CHUNK]
                    marks = ", ".join([mark] * len(chunk))
                    cursor.execute(
                        "SELECT id, org, fields_json, deleted FROM golden "  # noqa: S608
                        f"WHERE id IN ({marks})", chunk,
                    )
                    for gid, org, fields_json, deleted in cursor.fetchall():
                        goldens[gid] = Golden(gid, org, decode(fields_json)[0], bool(deleted))
                    cursor.execute(
                        "SELECT system, golden_id, remote_id, org_id, fields_json, "  # noqa: S608
                        "remote_updated_at, extra_json, excluded FROM link "
                        f"WHERE golden_id IN ({marks})", chunk,
                    )
                    for system, gid, rid, org_id, fields_json, stamp, extra_json, excluded in (
                        cursor.fetchall()
                    ):
                        links[(gid, system)] = Link(
                            system, gid, rid, org_id, decode(fields_json)[0], read_utc(stamp),
                            decode(extra_json)[0] if extra_json != "{}" else {},
                            bool(excluded),
                        )
                linked = dict.fromkeys(systems, 0)
                if counts:  # a pass over every link: only when something may be deleted
                    cursor.execute(
                        "SELECT system, count(*) FROM link WHERE remote_id IS NOT NULL "
                        "AND NOT excluded GROUP BY system"
                    )
                    linked.update({system: int(n) for system, n in cursor.fetchall()})
            finally:
                cursor.close()
        return State(goldens=goldens, links=links, linked_counts=linked)

    def iter_goldens(self, page: int = 5000) -> Iterator[Golden]:
        """Every golden record, a page at a time (keyset order by id): the split of a
        large cycle streams them instead of holding them all."""
        decode = _DECODER.raw_decode
        mark = "?" if self.is_sqlite else "%s"
        after = ""
        while True:
            with self.engine.connect() as conn:
                cursor = conn.connection.cursor()
                try:
                    cursor.execute(
                        "SELECT id, org, fields_json, deleted FROM golden "  # noqa: S608
                        f"WHERE id > {mark} ORDER BY id LIMIT {int(page)}", (after,),
                    )
                    rows = cursor.fetchall()
                finally:
                    cursor.close()
            for gid, org, fields_json, deleted in rows:
                yield Golden(gid, org, decode(fields_json)[0], bool(deleted))
            if len(rows) < page:
                return
            after = rows[-1][0]

    def _select_in(self, sql: str, values: Iterable[str], *before: str) -> list[tuple[Any, ...]]:
        """The rows of ``sql``, whose ``{marks}`` stands for ``values`` (asked in chunks,
        after the ``before`` parameters); ``{mark}`` is the driver's placeholder."""
        wanted = sorted(set(values))
        mark = "?" if self.is_sqlite else "%s"
        rows: list[tuple[Any, ...]] = []
        with self.engine.connect() as conn:
            cursor = conn.connection.cursor()
            try:
                for start in range(0, len(wanted), _CHUNK):
                    chunk = wanted[start : start + _CHUNK]
                    cursor.execute(sql.format(mark=mark, marks=", ".join([mark] * len(chunk))),
                                   [*before, *chunk])
                    rows.extend(cursor.fetchall())
            finally:
                cursor.close()
        return rows

    def existing_goldens(self, gids: Iterable[str]) -> set[str]:
        """Which of these golden ids are stored."""
        return {str(row[0]) for row in
                self._select_in("SELECT id FROM golden WHERE id IN ({marks})", gids)}

    def linked_ids(self, system: str, *, excluded: bool = True) -> set[str]:
        """The remote ids of the links of one system (``excluded``: people who left too)."""
        mark = "?" if self.is_sqlite else "%s"
        synced = "" if excluded else " AND NOT excluded"
        with self.engine.connect() as conn:
            cursor = conn.connection.cursor()
            try:
                cursor.execute(
                    f"SELECT remote_id FROM link WHERE system = {mark} "  # noqa: S608
                    f"AND remote_id IS NOT NULL{synced}", (system,),
                )
                return {str(row[0]) for row in cursor.fetchall()}
            finally:
                cursor.close()

    def linked_people(self, system: str, remote_ids: Iterable[str]) -> dict[str, str]:
        """remote id → golden id for the given records of one system that are linked."""
        return {str(rid): str(gid) for rid, gid in self._select_in(
            "SELECT remote_id, golden_id FROM link WHERE system = {mark} "
            "AND remote_id IN ({marks})", remote_ids, system)}

    # -- unsettled people -------------------------------------------------------------------

    def unsettled(self, marker: str) -> set[str] | None:
        """People who may still have writes to receive; None: not known (derive for all).

        ``marker`` names the systems' set-up the set was kept under (their
        fields, organizations, capabilities): another set-up may owe writes to
        anyone (a system added, an organization mapped), so the set counts only
        with its own marker row.
        """
        with self.engine.connect() as conn:
            found = {str(row[0]) for row in conn.exec_driver_sql("SELECT golden_id FROM unsettled")}
        if _MARK + marker not in found:
            return None
        return {gid for gid in found if not gid.startswith(_MARK)}

    def add_unsettled(self, conn: Connection, gids: Iterable[str]) -> None:
        rows = [(gid,) for gid in sorted(set(gids))]
        if rows:
            mark = "?" if self.is_sqlite else "%s"
            conn.exec_driver_sql(
                f"INSERT INTO unsettled (golden_id) VALUES ({mark}) "  # noqa: S608
                "ON CONFLICT (golden_id) DO NOTHING", rows,
            )

    def settle(self, conn: Connection, gids: Iterable[str]) -> None:
        wanted = sorted(set(gids))
        for start in range(0, len(wanted), _CHUNK):
            conn.execute(sa.delete(U).where(U.c.golden_id.in_(wanted[start : start + _CHUNK])))

    def track_unsettled(self, conn: Connection, gids: Iterable[str] | None, marker: str) -> None:
        """Replace the whole set (after writes were derived for everyone); None: not known."""
        conn.execute(sa.delete(U))
        if gids is not None:
            self.add_unsettled(conn, [*gids, _MARK + marker])

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
        stamp = self._ts(now)
        if goldens:
            self._upsert(
                conn, "golden", ("id", "org", "fields_json", "deleted", "updated_at"), ("id",),
                [(g.id, g.org, _dumps(g.fields), g.deleted, stamp) for g in goldens.values()],
            )
        gone = [key for key in removed if key not in links]
        if gone:
            self._delete_links(conn, gone)
        if links:
            self._upsert(conn, "link", _LINK_COLUMNS, ("golden_id", "system"),
                         [self._link_row(link, stamp) for link in links.values()])

    def _ts(self, when: datetime | None) -> Any:
        """A datetime as the driver wants it: SQLite stores SQLAlchemy's UTC text form."""
        if when is None:
            return None
        if when.tzinfo is None:
            raise ValueError("naive datetime given to the store; syncd uses aware UTC only")
        if self.is_sqlite:
            # SQLAlchemy's SQLite DATETIME text form, naive UTC with microseconds.
            return when.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        return when

    def _link_row(self, link: Link, stamp: Any) -> tuple[Any, ...]:
        return (
            link.system, link.remote_id, link.golden_id, link.org_id, _dumps(link.fields),
            _link_hash(link), self._ts(link.remote_updated_at),
            _dumps(dict(link.extra)) if link.extra else "{}", link.excluded, stamp,
        )

    def _upsert(
        self,
        conn: Connection,
        table: str,
        columns: tuple[str, ...],
        key: tuple[str, ...],
        rows: list[tuple[Any, ...]],
    ) -> None:
        """Bulk INSERT … ON CONFLICT DO UPDATE straight through the driver.

        The cycle's hot path: SQLAlchemy's per-row parameter processing cost
        more than the database work, so rows arrive here already converted.
        """
        mark = "?" if self.is_sqlite else "%s"
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - fixed identifiers
            f"VALUES ({', '.join([mark] * len(columns))}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
        )
        conn.exec_driver_sql(sql, rows)

    def _delete_links(self, conn: Connection, keys: list[LinkKey]) -> None:
        by_system: dict[str, list[str]] = {}
        for gid, system in keys:
            by_system.setdefault(system, []).append(gid)
        for system, gids in by_system.items():
            for start in range(0, len(gids), _CHUNK):
                conn.execute(
                    sa.delete(L).where(
                        L.c.system == system, L.c.golden_id.in_(gids[start : start + _CHUNK])
                    )
                )

    # -- watermarks -------------------------------------------------------------------------

    def watermarks(self) -> dict[str, Watermark]:
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT system, cursor, last_poll_at, last_full_scan_at, last_success_at, "
                "last_error, token FROM watermark"
            ).all()
        return {
            system: Watermark(system, read_utc(c), read_utc(p), read_utc(f), read_utc(ok), err,
                              token)
            for system, c, p, f, ok, err, token in rows
        }

    def save_watermarks(self, conn: Connection, marks: Iterable[Watermark]) -> None:
        rows = [
            (m.system, self._ts(m.cursor), self._ts(m.last_poll_at), self._ts(m.last_full_scan_at),
             self._ts(m.last_success_at), _masked(m.last_error), m.token)
            for m in marks
        ]
        if rows:
            self._upsert(conn, "watermark", _WATERMARK_COLUMNS, ("system",), rows)

    # -- failures ---------------------------------------------------------------------------

    def failures(self, *, quarantined: bool | None = None) -> list[Failure]:
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT system, golden_id, action, remote_id, attempts, last_error, desired_hash, "
                "quarantined, next_retry_at, updated_at, outcome_unknown FROM failure "
                "ORDER BY system, golden_id"
            ).all()
        found = [
            Failure(sys_, gid, action, rid, attempts, err, digest, bool(q), read_utc(retry),
                    read_utc(at) or datetime.now(UTC), bool(unknown))
            for sys_, gid, action, rid, attempts, err, digest, q, retry, at, unknown in rows
        ]
        return [f for f in found if quarantined is None or f.quarantined == quarantined]

    def record_failure(self, conn: Connection, failure: Failure) -> None:
        values = {
            "action": failure.action,
            "remote_id": failure.remote_id,
            "attempts": failure.attempts,
            "last_error": redact(failure.last_error),
            "desired_hash": failure.desired_hash,
            "quarantined": failure.quarantined,
            "outcome_unknown": failure.unknown,
            "next_retry_at": failure.next_retry_at,
            "updated_at": failure.updated_at,
        }
        done = conn.execute(
            sa.update(F)
            .where(F.c.system == failure.system, F.c.golden_id == failure.golden_id)
            .values(**values)
        )
        if done.rowcount == 0:
            conn.execute(
                sa.insert(F).values(
                    system=failure.system, golden_id=failure.golden_id,
                    created_at=failure.updated_at, **values,
                )
            )

    def clear_failures(self, conn: Connection, keys: Iterable[tuple[str, str]]) -> None:
        for system, gid in keys:
            conn.execute(sa.delete(F).where(F.c.system == system, F.c.golden_id == gid))

    def retry_quarantined(self, system: str | None = None, golden_id: str | None = None) -> int:
        query = sa.update(F).where(F.c.quarantined.is_(True))
        if system:
            query = query.where(F.c.system == system)
        if golden_id:
            query = query.where(F.c.golden_id == golden_id)
        with self.write() as conn:
            return conn.execute(
                query.values(quarantined=False, attempts=0, next_retry_at=None)
            ).rowcount

    def quarantined(self, system: str | None = None, golden_id: str | None = None) -> list[Failure]:
        """Quarantined writes, optionally of one system and/or one person."""
        return [
            f for f in self.failures(quarantined=True)
            if (not system or f.system == system) and (not golden_id or f.golden_id == golden_id)
        ]

    # -- conflicts and runs -----------------------------------------------------------------

    def save_conflicts(self, conn: Connection, conflicts: Iterable[Conflict], now: datetime) -> None:
        rows = [
            {
                "golden_id": c.golden_id,
                "field": c.field,
                "candidates_json": _dumps(
                    [{"system": s, "value": v, "when": w.isoformat()} for s, v, w in c.candidates]
                ),
                "winner": c.winner,
                "value": c.value,
                "policy": c.policy,
                "resolved": False,
                "created_at": now,
            }
            for c in conflicts
        ]
        if rows:
            conn.execute(sa.insert(C), rows)

    def conflicts(self, *, limit: int = 200, golden_id: str | None = None) -> list[dict[str, Any]]:
        """Logged conflicts, newest first; of one person (``syncd show``) when given."""
        query = sa.select(C).order_by(C.c.id.desc()).limit(limit)
        if golden_id is not None:
            query = query.where(C.c.golden_id == golden_id)
        with self.engine.connect() as conn:
            return [
                {
                    "id": r.id, "person": r.golden_id, "field": r.field,
                    "candidates": json.loads(r.candidates_json), "winner": r.winner,
                    "value": r.value, "policy": r.policy, "resolved": bool(r.resolved),
                    "at": r.created_at.isoformat(),
                }
                for r in conn.execute(query)
            ]

    def link_times(self, golden_id: str) -> dict[str, datetime | None]:
        """system → when we last wrote that person's link (read from or pushed to it).

        Not part of :class:`~syncd.model.Link`: only ``syncd show`` asks, to say
        when each system's copy was last seen.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(L.c.system, L.c.updated_at).where(L.c.golden_id == golden_id)
            ).all()
        return {system: read_utc(at) for system, at in rows}

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
        mark = "?" if self.is_sqlite else "%s"
        with self.transaction() as tx:
            conn = tx.conn
            values = (self._ts(finished), exit_code, _dumps(redact_value(summary)))
            if run_id is None:
                conn.exec_driver_sql(
                    "INSERT INTO run (kind, started_at, finished_at, exit_code, summary_json) "  # noqa: S608
                    f"VALUES ({', '.join([mark] * 5)})",
                    (kind, self._ts(started), *values),
                )
            else:
                conn.exec_driver_sql(
                    f"UPDATE run SET finished_at = {mark}, exit_code = {mark}, "  # noqa: S608
                    f"summary_json = {mark} WHERE id = {mark}", (*values, run_id),
                )
            conn.execute(sa.delete(R).where(
                R.c.started_at < started - self.keep_runs,
                ~sa.exists().where(H.c.run_id == R.c.id),
            ))
        return tx.revision

    def last_runs(self, limit: int = 1) -> list[dict[str, Any]]:
        query = sa.select(R).order_by(R.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [
                {"id": r.id, "kind": r.kind, "started_at": r.started_at,
                 "finished_at": r.finished_at, "exit_code": r.exit_code,
                 "summary": json.loads(r.summary_json)}
                for r in conn.execute(query)
            ]

    def runs_since(self, since: datetime) -> list[dict[str, Any]]:
        """The runs started at ``since`` or later, oldest first (a day's, for daily budgets)."""
        query = sa.select(R.c.started_at, R.c.summary_json).where(R.c.started_at >= since)
        with self.engine.connect() as conn:
            return [{"started_at": r.started_at, "summary": json.loads(r.summary_json)}
                    for r in conn.execute(query.order_by(R.c.id))]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per system: linked contacts and open conflicts by person."""
        with self.engine.connect() as conn:
            linked = conn.execute(
                sa.select(L.c.system, sa.func.count())
                .where(L.c.remote_id.is_not(None))
                .group_by(L.c.system)
            ).all()
            open_conflicts = conn.execute(
                sa.select(sa.func.count()).select_from(C).where(C.c.resolved.is_(False))
            ).scalar_one()
        return {
            "linked": {system: int(n) for system, n in linked},
            "conflicts": {"open": int(open_conflicts)},
        }


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
