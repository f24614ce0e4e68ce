"""An in-process system: the engine's test double, benchmark partner and trial store.

Switches model what real APIs do to a sync engine:

* ``incremental`` — list only records changed since a moment (with
  tombstones for deletions when ``tombstones`` is on), else full scans;
* ``tick_timestamps`` — every listing bumps timestamps without changing content;
* ``fail_writes`` — the next N writes fail before doing anything;
* ``timeout_writes`` — the next N writes are applied, then report a timeout
  (the outcome is unknown to the caller: the crash-after-apply case);
* ``fail_after_apply`` — the next N writes are applied, then answered 502 (a proxy
  that forwarded the request and lost the answer: unknown outcome again);
* ``fail_reads`` — the next N listings fail before their first page;
* ``timestamps`` — off: records carry no update time (like Zoho's contact persons);
* ``can_move`` — an update may change a record's organization; off: it is refused;
* ``crash_after_writes`` — N more writes are applied, then the "process dies"
  (:class:`SimulatedCrash`) before syncd records them.

With ``path`` the records live in a JSON file, so ``syncd once`` can be run
against it from the command line.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from syncd.config import MemoryConfig
from syncd.connectors.base import (
    Capabilities,
    Discovered,
    FieldLimit,
    Page,
    RemoteRecord,
    Skipped,
    WriteResult,
)
from syncd.contact import FIELDS, Fields, clean
from syncd.errors import NotFound, OutcomeUnknown, RecordRejected, RetriableError

__all__ = [
    "InProcess", "InProcessTraffic", "MemoryConnector", "MemoryRecord", "SimulatedCrash",
    "from_config",
]

_TICK = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SimulatedCrash(BaseException):
    """The process "dies" here: raised past every ``except Exception`` of syncd."""


@dataclass(slots=True)
class MemoryRecord:
    org_id: str
    fields: Fields
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class InProcessTraffic:
    """The traffic of a system living in this process: never throttled, no wait to cut
    short; its requests are those its owner counts."""

    count: Callable[[], int]

    def request_count(self) -> int:
        return self.count()

    def throttled_count(self) -> int:
        return 0  # an in-process system never throttles

    def watch(self, stop: threading.Event) -> None:
        return None

    def throttled_for(self) -> float:
        return 0.0

    def leave_cycle(self) -> None:
        return None


class InProcess:
    """What a system living in this process answers to the engine's housekeeping:
    nothing to open, one write at a time; it counts its own ``requests``."""

    requests: int
    max_in_flight: ClassVar[int] = 1
    """One write at a time: there is no latency to hide in-process, and the injected
    faults of :class:`MemoryConnector` (crash after N writes ...) count writes in a
    deterministic order."""

    @property
    def traffic(self) -> InProcessTraffic:
        return InProcessTraffic(lambda: self.requests)

    def open(self) -> Discovered:
        return Discovered()  # its capabilities say it all

    def read_ids(self, remote_ids: Sequence[str]) -> Iterator[Page]:
        raise NotImplementedError(f"{type(self).__name__} reads no record by id")


@dataclass
class MemoryConnector(InProcess):
    name: str
    incremental: bool = False
    tombstones: bool = True
    fields: frozenset[str] = frozenset(FIELDS)
    limits: Mapping[str, FieldLimit] = field(default_factory=dict)
    page_size: int = 500
    path: Path | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    records: dict[str, MemoryRecord] = field(default_factory=dict)
    deleted: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    tick_timestamps: bool = False
    fail_writes: int = 0
    timeout_writes: int = 0
    crash_after_writes: int | None = None
    """After this many more writes, the next one "kills the process" (SimulatedCrash)."""
    fail_pages_after: int | None = None
    """Raise a retriable error after this many pages of a listing (a failed page)."""
    can_delete: bool = True
    fail_after_apply: int = 0
    fail_reads: int = 0
    garble: int | None = None
    """The next listing answers the record at this position (modulo their number) in a shape
    that cannot be read: it is skipped, named, and the scan is not complete."""
    timestamps: bool = True
    can_move: bool = False
    scoped: bool = False
    """List only the organizations asked for (as Lightening does), and read by id."""
    requests: int = 0
    writes: int = 0
    _next_id: int = 1
    _last_stamp: datetime = _EPOCH
    _journal: list[tuple[datetime, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.path is not None and self.path.exists():
            self._load()

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            fields=self.fields,
            incremental=self.incremental,
            can_delete=self.can_delete,
            timestamps=self.timestamps,
            limits=self.limits,
            overlap=timedelta(seconds=1) if self.incremental else timedelta(0),
            can_move=self.can_move,
            scoped_listing=self.scoped,
        )

    # -- the user's side: edits made "in the UI" -------------------------------------------

    def stamp(self, remote_id: str | None = None) -> datetime:
        """A strictly increasing timestamp, so incremental reads never tie.

        With a record id it is also journaled: an incremental listing then
        finds what changed by bisection, as a server would with an index.
        """
        now = self.clock()
        if now <= self._last_stamp:
            now = self._last_stamp + _TICK
        self._last_stamp = now
        if remote_id is not None:
            self._journal.append((now, remote_id))
        return now

    def add(self, org_id: str, fields: Mapping[str, str], remote_id: str | None = None) -> str:
        with self._lock:
            rid = remote_id or self._new_id()
            self.records[rid] = MemoryRecord(org_id, clean(fields, self.fields), self.stamp(rid))
            self._save()
            return rid

    def edit(self, remote_id: str, **changes: str) -> None:
        with self._lock:
            rec = self.records[remote_id]
            rec.fields = {**rec.fields, **{k: v for k, v in changes.items() if k in self.fields}}
            rec.updated_at = self.stamp(remote_id)
            self._save()

    def move(self, remote_id: str, org_id: str) -> None:
        """The user moves a contact to another organization (its parent)."""
        with self._lock:
            rec = self.records[remote_id]
            rec.org_id = org_id
            rec.updated_at = self.stamp(remote_id)
            self._save()

    def remove(self, remote_id: str) -> None:
        with self._lock:
            rec = self.records.pop(remote_id)
            self.deleted[remote_id] = (rec.org_id, self.stamp(remote_id))
            self._save()

    def touch(self, remote_id: str) -> None:
        """Bump a timestamp without changing content."""
        with self._lock:
            self.records[remote_id].updated_at = self.stamp(remote_id)

    # -- the connector side ---------------------------------------------------------------

    def list_records(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Page]:
        # Every organization is listed (as Harvest's GET /contacts does): the planner
        # leaves out the unmapped ones, and a contact moved out of scope is seen as moved.
        # A scoped one lists only those asked for, and the poller reads the rest by id.
        asked = set(org_ids) if self.scoped else None
        with self._lock:
            if self.fail_reads > 0:
                self.fail_reads -= 1
                raise RetriableError(f"{self.name}: listing failed", system=self.name)
            if self.tick_timestamps:
                for rid, rec in self.records.items():
                    rec.updated_at = self.stamp(rid)
            if since is None:
                rows: list[RemoteRecord] = [
                    RemoteRecord(rid, rec.org_id, rec.fields, rec.updated_at)
                    for rid, rec in self.records.items()
                ]
            else:
                rows = self._changed_since(since)
        if asked is not None:
            rows = [r for r in rows if r.org_id in asked]
        if since is not None:
            rows.sort(key=lambda r: r.updated_at or since)
        if not self.timestamps:
            rows = [replace(r, updated_at=None) for r in rows]
        garbled: list[Skipped] = []
        if self.garble is not None and rows:
            bad = rows.pop(self.garble % len(rows))
            garbled.append(Skipped(bad.remote_id, "ValueError: injected: an unreadable item"))
            self.garble = None
        for pages, start in enumerate(range(0, max(len(rows), 1), self.page_size)):
            if self.fail_pages_after is not None and pages >= self.fail_pages_after:
                raise RetriableError(f"{self.name}: listing failed on page {pages + 1}")
            self.requests += 1
            yield Page(rows[start : start + self.page_size], garbled if pages == 0 else ())

    def read_ids(self, remote_ids: Sequence[str]) -> Iterator[Page]:
        """Each record asked for, one request each, wherever it is now; the gone left out."""
        for rid in remote_ids:
            with self._lock:
                self.requests += 1
                rec = self.records.get(rid)
                row = None if rec is None else RemoteRecord(rid, rec.org_id, rec.fields,
                                                            rec.updated_at if self.timestamps else None)
            if row is not None:
                yield Page([row])

    def _changed_since(self, since: datetime) -> list[RemoteRecord]:
        start = bisect.bisect_left(self._journal, (since, ""))
        rows: list[RemoteRecord] = []
        for rid in dict.fromkeys(rid for _, rid in self._journal[start:]):
            rec = self.records.get(rid)
            if rec is not None:
                if rec.updated_at >= since:
                    rows.append(RemoteRecord(rid, rec.org_id, rec.fields, rec.updated_at))
            elif self.tombstones and rid in self.deleted:
                org, when = self.deleted[rid]
                if when >= since:
                    rows.append(RemoteRecord(rid, org, {}, when, deleted=True))
        return rows

    def _write_gate(self, what: str) -> RetriableError | None:
        """Count a write; raise for an injected failure; an error = apply, then raise it."""
        if self.crash_after_writes is not None:
            if self.crash_after_writes <= 0:
                self.crash_after_writes = None
                raise SimulatedCrash(f"{self.name}: {what}")
            self.crash_after_writes -= 1
        self.requests += 1
        self.writes += 1
        if self.fail_writes > 0:
            self.fail_writes -= 1
            # The answer lost after the write was sent: a create of unknown outcome.
            lost = OutcomeUnknown if what.startswith("create") else RetriableError
            raise lost(f"{self.name}: {what}: injected failure", system=self.name)
        if self.timeout_writes > 0:
            self.timeout_writes -= 1
            return _unknown(f"{self.name}: {what}: timed out after applying", self.name)
        if self.fail_after_apply > 0:
            self.fail_after_apply -= 1
            return _unknown(f"{self.name}: {what}: HTTP 502 after applying", self.name)
        return None

    def create(self, org_id: str, fields: Fields) -> WriteResult:
        timeout = self._write_gate("create")
        with self._lock:
            rid = self._new_id()
            rec = MemoryRecord(org_id, clean(fields, self.fields), self.stamp(rid))
            self.records[rid] = rec
            self._save()
        if timeout:
            raise timeout
        return WriteResult(rid, dict(rec.fields), rec.updated_at)

    def update(
        self,
        remote_id: str,
        org_id: str,
        changed: Fields,
        desired: Fields,
        extra: Mapping[str, Any],
    ) -> WriteResult:
        timeout = self._write_gate(f"update {remote_id}")
        with self._lock:
            rec = self.records.get(remote_id)
            if rec is None:
                raise NotFound(f"{self.name}: update {remote_id}: no such record", system=self.name)
            if org_id != rec.org_id:
                if not self.can_move:
                    raise RecordRejected(f"{self.name}: update {remote_id}: cannot move", system=self.name)
                rec.org_id = org_id
            rec.fields = {**rec.fields, **{k: v for k, v in changed.items() if k in self.fields}}
            rec.updated_at = self.stamp(remote_id)
            self._save()
        if timeout:
            raise timeout
        return WriteResult(remote_id, dict(rec.fields), rec.updated_at)

    def delete(self, remote_id: str, org_id: str, extra: Mapping[str, Any]) -> None:
        timeout = self._write_gate(f"delete {remote_id}")
        with self._lock:
            rec = self.records.pop(remote_id, None)
            if rec is not None:
                self.deleted[remote_id] = (rec.org_id, self.stamp(remote_id))
            self._save()
        if timeout:
            raise timeout


    def close(self) -> None:
        self._save()

    # -- persistence ----------------------------------------------------------------------

    def _new_id(self) -> str:
        while str(self._next_id) in self.records or str(self._next_id) in self.deleted:
            self._next_id += 1
        rid = str(self._next_id)
        self._next_id += 1
        return rid

    def _save(self) -> None:
        if self.path is None:
            return
        doc = {
            "records": {
                rid: {"org_id": r.org_id, "fields": r.fields, "updated_at": r.updated_at.isoformat()}
                for rid, r in self.records.items()
            },
            "deleted": {rid: [org, when.isoformat()] for rid, (org, when) in self.deleted.items()},
        }
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
        tmp.replace(self.path)

    def _load(self) -> None:
        assert self.path is not None
        doc = json.loads(self.path.read_text() or "{}")
        for rid, r in doc.get("records", {}).items():
            self.records[rid] = MemoryRecord(
                str(r["org_id"]),
                clean(r.get("fields", {}), self.fields),
                datetime.fromisoformat(r["updated_at"]) if r.get("updated_at") else self.stamp(),
            )
        for rid, (org, when) in doc.get("deleted", {}).items():
            self.deleted[rid] = (str(org), datetime.fromisoformat(when))
        self._journal = sorted(
            [(r.updated_at, rid) for rid, r in self.records.items()]
            + [(when, rid) for rid, (_, when) in self.deleted.items()]
        )
        if self._journal:
            self._last_stamp = self._journal[-1][0]


def _unknown(message: str, system: str) -> RetriableError:
    """The error of a write that may have been applied (OutcomeUnknown where it exists)."""
    import syncd.errors as errors

    kind: type[RetriableError] = getattr(errors, "OutcomeUnknown", RetriableError)
    return kind(message, system=system)


def from_config(name: str, cfg: MemoryConfig, **options: Any) -> MemoryConnector:
    path = Path(cfg.path) if cfg.path else None
    return MemoryConnector(name=name, incremental=cfg.incremental, path=path, **options)
