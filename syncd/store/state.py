"""The sync state: golden records and links (loading and saving), the hashes and
connector data of one system's links, and the set of people still unsettled.

Loading every person and saving a cycle's changes are the cycle's hot paths:
they go straight through the driver (see :mod:`syncd.store.dialect`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd.model import Golden, Link, LinkKey, State, record_hash
from syncd.store.dialect import CHUNK, GOLDEN_COLUMNS, LINK_COLUMNS, Dialect, dumps
from syncd.store.tables import L, U, read_utc

__all__ = [
    "add_unsettled", "existing_goldens", "iter_goldens", "link_extras", "link_times",
    "linked_ids", "linked_people", "load_people", "load_state", "record_hashes",
    "save_changes", "settle", "track_unsettled", "unsettled",
]

_MARK = "#"
"""Prefix of the ``unsettled`` row naming the set-up the set was kept under (ids are hex)."""
_LINK_WRITE_COLUMNS = (
    "system", "remote_id", "golden_id", "org_id", "fields_json", "hash", "remote_updated_at",
    "extra_json", "excluded", "updated_at",
)
_GOLDEN_WRITE_COLUMNS = ("id", "org", "fields_json", "deleted", "updated_at")

# -- loading --------------------------------------------------------------------------------


def load_state(dialect: Dialect) -> State:
    """Every person and link, read straight through the driver (the cold-start path)."""
    with dialect.cursor() as cursor:
        cursor.execute(f"SELECT {GOLDEN_COLUMNS} FROM golden")  # noqa: S608 - fixed text
        goldens = dialect.goldens(cursor.fetchall())
        cursor.execute(f"SELECT {LINK_COLUMNS} FROM link")  # noqa: S608 - fixed text
        links = dialect.links(cursor.fetchall())
    return State(goldens=goldens, links=links)


def load_people(dialect: Dialect, gids: Iterable[str], systems: Iterable[str], *,
                counts: bool = True) -> State:
    """Some people's golden records and every link of theirs: a partial state.

    The planner and the derived writes get what the changed records touch
    (DESIGN: "give it what it needs"); ``linked_counts`` stands in for the
    links not loaded, for the mass-delete guard (zeros unless ``counts``:
    the guard reads them only when something is deleted).
    """
    wanted = sorted(set(gids))
    goldens: dict[str, Golden] = {}
    links: dict[LinkKey, Link] = {}
    with dialect.cursor() as cursor:
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            marks = dialect.marks(len(chunk))
            cursor.execute(
                f"SELECT {GOLDEN_COLUMNS} FROM golden WHERE id IN ({marks})", chunk,  # noqa: S608
            )
            goldens.update(dialect.goldens(cursor.fetchall()))
            cursor.execute(
                f"SELECT {LINK_COLUMNS} FROM link WHERE golden_id IN ({marks})", chunk,  # noqa: S608
            )
            links.update(dialect.links(cursor.fetchall()))
        linked = dict.fromkeys(systems, 0)
        if counts:  # a pass over every link: only when something may be deleted
            cursor.execute(
                "SELECT system, count(*) FROM link WHERE remote_id IS NOT NULL "
                "AND NOT excluded GROUP BY system"
            )
            linked.update({system: int(n) for system, n in cursor.fetchall()})
    return State(goldens=goldens, links=links, linked_counts=linked)


def iter_goldens(dialect: Dialect, page: int = 5000) -> Iterator[Golden]:
    """Every golden record, a page at a time (keyset order by id): the split of a
    large cycle streams them instead of holding them all."""
    after = ""
    while True:
        with dialect.cursor() as cursor:
            cursor.execute(
                f"SELECT {GOLDEN_COLUMNS} FROM golden "  # noqa: S608 - fixed text
                f"WHERE id > {dialect.mark} ORDER BY id LIMIT {int(page)}", (after,),
            )
            rows = cursor.fetchall()
        yield from dialect.goldens(rows).values()
        if len(rows) < page:
            return
        after = rows[-1][0]


def existing_goldens(dialect: Dialect, gids: Iterable[str]) -> set[str]:
    """Which of these golden ids are stored."""
    return {str(row[0]) for row in
            dialect.select_in("SELECT id FROM golden WHERE id IN ({marks})", gids)}


# -- one system's links ---------------------------------------------------------------------


def record_hashes(dialect: Dialect, system: str) -> dict[str, int]:
    """remote id → :func:`~syncd.model.record_hash` of its link, for one system.

    All the poller needs to see that a listed record did not change: one
    integer per linked record, not its fields.
    """
    with dialect.cursor() as cursor:
        cursor.execute(
            "SELECT remote_id, hash FROM link "  # noqa: S608 - fixed text
            f"WHERE system = {dialect.mark} AND remote_id IS NOT NULL", (system,)
        )
        return {rid: int(digest, 16) for rid, digest in cursor.fetchall() if digest}


def link_extras(dialect: Dialect, system: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """remote id → its link's (parent id, connector data), for one system (CardDAV's
    href and ETag: what a sync report's removed href needs in a fresh process)."""
    with dialect.engine.connect() as conn:
        rows = conn.execute(
            sa.select(L.c.remote_id, L.c.org_id, L.c.extra_json)
            .where(L.c.system == system, L.c.remote_id.is_not(None))
        ).all()
    return {str(rid): (str(org), json.loads(raw or "{}")) for rid, org, raw in rows}


