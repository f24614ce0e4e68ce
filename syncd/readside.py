"""The read side: what ``status``, ``show`` and the console tell an operator, computed once.

What each system still owes, who is quarantined, a person's copies, the
failures, conflicts and runs: the CLI formats these documents as tables or
``--json``, the console as pages and ``/api/...``; neither computes them on
its own, so the two never disagree.  Every function here reads the store and
the connectors' capabilities; none writes (the operator's actions are in
:mod:`syncd.store.views`).

History and undo (CONTRACT §5) come from the change table when it exists:
:func:`history` and :func:`undo` are the one place to wire them up.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.config import Settings
from syncd.connectors.base import Budgeted, Connector
from syncd.contact import FIELDS
from syncd.errors import ConfigError, SyncdError
from syncd.model import Failure, Policy, Rejection, State, Write
from syncd.people import People, Person, describe_write
from syncd.store.repo import Store
from syncd.store.views import failures_by_id, open_conflicts

__all__ = [
    "Ambiguous",
    "HistoryUnavailable",
    "Snapshot",
    "conflict_rows",
    "connected",
    "error_groups",
    "error_kind",
    "health",
    "history",
    "one_person",
    "person",
    "quarantine_rows",
    "runs",
    "snapshot",
    "status",
    "undo",
]


class HistoryUnavailable(SyncdError):
    """The store keeps no change history yet, so there is nothing to show or undo."""

    exit_code = 2


@contextmanager
def connected(settings: Settings) -> Iterator[dict[str, Connector]]:
    """The enabled systems' connectors, for their capabilities and budgets; closed on exit.

    Nothing is sent through them here: the read side asks what each system can
    hold (to derive what it owes) and what its daily budget says.
    """
    from syncd.app import build_connectors

    connectors = build_connectors(settings)
    try:
        yield connectors
    finally:
        for c in connectors.values():
            c.close()


@dataclass(frozen=True)
class Snapshot:
    """One state of the store and what follows from it: the costly part of ``status``.

    The console keeps one per store revision, so a page does not reload 100 000
    people; the CLI makes one per command.
    """

    state: State
    people: People
    writes: Sequence[Write]
    rejections: Sequence[Rejection]
    linked: Mapping[str, int]
    """system → links with a remote id (``status``'s ``linked``)."""


def snapshot(settings: Settings, state: State, connectors: Mapping[str, Connector]) -> Snapshot:
    from syncd.engine.cycle import system_infos
    from syncd.engine.writes import derive_writes

    writes, rejections = derive_writes(state, system_infos(settings, connectors).values(),
                                       policy=Policy(fields=settings.field_policies()))
    linked = Counter(system for (_, system), link in state.links.items() if link.remote_id is not None)
    return Snapshot(state, People(state), writes, rejections, dict(linked))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def status(settings: Settings, store: Store, connectors: Mapping[str, Connector],
           snap: Snapshot | None = None, *, now: datetime | None = None,
           with_health: bool = False) -> dict[str, Any]:
    """``syncd status --json``: per system its last poll, watermark, links and what it owes.

    ``with_health`` adds each system's freshness (:func:`health`) for the console.
    """
    from syncd.engine.budget import LOOKBACK, resume_from

    now = now or datetime.now(UTC)
    marks = store.watermarks()
    failures = store.failures()
    last = store.last_runs(1)
    recent = store.runs_since(now - LOOKBACK)
    if snap is None:
        snap = snapshot(settings, store.load_state(), connectors)
    resume_from(recent, connectors)  # what a new `syncd once` process would start from
    rows: dict[str, dict[str, Any]] = {}
    for name in settings.systems:
        mark = marks.get(name)
        rows[name] = {
            "enabled": settings.systems[name].enabled,
            "kind": settings.systems[name].kind,
            "last_poll": _iso(mark.last_poll_at) if mark else None,
            "last_success": _iso(mark.last_success_at) if mark else None,
            "watermark": _iso(mark.cursor) if mark else None,
            "last_error": mark.last_error if mark else None,
            "linked": snap.linked.get(name, 0),
            "pending_writes": sum(1 for w in snap.writes if w.system == name),
            "rejected": sum(1 for r in snap.rejections if r.system == name),
            "quarantined": sum(1 for f in failures if f.system == name and f.quarantined),
            "budget": _budget(connectors.get(name)),
        }
        if with_health:
            rows[name].update(health(settings, name, rows[name], recent, now))
    run: dict[str, Any] | None = {
        "kind": last[0]["kind"],
        "finished_at": _iso(last[0]["finished_at"]),
        "exit_code": last[0]["exit_code"],
    } if last else None
    return {
        "last_run": run,
        "systems": rows,
        "people": sum(1 for g in snap.state.goldens.values() if not g.deleted),
        "open_conflicts": open_conflicts(store),
        "quarantine": quarantine_rows(store, snap.people),
        "field_policies": {name: rule.summary() for name, rule in settings.fields.items()},
    }


def _budget(connector: Any) -> dict[str, Any] | None:
    """A connector with a daily request budget: today's spend and any rest, resumed from the
    stored runs, so that a budget spent by earlier ``once`` processes shows as well."""
    return connector.budget_status() if isinstance(connector, Budgeted) else None


_THROTTLE_WORDS = re.compile(r"HTTP 429|rate.?limit|throttl|Retry-After", re.IGNORECASE)
_BUDGET_WORDS = re.compile(r"daily budget|daily cap|daily limit", re.IGNORECASE)
_RESUMES = re.compile(r"resumes? after (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")
"""What ``http.py`` and the Zoho connector say when a system must wait: "... resumes after
2026-03-04T12:01:00Z"."""


def _span(every: timedelta) -> str:
    """``5m``, ``6h``, ``1d 2h``: an interval as the configuration writes it."""
    s = int(every.total_seconds())
    parts = [f"{n}{u}" for n, u in ((s // 86400, "d"), (s % 86400 // 3600, "h"),
                                     (s % 3600 // 60, "m"), (s % 60, "s")) if n]
    return " ".join(parts) or "0s"


def health(settings: Settings, name: str, row: Mapping[str, Any],
           recent: Sequence[Mapping[str, Any]], now: datetime) -> dict[str, Any]:
    """How fresh a system is, as the sync-health pages of other tools show it.

    ``state``: ``off`` (disabled); ``capped`` (its daily budget is spent, until
    ``resumes_at``, from the budget or from the error that said so);
    ``throttled`` (its last poll gave up on a rate limit; it resumes when the
    error said, else after the throttle window); ``failing`` (its last poll failed);
    ``delayed`` (no successful poll within twice its interval, or none yet);
    else ``ok``.  ``requests_today`` counts the requests of today's runs (UTC).
    """
    interval = settings.system_interval(name)
    cfg = settings.systems[name]
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    spent = sum(int(run["summary"].get("systems", {}).get(name, {}).get("requests", 0))
                for run in recent if run["started_at"] >= midnight)
    budget = row.get("budget") or {}
    last_ok = datetime.fromisoformat(row["last_success"]) if row.get("last_success") else None
    last_poll = datetime.fromisoformat(row["last_poll"]) if row.get("last_poll") else None
    state, resumes, detail = "ok", None, f"polled within its interval ({_span(interval)})"
    capped = budget.get("capped_until")
    error = row.get("last_error") or ""
    said = _RESUMES.search(error)
    told = datetime.fromisoformat(said.group(1).replace("Z", "+00:00")) if said else None
    if not cfg.enabled:
        state, detail = "off", "disabled in the configuration"
    elif capped and datetime.fromisoformat(capped) > now:
        state, resumes = "capped", capped
        detail = f"daily budget spent ({budget.get('used')} of {budget.get('limit')})"
    elif _BUDGET_WORDS.search(error) and (told is None or told > now):
        state, detail = "capped", "its daily request budget is spent"
        resumes = told.isoformat() if told else budget.get("resets_at")
    elif _THROTTLE_WORDS.search(error):
        state, detail = "throttled", "its last poll was told to wait (rate limit)"
        if told is not None:
            resumes = told.isoformat()
        elif last_poll is not None:
            resumes = (last_poll + cfg.throttle_window).isoformat()
    elif row.get("last_error"):
        state, detail = "failing", "its last poll failed"
    elif last_ok is None:
        state, detail = "delayed", "never polled successfully"
    elif now - last_ok > 2 * interval:
        state, detail = "delayed", f"not polled within twice its interval ({_span(interval)})"
    return {"state": state, "state_detail": detail, "resumes_at": resumes,
            "interval_s": int(interval.total_seconds()),
            "age_s": int((now - last_ok).total_seconds()) if last_ok else None,
            "requests_today": spent}


# -- quarantined writes and their kinds -----------------------------------------------------

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_NUMBER = re.compile(r"\d+")


def error_kind(error: str) -> str:
    """The kind of an error: its words with the ids, numbers and quoted values taken out.

    ``harvest: PUT /contacts/1001 (update): HTTP 422 'x@y' is invalid`` and the same
    for contact 1002 are one kind, so an operator retries or drops them together.
    """
    text = _EMAIL.sub("…", _QUOTED.sub("'…'", error))
    return _NUMBER.sub(lambda m: m.group() if len(m.group()) == 3 else "N", text)[:300]


def group_id(kind: str) -> str:
    return hashlib.blake2b(kind.encode(), digest_size=6).hexdigest()


def _field_of(error: str) -> str | None:
    """The canonical field an error names (``email``, ``phone`` …), if it names one."""
    low = error.casefold()
    return next((f for f in FIELDS if f in low or f.replace("_", " ") in low), None)


class Ambiguous(ConfigError):
    """A query that means several people: a usage error that lists them (exit 2)."""

    def __init__(self, message: str, candidates: list[Person]) -> None:
        super().__init__(message)
        self.candidates = candidates


def one_person(people: People, query: str) -> Person:
    """The person a ``--person``/``show`` query means; none or several is a usage error (2)."""
    found = people.find(query)
    if not found:
        raise ConfigError(
            f"no person matches {query!r}: give an email, a name, system:remote-id "
            "(e.g. harvest:1001) or a person id"
        )
    if len(found) > 1:
        listed = "\n".join(f"  {p.id}  {p.label()}" for p in found[:20])
        more = f"\n  ... and {len(found) - 20} more" if len(found) > 20 else ""
        raise Ambiguous(
            f"{query!r} matches {len(found)} people; give one of their ids or an email:\n"
            f"{listed}{more}", found,
        )
    return found[0]


def quarantine_rows(store: Store, people: People, system: str | None = None,
                    golden_id: str | None = None) -> list[dict[str, Any]]:
    """Quarantined writes with the person named (``quarantine list --json``, ``/api/errors``)."""
    rows = []
    for fid, f in failures_by_id(store, quarantined=True, system=system,
                                 golden_id=golden_id).items():
        who = people(f.golden_id)
        kind = error_kind(f.last_error)
        rows.append({"id": fid, "system": f.system, **who.as_dict(), "label": who.label(),
                     "action": f.action, "remote_id": f.remote_id, "field": _field_of(f.last_error),
                     "attempts": f.attempts, "error": f.last_error, "kind": kind,
                     "group": group_id(kind), "since": f.updated_at.isoformat()})
    return rows


def error_groups(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Quarantined writes grouped by kind, the largest group first."""
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        g = groups.setdefault(row["group"], {"group": row["group"], "kind": row["kind"],
                                             "errors": []})
        g["errors"].append(row)
    return sorted(groups.values(), key=lambda g: (-len(g["errors"]), g["kind"]))


def conflict_rows(rows: Iterable[Mapping[str, Any]], people: People) -> list[dict[str, Any]]:
    """Logged conflicts with the person named (``conflicts --json``, ``/api/conflicts``)."""
    named = []
    for r in rows:
        who = people(r["person"])
        named.append({**r, **who.as_dict(), "label": who.label()})
    return named


def _failure_doc(f: Failure) -> dict[str, Any]:
    return {"system": f.system, "action": f.action, "remote_id": f.remote_id,
            "attempts": f.attempts, "quarantined": f.quarantined, "error": f.last_error,
            "next_retry_at": _iso(f.next_retry_at), "since": f.updated_at.isoformat()}


def person(settings: Settings, store: Store, connectors: Mapping[str, Connector],
           state: State, people: People, gid: str) -> dict[str, Any]:
    """``syncd show --json``: one person as every system holds them, and what is still to come."""
    from syncd.engine.cycle import system_infos
    from syncd.engine.writes import derive_writes

    who = people(gid)
    seen = store.link_times(gid)
    failures = [f for f in store.failures() if f.golden_id == gid]
    conflicts = conflict_rows(store.conflicts(limit=1000, golden_id=gid), people)
    writes, rejections = derive_writes(state, system_infos(settings, connectors).values(),
                                       only=[gid], policy=Policy(fields=settings.field_policies()))
    golden = state.goldens.get(gid)
    systems: dict[str, dict[str, Any]] = {}
    for name in sorted(settings.systems):
        link = state.links.get((gid, name))
        systems[name] = {"linked": False} if link is None else {
            "linked": link.remote_id is not None,
            "excluded": link.excluded,
            "remote_id": link.remote_id,
            "org_id": link.org_id,
            "fields": dict(link.fields),
            "remote_updated_at": _iso(link.remote_updated_at),
            "updated_at": _iso(seen.get(name)),
        }
    return {
        **who.as_dict(),
        "label": who.label(),
        "deleted": who.deleted,
        "organization": golden.org if golden else None,
        "golden": dict(golden.fields) if golden else {},
        "systems": systems,
        "pending": [describe_write(w, people) for w in writes],
        "rejected": [{"system": r.system, "action": r.action.value, "field": r.field,
                      "reason": r.reason} for r in rejections],
        "failures": [_failure_doc(f) for f in failures],
        "conflicts": conflicts,
    }


def runs(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """Recent runs, newest first, in ``syncd runs --json``'s shape (CONTRACT §5).

    ``changes``: how many golden-record changes the run made.
    """
    from syncd.store.history import runs as history_runs

    return history_runs(store, limit)


# -- history and undo (syncd.store.history, syncd.engine.undo) --------------------------------

def history(store: Store, gid: str, *, limit: int = 100) -> list[dict[str, Any]] | None:
    """The person's changes, newest first (CONTRACT §5), or ``None`` while the store keeps
    no history.  The console shows "no history yet" for ``None`` and hides undo."""
    from syncd.store.history import enabled, person_changes

    if not enabled(store):
        return None
    return [c.as_dict() for c in person_changes(store, gid, limit)]


def undo(store: Store, *, changes: Sequence[int] = (), run: int | None = None) -> dict[str, Any]:
    """Undo changes (or a run's); ``{"undone", "changes", "refused"}`` as ``undo --json``."""
    from syncd.engine.undo import undo as undo_changes

    done = undo_changes(store, ids=list(changes), run=run, now=datetime.now(UTC))
    return done.as_dict()
