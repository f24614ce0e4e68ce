"""What each cycle leaves behind: runs, failed writes, conflicts, watermarks, counts.

Error texts (``last_error`` of watermarks and failures, the run summary) are
masked by ``syncd.redact`` on the way in: a server that echoes our request
must not leave a password in the database.

Writes take the caller's connection: the store opens the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd.model import Conflict, Failure, Watermark
from syncd.redact import redact, redact_value
from syncd.store.dialect import Dialect, dumps
from syncd.store.tables import C, F, H, L, R, read_utc

__all__ = [
    "clear_failures", "conflicts", "counts", "failures", "last_runs", "record_failure",
    "record_run", "retry_quarantined", "runs_since", "save_conflicts", "save_watermarks",
    "watermarks",
]

_WATERMARK_COLUMNS = (
    "system", "cursor", "last_poll_at", "last_full_scan_at", "last_success_at", "last_error",
    "token",
)


def _masked(text: str | None) -> str | None:
    return None if text is None else redact(text)


# -- watermarks -----------------------------------------------------------------------------


def watermarks(dialect: Dialect) -> dict[str, Watermark]:
    with dialect.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT {', '.join(_WATERMARK_COLUMNS)} FROM watermark"  # noqa: S608 - fixed text
        ).all()
    return {
        system: Watermark(system, read_utc(c), read_utc(p), read_utc(f), read_utc(ok), err,
                          token)
        for system, c, p, f, ok, err, token in rows
    }


def save_watermarks(dialect: Dialect, conn: Connection, marks: Iterable[Watermark]) -> None:
    ts = dialect.ts
    rows = [
        (m.system, ts(m.cursor), ts(m.last_poll_at), ts(m.last_full_scan_at),
         ts(m.last_success_at), _masked(m.last_error), m.token)
        for m in marks
    ]
    if rows:
        dialect.upsert(conn, "watermark", _WATERMARK_COLUMNS, ("system",), rows)


# -- failures -------------------------------------------------------------------------------


def failures(dialect: Dialect, *, quarantined: bool | None = None, system: str | None = None,
             golden_id: str | None = None) -> list[tuple[int, Failure]]:
    """(row id, failure) of the stored failed writes, by system and person; only the
    (not) quarantined ones, of one system, of one person, when given."""
    where = [] if quarantined is None else ["quarantined" if quarantined else "NOT quarantined"]
    params: list[str] = []
    for column, value in (("system", system), ("golden_id", golden_id)):
        if value:
            where.append(f"{column} = {dialect.mark}")
            params.append(value)
    with dialect.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT id, system, golden_id, action, remote_id, attempts, last_error, "  # noqa: S608
            "desired_hash, quarantined, next_retry_at, updated_at, outcome_unknown FROM failure"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY system, golden_id", tuple(params),
        ).all()
    return [
        (int(fid), Failure(sys_, gid, action, rid, attempts, err, digest, bool(q),
                           read_utc(retry), read_utc(at) or datetime.now(UTC), bool(unknown)))
        for fid, sys_, gid, action, rid, attempts, err, digest, q, retry, at, unknown in rows
    ]


def record_failure(conn: Connection, failure: Failure) -> None:
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


def clear_failures(conn: Connection, keys: Iterable[tuple[str, str]]) -> None:
    for system, gid in keys:
        conn.execute(sa.delete(F).where(F.c.system == system, F.c.golden_id == gid))


def retry_quarantined(conn: Connection, system: str | None = None,
                      golden_id: str | None = None) -> int:
    query = sa.update(F).where(F.c.quarantined.is_(True))
    if system:
        query = query.where(F.c.system == system)
    if golden_id:
        query = query.where(F.c.golden_id == golden_id)
    return int(conn.execute(query.values(quarantined=False, attempts=0, next_retry_at=None))
               .rowcount)


# -- conflicts ------------------------------------------------------------------------------


def save_conflicts(conn: Connection, found: Iterable[Conflict], now: datetime) -> None:
    rows = [
        {
            "golden_id": c.golden_id,
            "field": c.field,
            "candidates_json": dumps(
                [{"system": s, "value": v, "when": w.isoformat()} for s, v, w in c.candidates]
            ),
            "winner": c.winner,
            "value": c.value,
            "policy": c.policy,
            "resolved": False,
            "created_at": now,
        }
        for c in found
    ]
    if rows:
        conn.execute(sa.insert(C), rows)


def conflicts(dialect: Dialect, *, limit: int = 200,
              golden_id: str | None = None) -> list[dict[str, Any]]:
    """Logged conflicts, newest first; of one person (``syncd show``) when given."""
    query = sa.select(C).order_by(C.c.id.desc()).limit(limit)
    if golden_id is not None:
        query = query.where(C.c.golden_id == golden_id)
    with dialect.engine.connect() as conn:
        return [
            {
                "id": r.id, "person": r.golden_id, "field": r.field,
                "candidates": json.loads(r.candidates_json), "winner": r.winner,
                "value": r.value, "policy": r.policy, "resolved": bool(r.resolved),
                "at": r.created_at.isoformat(),
            }
            for r in conn.execute(query)
        ]


# -- runs -----------------------------------------------------------------------------------


def record_run(
    dialect: Dialect, conn: Connection, kind: str, started: datetime, finished: datetime,
    exit_code: int, summary: Any, *, run_id: int | None, keep: timedelta,
) -> None:
    """One row per cycle, in the caller's transaction (secrets masked); runs started
    ``keep`` before this one go, but for those some kept change still names.

    ``run_id``: the row the cycle's first committed change opened (see
    ``syncd.store.history.start_run``), finished here instead of a new one.
    """
    mark = dialect.mark
    values = (dialect.ts(finished), exit_code, dumps(redact_value(summary)))
    if run_id is None:
        dialect.insert(conn, "run", ("kind", "started_at", "finished_at", "exit_code",
                                     "summary_json"), [(kind, dialect.ts(started), *values)])
    else:
        conn.exec_driver_sql(
            f"UPDATE run SET finished_at = {mark}, exit_code = {mark}, "  # noqa: S608
            f"summary_json = {mark} WHERE id = {mark}", (*values, run_id),
        )
    conn.execute(sa.delete(R).where(
        R.c.started_at < started - keep,
        ~sa.exists().where(H.c.run_id == R.c.id),
    ))


def last_runs(dialect: Dialect, limit: int = 1) -> list[dict[str, Any]]:
    query = sa.select(R).order_by(R.c.id.desc()).limit(limit)
    with dialect.engine.connect() as conn:
        return [
            {"id": r.id, "kind": r.kind, "started_at": r.started_at,
             "finished_at": r.finished_at, "exit_code": r.exit_code,
             "summary": json.loads(r.summary_json)}
            for r in conn.execute(query)
        ]


def runs_since(dialect: Dialect, since: datetime) -> list[dict[str, Any]]:
    """The runs started at ``since`` or later, oldest first (a day's, for daily budgets)."""
    query = sa.select(R.c.started_at, R.c.summary_json).where(R.c.started_at >= since)
    with dialect.engine.connect() as conn:
        return [{"started_at": r.started_at, "summary": json.loads(r.summary_json)}
                for r in conn.execute(query.order_by(R.c.id))]


def counts(dialect: Dialect) -> dict[str, dict[str, int]]:
    """Per system: linked contacts and open conflicts by person."""
    with dialect.engine.connect() as conn:
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