def linked_ids(dialect: Dialect, system: str, *, excluded: bool = True) -> set[str]:
    """The remote ids of the links of one system (``excluded``: people who left too)."""
    synced = "" if excluded else " AND NOT excluded"
    with dialect.cursor() as cursor:
        cursor.execute(
            f"SELECT remote_id FROM link WHERE system = {dialect.mark} "  # noqa: S608
            f"AND remote_id IS NOT NULL{synced}", (system,),
        )
        return {str(row[0]) for row in cursor.fetchall()}


def linked_people(dialect: Dialect, system: str, remote_ids: Iterable[str]) -> dict[str, str]:
    """remote id → golden id for the given records of one system that are linked."""
    return {str(rid): str(gid) for rid, gid in dialect.select_in(
        "SELECT remote_id, golden_id FROM link WHERE system = {mark} "
        "AND remote_id IN ({marks})", remote_ids, system)}


def link_times(dialect: Dialect, golden_id: str) -> dict[str, datetime | None]:
    """system → when we last wrote that person's link (read from or pushed to it).

    Not part of :class:`~syncd.model.Link`: only ``syncd show`` asks, to say
    when each system's copy was last seen.
    """
    with dialect.engine.connect() as conn:
        rows = conn.execute(
            sa.select(L.c.system, L.c.updated_at).where(L.c.golden_id == golden_id)
        ).all()
    return {system: read_utc(at) for system, at in rows}


# -- unsettled people -----------------------------------------------------------------------


def unsettled(dialect: Dialect, marker: str) -> set[str] | None:
    """People who may still have writes to receive; None: not known (derive for all).

    ``marker`` names the systems' set-up the set was kept under (their
    fields, organizations, capabilities): another set-up may owe writes to
    anyone (a system added, an organization mapped), so the set counts only
    with its own marker row.
    """
    with dialect.engine.connect() as conn:
        found = {str(row[0]) for row in conn.exec_driver_sql("SELECT golden_id FROM unsettled")}
    if _MARK + marker not in found:
        return None
    return {gid for gid in found if not gid.startswith(_MARK)}


def add_unsettled(dialect: Dialect, conn: Connection, gids: Iterable[str]) -> None:
    rows = [(gid,) for gid in sorted(set(gids))]
    if rows:
        dialect.insert(conn, "unsettled", ("golden_id",), rows, keep=("golden_id",))


def settle(conn: Connection, gids: Iterable[str]) -> None:
    wanted = sorted(set(gids))
    for start in range(0, len(wanted), CHUNK):
        conn.execute(sa.delete(U).where(U.c.golden_id.in_(wanted[start : start + CHUNK])))


def track_unsettled(dialect: Dialect, conn: Connection, gids: Iterable[str] | None,
                    marker: str) -> None:
    """Replace the whole set (after writes were derived for everyone); None: not known."""
    conn.execute(sa.delete(U))
    if gids is not None:
        add_unsettled(dialect, conn, [*gids, _MARK + marker])


# -- saving ---------------------------------------------------------------------------------


def save_changes(
    dialect: Dialect,
    conn: Connection,
    *,
    goldens: Mapping[str, Golden],
    links: Mapping[LinkKey, Link],
    removed: Iterable[LinkKey],
    now: datetime,
) -> None:
    """Write changed people and links in the caller's transaction (upserts)."""
    stamp = dialect.ts(now)
    if goldens:
        dialect.upsert(
            conn, "golden", _GOLDEN_WRITE_COLUMNS, ("id",),
            [(g.id, g.org, dumps(g.fields), g.deleted, stamp) for g in goldens.values()],
        )
    gone = [key for key in removed if key not in links]
    if gone:
        _delete_links(conn, gone)
    if links:
        ts = dialect.ts
        dialect.upsert(conn, "link", _LINK_WRITE_COLUMNS, ("golden_id", "system"), [
            (link.system, link.remote_id, link.golden_id, link.org_id, dumps(link.fields),
             f"{record_hash(link.fields, link.org_id, link.extra):016x}", ts(link.remote_updated_at),
             dumps(dict(link.extra)) if link.extra else "{}", link.excluded, stamp)
            for link in links.values()
        ])


def _delete_links(conn: Connection, keys: list[LinkKey]) -> None:
    by_system: dict[str, list[str]] = {}
    for gid, system in keys:
        by_system.setdefault(system, []).append(gid)
    for system, gids in by_system.items():
        for start in range(0, len(gids), CHUNK):
            conn.execute(
                sa.delete(L).where(
                    L.c.system == system, L.c.golden_id.in_(gids[start : start + CHUNK])
                )
            )
