"""How one store is spoken to straight through its driver, on SQLite and Postgres alike.

The hot paths (loading every person and link, writing a cycle's changes) skip
SQLAlchemy's per-row processing and talk to the DBAPI cursor: a cycle over
10 000 people is a handful of statements, not 10 000 ORM round trips.  What
differs between the two drivers (the placeholder, how a datetime is passed)
and what every such query repeats (the raw cursor, the ``IN (...)`` chunks,
turning a golden or link row back into a record) is said once, here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from syncd.model import Golden, Link, LinkKey
from syncd.store.tables import read_utc

__all__ = ["CHUNK", "GOLDEN_COLUMNS", "LINK_COLUMNS", "Dialect", "dumps"]

CHUNK = 500
"""Values per ``IN (...)`` list: well under every driver's parameter limit."""

GOLDEN_COLUMNS = "id, org, fields_json, deleted"
"""The columns :meth:`Dialect.goldens` decodes, in its order."""
LINK_COLUMNS = (
    "system, golden_id, remote_id, org_id, fields_json, remote_updated_at, extra_json, excluded"
)
"""The columns :meth:`Dialect.links` decodes, in its order."""

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_DECODER = json.JSONDecoder()


dumps: Callable[[Any], str] = _ENCODER.encode
"""Compact JSON, the only form the store writes (which lets :meth:`Dialect.goldens`
use ``raw_decode``, skipping ``json.loads``' whitespace checks)."""


class Dialect:
    """One store's driver-level SQL: placeholder, datetime form, raw cursor, row decoding."""

    def __init__(self, engine: Engine, *, is_sqlite: bool) -> None:
        self.engine = engine
        self.is_sqlite = is_sqlite
        self.mark = "?" if is_sqlite else "%s"
        """The driver's positional placeholder."""

    def marks(self, count: int) -> str:
        """``count`` placeholders, comma-separated (a VALUES row or an ``IN`` list)."""
        return ", ".join([self.mark] * count)

    def ts(self, when: datetime | None) -> Any:
        """A datetime as the driver wants it: SQLite stores SQLAlchemy's UTC text form."""
        if when is None:
            return None
        if when.tzinfo is None:
            raise ValueError("naive datetime given to the store; syncd uses aware UTC only")
        if self.is_sqlite:
            # SQLAlchemy's SQLite DATETIME text form, naive UTC with microseconds.
            return when.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        return when

    @contextmanager
    def cursor(self, conn: Connection | None = None) -> Iterator[Any]:
        """A DBAPI cursor: in the caller's transaction ``conn``, else on a connection of its own."""
        if conn is None:
            with self.engine.connect() as own, self.cursor(own) as cursor:
                yield cursor
            return
        cursor = conn.connection.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def select_in(self, sql: str, values: Iterable[str], *before: Any,
                  conn: Connection | None = None) -> list[tuple[Any, ...]]:
        """The rows of ``sql``, whose ``{marks}`` stands for ``values`` (asked in chunks,
        after the ``before`` parameters); ``{mark}`` is the driver's placeholder."""
        wanted = sorted(set(values))
        rows: list[tuple[Any, ...]] = []
        with self.cursor(conn) as cursor:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                cursor.execute(sql.format(mark=self.mark, marks=self.marks(len(chunk))),
                               [*before, *chunk])
                rows.extend(cursor.fetchall())
        return rows

    @staticmethod
    def goldens(rows: Iterable[Sequence[Any]]) -> dict[str, Golden]:
        """Golden records from rows of :data:`GOLDEN_COLUMNS`, by id, in row order."""
        decode = _DECODER.raw_decode
        return {gid: Golden(gid, org, decode(fields_json)[0], bool(deleted))
                for gid, org, fields_json, deleted in rows}

    @staticmethod
    def links(rows: Iterable[Sequence[Any]]) -> dict[LinkKey, Link]:
        """Links from rows of :data:`LINK_COLUMNS`, by (golden id, system)."""
        decode = _DECODER.raw_decode
        return {
            (gid, system): Link(
                system, gid, rid, org_id, decode(fields_json)[0], read_utc(stamp),
                decode(extra_json)[0] if extra_json != "{}" else {}, bool(excluded),
            )
            for system, gid, rid, org_id, fields_json, stamp, extra_json, excluded in rows
        }

    def insert(self, conn: Connection, table: str, columns: Sequence[str],
               rows: Sequence[Sequence[Any]], *, keep: Sequence[str] = ()) -> None:
        """Bulk INSERT of rows already in the driver's form (see :meth:`ts`); ``keep``: the
        key whose existing rows stay as they are (``ON CONFLICT … DO NOTHING``)."""
        skip = f" ON CONFLICT ({', '.join(keep)}) DO NOTHING" if keep else ""
        conn.exec_driver_sql(
            f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - fixed identifiers
            f"VALUES ({self.marks(len(columns))}){skip}", rows,
        )

    def upsert(self, conn: Connection, table: str, columns: Sequence[str], key: Sequence[str],
               rows: Sequence[Sequence[Any]]) -> None:
        """Bulk INSERT … ON CONFLICT DO UPDATE straight through the driver.

        The cycle's hot path: SQLAlchemy's per-row parameter processing cost
        more than the database work, so rows arrive here already converted.
        """
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        conn.exec_driver_sql(
            f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - fixed identifiers
            f"VALUES ({self.marks(len(columns))}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}", rows,
        )
