"""Poll: open each system, read what changed, and say how far the watermark may move.

Reading is the only step that talks to systems before planning, so it is
also where a system is *opened* (login, route and type discovery).  What
opening finds (:class:`~syncd.model.Discovered`: no delete route, no change
listing) is kept per system and carried by the poll; the planner's view of a
system is its capabilities narrowed by it, so a server found to offer no
delete never gets a delete derived for it, not even in the first cycle.

The watermark rule is :func:`advance_cursor`, a pure function (DESIGN.md
invariant 3):

* a cursor never passes what was seen — a complete scan has seen everything
  before it began, an incremental read only up to its newest record, and a
  read that failed only up to the last page that arrived (pages come in
  ascending ``updated_at``);
* it never comes closer to now than the clock skew allows;
* it never moves backwards.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from syncd.connectors.base import Connector, SyncTokens
from syncd.engine.spool import PAGE, Spool
from syncd.errors import ConnectorError, SystemUnavailable
from syncd.logs import get_logger
from syncd.model import (
    Discovered,
    Observation,
    Page,
    RemoteRecord,
    Skipped,
    Watermark,
    record_hash,
)

__all__ = ["Hashes", "Interrupted", "PollResult", "Poller", "advance_cursor", "read_since"]

log = get_logger("syncd.poll")

Progress = Callable[[str, str, int], None]
"""(system, "read" | "planned" | "planned_more" | "written", count); "planned_more": the
next group of a large cycle adds to what the first planned."""

Hashes = Callable[[str], Mapping[str, int]]
"""system → {remote id → its link's ``record_hash``}: what a full scan drops records by."""

Linked = Callable[[str], AbstractSet[str]]
"""system → the remote ids of its links still synced (not excluded): what a scoped scan
must account for."""

CONFIRM_MAX = 100
"""Linked records missing from a scoped scan that one cycle reads by id, at most; the rest
wait for the next cycles (and the mass-delete guard counts them meanwhile)."""


class Interrupted(Exception):
    """The cycle was asked to stop before anything was committed."""


def unexpected(system: str, doing: str, exc: Exception) -> ConnectorError:
    """An exception outside our tree, as this system's error for the cycle (traceback logged)."""
    log.error("connector_crashed", system=system, doing=doing, exc_info=exc)
    return SystemUnavailable(f"{system}: unexpected error while {doing}: "
                             f"{type(exc).__name__}: {exc}", system=system)


def advance_cursor(
    cursor: datetime | None,
    *,
    now: datetime,
    skew: timedelta,
    complete: bool,
    max_seen: datetime | None,
) -> datetime | None:
    """The new cursor of an incremental system after one read.

    ``complete``: the read was a full scan that finished without error.
    ``max_seen``: the newest ``updated_at`` among the pages that arrived.
    """
    seen_up_to = now if complete else max_seen
    if seen_up_to is None:
        return cursor
    candidate = min(seen_up_to, now - skew)
    return candidate if cursor is None or candidate > cursor else cursor


def read_since(
    mark: Watermark,
    *,
    incremental: bool,
    overlap: timedelta,
    now: datetime,
    full_scan_interval: timedelta,
    full: bool,
    since: datetime | None,
) -> datetime | None:
    """Where this read starts: ``None`` is a full scan.

    A full-scan system always reads whole; an incremental one reads from its
    cursor less the API's overlap, unless a full sweep is asked for or due.
    """
    if not incremental:
        return None
    if since is not None or full or mark.cursor is None:
        return since
    due = mark.last_full_scan_at is None or now - mark.last_full_scan_at >= full_scan_interval
    return None if due else mark.cursor - overlap


@dataclass
class PollResult:
    system: str
    observation: Observation | None
    watermark: Watermark
    error: ConnectorError | None = None
    full: bool = False
    skipped: list[Skipped] = field(default_factory=list)
    """Listed items that could not be read: each rejected alone, and the scan not complete."""
    listed: int = 0
    """Records read, including those left out as unchanged."""
    discovered: Discovered = field(default_factory=Discovered)
    """What opening the system found it not to offer (as of this read)."""


class Poller:
    """Reads systems concurrently, one thread per system, reusing one pool across cycles."""

    def __init__(
        self,
        connectors: Mapping[str, Connector],
        org_ids: Callable[[str], Mapping[str, str]],
        *,
        skew: timedelta,
        full_scan_interval: timedelta,
        stop: threading.Event,
    ) -> None:
        self.connectors = connectors
        self.org_ids = org_ids
        self.skew = skew
        self.full_scan_interval = full_scan_interval
        self.stop = stop
        self.progress: Progress = lambda system, what, count: None
        self.spill_after: int | None = None
        """Records one system's read keeps as objects; past that, as compressed pages."""
        self.linked: Linked | None = None
        """Set by the engine: what a scoped scan (``Capabilities.scoped_listing``) must see."""
        self.confirm_max = CONFIRM_MAX
        self.extras: Callable[[str], Mapping[str, tuple[str, Mapping[str, Any]]]] | None = None
        """Set by the engine: a token system's links' ``extra`` (:class:`SyncTokens`)."""
        self.discovered: dict[str, Discovered] = {}
        """system → what its latest opening found it not to offer (``Connector.open``)."""
        self._pool: ThreadPoolExecutor | None = None

    def open(self) -> dict[str, ConnectorError]:
        """Open every connector (login, discovery), keeping what each found; the systems that
        could not be opened (they keep what an earlier opening found)."""
        errors: dict[str, ConnectorError] = {}
        for name, connector in self.connectors.items():
            try:
                self.discovered[name] = connector.open()
            except ConnectorError as exc:
                errors[name] = exc
            except Exception as exc:  # a connector bug or an answer nobody foresaw
                errors[name] = unexpected(name, "opening", exc)
        return errors

    def poll_one(
        self, name: str, mark: Watermark, now: datetime, full: bool, since: datetime | None,
        failed_open: ConnectorError | None = None, hashes: Hashes | None = None,
    ) -> PollResult:
        """Read one system.

        With ``hashes``, a full scan keeps only the records that differ from
        their links (by :func:`~syncd.model.record_hash`) and the linked ids it
        did not list: a quiet scan of 100 000 records then holds nothing but a
        set of references to ids already in memory.  Tombstones and records
        under unmapped parents are always kept — the planner acts on them.
        """
        connector = self.connectors[name]
        discovered = self.discovered.get(name, Discovered())
        caps = discovered.apply(connector.capabilities)
        since = read_since(mark, incremental=caps.incremental, overlap=caps.overlap, now=now,
                           full_scan_interval=self.full_scan_interval, full=full, since=since)
        full = since is None
        known = hashes(name) if hashes is not None and full and failed_open is None else None
        unlisted = set(known) if known is not None else None
        mapped = set(self.org_ids(name))
        listed = 0
        records: list[RemoteRecord] | Spool = []
        skipped: list[Skipped] = []
        unread: set[str] = set()
        max_seen: datetime | None = None
        scoped = full and caps.scoped_listing and self.linked is not None
        seen: set[str] = set()
        unconfirmed: list[str] = []
        error = failed_open
        token = mark.token

        def take(pages: Iterator[Page]) -> None:
            nonlocal listed, records, max_seen, token
            for page in pages:
                if self.stop.is_set():
                    raise Interrupted(f"{name}: stopped while reading")
                if page.token is not None:
                    token = page.token
                listed += len(page.records)
                if scoped:
                    seen.update(rec.remote_id for rec in page.records)
                if known is None or unlisted is None:
                    records.extend(page.records)
                else:
                    for rec in page.records:
                        unlisted.discard(rec.remote_id)
                        if (rec.deleted or rec.org_id not in mapped
                                or known.get(rec.remote_id)
                                != record_hash(rec.fields, rec.org_id, rec.extra)):
                            records.append(rec)
                if (self.spill_after is not None and isinstance(records, list)
                        and len(records) > self.spill_after):
                    records = Spool(records, page=min(PAGE, self.spill_after))
                skipped.extend(page.skipped)
                unread.update(page.unread_orgs)
                self.progress(name, "read", len(page.records))
                stamps = [r.updated_at for r in page.records if r.updated_at is not None]
                if stamps and (max_seen is None or max(stamps) > max_seen):
                    max_seen = max(stamps)

        if error is None:
            try:
                if isinstance(connector, SyncTokens):
                    connector.resume_sync(mark.token, self.extras(name) if self.extras else {})
                take(connector.list_records(sorted(self.org_ids(name)), since))
                if scoped and not skipped and self.linked is not None:
                    # Missing from a scan that asked only the mapped organizations: moved
                    # out of them, or deleted. Only a read by id tells which.
                    missing = sorted(self.linked(name) - seen, key=lambda r: (len(r), r))
                    unconfirmed = missing[self.confirm_max:]
                    take(connector.read_ids(missing[:self.confirm_max]))
                    if missing:
                        log.info("scoped_scan_missing", system=name, missing=len(missing),
                                 unconfirmed=len(unconfirmed))
            except ConnectorError as exc:
                error = exc
            except Interrupted:
                raise
            except Exception as exc:  # never let one system's surprise stop the others
                error = unexpected(name, "reading", exc)
        # A skipped item may be a linked record: its absence proves nothing this time.
        complete = full and error is None and not skipped
        cursor = mark.cursor
        if caps.incremental:
            cursor = advance_cursor(cursor, now=now, skew=self.skew, complete=complete,
                                    max_seen=max_seen)
        new_mark = replace(
            mark,
            cursor=cursor,
            last_poll_at=now,
            last_full_scan_at=now if complete else mark.last_full_scan_at,
            last_success_at=now if error is None else mark.last_success_at,
            last_error=str(error) if error else None,
            token=token,
        )
        obs = Observation(name, records, complete=complete, observed_at=now,
                          unread_orgs=frozenset(unread), unlisted=unlisted,
                          unconfirmed=frozenset(unconfirmed))
        return PollResult(name, obs, new_mark, error, full, skipped, listed, discovered)

    def poll(
        self,
        marks: Mapping[str, Watermark],
        now: datetime,
        *,
        full: set[str] | None = None,
        since: datetime | None = None,
        only: set[str] | None = None,
        hashes: Hashes | None = None,
    ) -> list[PollResult]:
        """Open every system, then read the chosen ones (``full``: empty set = all)."""
        failed = self.open()
        names = sorted(n for n in self.connectors if only is None or n in only)
        jobs = [
            (name, marks.get(name, Watermark(name)), now,
             full is not None and (not full or name in full), since, failed.get(name), hashes)
            for name in names
        ]
        if len(jobs) == 1:
            return [self.poll_one(*jobs[0])]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=min(8, len(self.connectors)),
                                            thread_name_prefix="syncd-poll")
        futures = {job[0]: self._pool.submit(self.poll_one, *job) for job in jobs}
        pending = set(futures.values())
        while pending:
            _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            if len(pending) < len(futures):
                # A system still sitting out its throttle once another is done is left
                # out of this cycle rather than holding every push back by minutes.
                for name, future in futures.items():
                    traffic = self.connectors[name].traffic
                    if future in pending and traffic.throttled_for() > 0:
                        traffic.leave_cycle()
        return [futures[job[0]].result() for job in jobs]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
