"""``run_once``: poll → plan → push, the one entry point of every command.

A cycle polls every enabled system concurrently, then takes what it must plan
as batches of (state, records read) — the state kept in memory, the stored
people the records touch, a group of people at a time (a large first sync) or
everyone — and for each batch plans, guards, commits, derives and pushes.
The plan is committed in one transaction together with the watermarks it
justifies (:mod:`syncd.engine.commit`), so a watermark never runs ahead of
what is stored.  Push then sends the derived writes, one thread per system,
recording each result in the link at once (in small batches); a crash between
a write and its bookkeeping is healed by the next poll, which sees the record
and matches it instead of writing it again.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncd.config import Settings
from syncd.connectors.base import Connector
from syncd.engine.batch import Group, Splitter
from syncd.engine.budget import caps, resume_budgets
from syncd.engine.cache import OwnWrites, StateCache
from syncd.engine.commit import Commit, Raced, commit_plan, due
from syncd.engine.match import KEY_FIELDS
from syncd.engine.plan import PlanResult, plan
from syncd.engine.poll import Hashes, Interrupted, Poller, PollResult, Progress
from syncd.engine.push import Pusher, PushOutcome
from syncd.engine.report import CycleReport, Named, SystemReport
from syncd.engine.writes import derive_writes
from syncd.errors import MassDeleteError, StoreLockedError, StoreUnavailable
from syncd.logs import get_logger
from syncd.model import (
    Discovered,
    Failure,
    Observation,
    Policy,
    Rejection,
    State,
    SystemInfo,
    Write,
)
from syncd.people import People
from syncd.store import history
from syncd.store.repo import Store

__all__ = [
    "CycleReport", "Interrupted", "Syncer", "SystemReport", "run_once", "setup_marker",
    "system_infos",
]

log = get_logger("syncd.cycle")
_REPLANS = 3
"""Plans of one cycle thrown away because golden records changed under them, at most."""


@dataclass
class _Batch:
    """People planned together: the records read of them and how to read their state."""

    observations: list[Observation]
    read: Callable[[], State]
    scope: set[str] | None
    """The people writes are derived for besides those the plan touches (None: all)."""
    whole: bool = False
    """The state holds everyone: worth keeping in memory for the next cycle."""


def system_infos(settings: Settings, connectors: Mapping[str, Connector],
                 discovered: Mapping[str, Discovered] | None = None) -> dict[str, SystemInfo]:
    """What the planner needs to know of each connected system: its capabilities, narrowed
    by what opening it found (``discovered``, the poller's; none for a system not opened)."""
    found = discovered or {}
    return {
        name: SystemInfo(
            name=name,
            capabilities=found.get(name, Discovered()).apply(conn.capabilities),
            org_map=settings.org_map(name),
            read_only=settings.systems[name].read_only,
        )
        for name, conn in connectors.items()
    }


def setup_marker(systems: Mapping[str, SystemInfo], policy: Policy | None = None) -> str:
    """A short digest of what decides the derived writes besides the state itself.

    The stored set of unsettled people holds only under the set-up it was kept
    under: another one (a system added, an organization mapped, a field or a
    limit changed, a field's policy ``targets``) may owe writes to anyone.
    """
    raw = repr(sorted(
        (name, sorted(info.capabilities.fields), info.capabilities.can_delete,
         info.capabilities.can_move, sorted(info.capabilities.joined.items()),
         sorted((f, repr(limit)) for f, limit in info.capabilities.limits.items()),
         sorted(info.org_map.items()), info.read_only)
        for name, info in systems.items()
    ) + sorted(
        (name, sorted(rule.targets))
        for name, rule in (policy.fields.items() if policy is not None else ())
        if rule.targets is not None
    ))  # sorted throughout: a frozenset's repr changes with the process's hash seed
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


class Syncer:
    """Everything one cycle needs: settings, store and the connectors."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        connectors: Mapping[str, Connector],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.connectors = dict(connectors)
        self.clock = clock
        self._cache = StateCache()
        self._writes = OwnWrites(0)
        """The store revisions this cycle wrote: whether the cache is still true."""
        self._run: tuple[str, datetime, int | None] = ("once", datetime.min.replace(tzinfo=UTC),
                                                       None)
        """This cycle's kind, start and run id (opened by its first change, see ``commit``)."""
        self._basis: int | None = None
        """The store revision the state being planned was read at (None: not known)."""
        self._replanning = False
        self._hash_lock = threading.Lock()
        self.stop = threading.Event()
        """Set from a signal handler: reading stops, pushing stops after the write in hand."""
        self.progress: Progress = lambda system, what, count: None
        self.poller = Poller(
            self.connectors, settings.org_map, skew=settings.sync.clock_skew,
            full_scan_interval=settings.sync.full_scan_interval, stop=self.stop,
        )
        self.poller.extras = self._extras
        for connector in self.connectors.values():
            connector.traffic.watch(self.stop)
        # A read too large to plan at once is kept compressed (see ``_split``).
        self.poller.spill_after = max(1, settings.sync.batch_records // max(1, len(connectors)))
        self.poller.linked = self._synced_ids
        resume_budgets(store, self.connectors, clock())  # a fresh process: today's spend

    def systems(self) -> dict[str, SystemInfo]:
        return system_infos(self.settings, self.connectors, self.poller.discovered)

    def policy(self, force_delete: bool) -> Policy:
        sync = self.settings.sync
        return Policy(
            conflict=sync.conflict,
            priority=tuple(sync.priority),
            deletes=sync.deletes,
            max_delete_fraction=sync.max_delete_fraction,
            force_delete=force_delete,
            default_region=sync.default_region,
            fields=self.settings.field_policies(),
        )

    def poll(
        self,
        now: datetime,
        *,
        full: set[str] | None = None,
        since: datetime | None = None,
        only: set[str] | None = None,
        hashes: Hashes | None = None,
    ) -> list[PollResult]:
        self.poller.progress = self.progress
        return self.poller.poll(self.store.watermarks(), now, full=full, since=since, only=only,
                                hashes=hashes)

    def close(self) -> None:
        self.poller.close()

    # -- the cycle ----------------------------------------------------------------------------

    def run_once(
        self,
        *,
        dry_run: bool = False,
        force_delete: bool = False,
        full: set[str] | None = None,
        since: datetime | None = None,
        only: set[str] | None = None,
        kind: str = "once",
    ) -> CycleReport:
        """One cycle.

        ``full``: systems to read whole (empty set = all) ignoring watermarks;
        ``since``: read incremental systems from this moment (backfill);
        ``only``: poll just these systems (the daemon's per-system jobs) —
        the derived writes still go to every system.  A store lost under the
        cycle is :class:`~syncd.errors.StoreUnavailable` (exit 4).
        """
        try:
            for attempt in range(1, _REPLANS + 1):
                self._replanning = attempt > 1
                try:
                    with self.store.unusable_as("failed during the cycle", mid_work=True):
                        return self._run_once(dry_run=dry_run, force_delete=force_delete,
                                              full=full, since=since, only=only, kind=kind)
                except Raced as exc:
                    # Nothing of that plan was committed: read and plan again.
                    self._cache.drop()
                    log.warning("cycle_replanned", people=exc.people[:10], attempt=attempt)
            raise StoreUnavailable(
                f"store {self.store.where}: golden records changed under the cycle "
                f"{_REPLANS} times in a row (another process writing); nothing was committed"
            )
        except StoreUnavailable:
            self._cache.drop()  # what the cycle held in memory may not have been stored
            raise
        finally:
            self._replanning = False

    def _run_once(
        self,
        *,
        dry_run: bool,
        force_delete: bool,
        full: set[str] | None,
        since: datetime | None,
        only: set[str] | None,
        kind: str,
    ) -> CycleReport:
        """Poll, then for each batch of (state, records read): plan, guard, commit,
        derive, push."""
        now = self.clock()
        if not self._replanning or self._run[0] != kind:
            self._run = (kind, now, None)
        report = CycleReport(started_at=now, dry_run=dry_run,
                             systems={name: SystemReport() for name in self.connectors})
        started = time.monotonic()
        before = {name: (c.traffic.request_count(), c.traffic.throttled_count())
                  for name, c in self.connectors.items()}
        policy = self.policy(force_delete)
        marker = setup_marker(self.systems(), policy)
        self._writes = OwnWrites(self.store.revision())
        cached = self._cache.get(self._writes.start)
        unsettled = self.store.unsettled(marker) if cached is None else None
        try:
            # A cold process that knows who is unsettled reads only what changed.
            polls = self.poll(now, full=full, since=since, only=only,
                              hashes=self._hashes if unsettled is not None else None)
        except Interrupted as exc:
            report.errors.append(str(exc))
            report.interrupted = True
            return self._finish(report, started, before, kind)
        report.add_polls(polls)
        systems = self.systems()  # after polling: opening a connector may change what it can do
        if setup_marker(systems, policy) != marker:
            marker = setup_marker(systems, policy)
            cached = unsettled = None  # kept under another set-up: owed writes unknown
        batches = self._batches([p.observation for p in polls if p.observation is not None],
                                systems, cached, unsettled)
        left: set[str] = set()
        held = False
        last: tuple[State, PushOutcome] | None = None
        scope: set[str] | None = None
        named = Named()
        for number, batch in enumerate(batches):
            if number and self.stop.is_set():
                report.errors.append(f"stopped after {number} of {len(batches)} groups of people")
                report.interrupted = True
                return self._finish(report, started, before, kind)
            state = batch.read()
            try:
                result = plan(state, batch.observations, systems, policy)
            except MassDeleteError as exc:
                report.errors.append(str(exc))
                report.guard_tripped = True
                log.error("mass_delete_guard", trips=exc.trips)
                return self._finish(report, started, before, kind)
            scope = batch.scope | result.touched() if batch.scope is not None else None
            hold = self._hold(polls, result, batch.observations)
            held = held or bool(hold)
            writes, rejections = derive_writes(result.state, systems.values(), scope, hold,
                                               policy)
            people = report.add_plan(result, rejections)
            report.people = (people if len(batches) == 1
                             else named.add(result.state, writes, rejections, systems))
            if dry_run:
                report.planned.extend(writes)
                continue
            self._cache.drop()
            failures = self._failures(result, writes, rejections)
            # Writes held for a system not read may be owed to anyone derived for: with a
            # partial scope, all of it stays unsettled (a whole one is distrusted in _settle).
            owed = scope if hold and scope is not None else set()
            self._commit(Commit(
                result, state.goldens, self._basis,
                {w.golden_id for w in writes} | {r.golden_id for r in rejections} | owed,
                rejections, failures,
                # The watermarks go with the last batch: one stopped before reads it all again.
                [p.watermark for p in polls] if number == len(batches) - 1 else [],
            ), now)
            outcome, still = self._push(report, writes, rejections, failures, polls, now, people,
                                        first=number == 0)
            left |= still
            if len(batches) == 1:  # a group's state and outcome are not kept past it
                last = (result.state, outcome)
        if not dry_run:
            self._settle(scope if len(batches) == 1 else None, left, held, marker)
            if last is not None and len(batches) == 1 and batches[0].whole and not held:
                # Held writes are pending, derived only from a full state; a partial
                # state is no state to keep.
                self._cache.keep(*last, left, self._writes)
        return self._finish(report, started, before, kind)

    def _batches(self, observations: list[Observation], systems: Mapping[str, SystemInfo],
                 cached: tuple[State, set[str]] | None, unsettled: set[str] | None) -> list[_Batch]:
        """What this cycle plans, in order: the state kept in memory; or the stored people
        the records read touch (and the unsettled ones); or groups of people (a large
        first sync); or everyone."""
        if cached is not None:
            state, scope = cached
            self._basis = self._writes.start
            return [_Batch(observations, lambda: state, scope, whole=True)]
        needed = self._needed(observations, systems, unsettled)
        if needed is not None:
            people, counts = needed
            return [_Batch(observations, self._reading(
                lambda: self.store.load_people(people, systems, counts=counts)), people)]
        groups = self._split(observations, systems)
        if groups is not None:
            return [_Batch(group.observations, self._reading(self._group_loader(group, systems)),
                           None) for group in groups]
        return [_Batch(observations, self._reading(self.store.load_state), None, whole=True)]

    def _group_loader(self, group: Group, systems: Mapping[str, SystemInfo]) -> Callable[[], State]:
        return lambda: self.store.load_people(group.people, systems, counts=False)

    def _reading(self, load: Callable[[], State]) -> Callable[[], State]:
        """``load``, noting the store revision the state is read at (see ``commit``)."""
        def read() -> State:
            self._basis = self.store.revision()
            return load()
        return read

    # -- what to plan ---------------------------------------------------------------------

    def _needed(
        self,
        observations: list[Observation],
        systems: Mapping[str, SystemInfo],
        unsettled: set[str] | None,
    ) -> tuple[set[str], bool] | None:
        """The only people this cycle need plan for, and whether to count each system's
        links (the mass-delete guard's base); None: everyone.

        Partial when the unsettled people are known and every record read is
        linked already: the people those records (and a complete scan's missing
        ids) belong to, plus the unsettled ones.  An unlinked record needs
        first-sync matching against everyone: then the whole state.
        """
        if unsettled is None or any(o.complete and o.unlisted is None for o in observations):
            return None
        needed = set(unsettled)
        deleting = any(r.deleted for obs in observations for r in obs.records) or any(
            obs.complete and obs.unlisted for obs in observations)
        for obs in observations:
            rids = {r.remote_id for r in obs.records if r.remote_id.strip()}
            if obs.complete and obs.unlisted is not None:
                rids |= obs.unlisted
            found = self.store.linked_people(obs.system, rids)
            org_map = systems[obs.system].org_map
            if any(r.remote_id.strip() and r.remote_id not in found and not r.deleted
                   and r.org_id in org_map for r in obs.records):
                return None
            needed.update(found.values())
        return needed, deleting

    def _split(self, observations: list[Observation],
               systems: Mapping[str, SystemInfo]) -> list[Group] | None:
        """Groups of people to plan one after the other, or None: plan the cycle whole
        (it is small, or it deletes something).

        The watermarks are saved with the last group only: a cycle stopped
        between groups reads the same records again, and what the finished
        groups linked is then found unchanged.  Who is owed a write is kept
        as in a whole cycle: every stored person is in some group.
        """
        size = self.settings.sync.batch_records
        if sum(len(o.records) for o in observations) <= size:
            return None
        fields = self.settings.fields
        if any(fields[f].targets is not None for f in KEY_FIELDS & fields.keys()):
            # Matching then reads a key field from the links too (``engine.kept``),
            # which the groups are not drawn by: plan the cycle whole.
            return None
        splitter = Splitter(
            systems, self.settings.sync.default_region,
            linked=self.store.linked_people, existing=self.store.existing_goldens,
            goldens=self.store.iter_goldens, known_ids=self.store.linked_ids,
        )
        groups = splitter.split(observations, size)
        if groups is not None:
            log.info("cycle_split", groups=len(groups),
                     records=sum(len(o.records) for o in observations))
        return groups

    # -- commit, push, settle ---------------------------------------------------------------

    def _failures(self, result: PlanResult, writes: list[Write],
                  rejections: list[Rejection]) -> dict[tuple[str, str], Failure]:
        """The stored failures, read only when this plan writes or links anything."""
        if self.store.locking and not self.store.lock_held():
            # Its connection died (a failover, a network cut): another instance may be
            # writing already, so this one commits and pushes nothing more.
            raise StoreLockedError(
                "lost the instance lock on the store (its connection died) during the cycle; "
                "nothing more was written: run syncd again when the store is reachable"
            )
        if not (writes or rejections or result.links_changed):
            return {}
        return {(f.system, f.golden_id): f for f in self.store.failures()}

    def _commit(self, plan: Commit, now: datetime) -> None:
        revision, run_id = commit_plan(self.store, plan, now, self._run)
        self._writes.add([revision])
        self._run = (*self._run[:2], run_id)

    def _push(
        self,
        report: CycleReport,
        writes: list[Write],
        rejections: list[Rejection],
        failures: Mapping[tuple[str, str], Failure],
        polls: list[PollResult],
        now: datetime,
        people: People,
        *,
        first: bool,
    ) -> tuple[PushOutcome, set[str]]:
        """Push the writes that are due; the outcome and the people still owed a write."""
        sending = due(writes, failures, now, {p.system for p in polls if p.error is None})
        for name in self.connectors:
            self.progress(name, "planned" if first else "planned_more",
                          sum(1 for w in sending if w.system == name))
        pusher = Pusher(self.store, self.connectors, self.settings.sync.max_attempts, now,
                        failures, stop=self.stop, progress=self.progress, name=people.label)
        outcome = pusher.push(sending)
        self._writes.add(outcome.revisions)
        report.add_push(outcome)
        done = set(outcome.links) | outcome.removed
        left = {w.golden_id for w in writes if (w.golden_id, w.system) not in done}
        left |= {r.golden_id for r in rejections}
        return outcome, left

    def _settle(self, scope: set[str] | None, left: set[str], held: bool, marker: str) -> None:
        """Keep the unsettled people in the store (written before pushing, see ``commit``).

        After writes derived for everyone the set is exactly ``left``; after a
        scoped cycle the scope's settled people leave it.  A held system's writes
        were not derived at all: with a full derive nobody knows who is owed one
        (the set is dropped), with a scoped one nobody in scope is settled.
        """
        foreign = self._writes.foreign()
        if scope is not None and (held or foreign or not scope - left):
            return  # nothing settled, or someone else wrote meanwhile: keep the superset
        with self.store.transaction() as tx:
            if scope is None:
                known = not held and not foreign
                self.store.track_unsettled(tx.conn, left if known else None, marker)
            else:
                self.store.settle(tx.conn, scope - left)
        self._writes.add([tx.revision])

    def _hold(self, polls: list[PollResult], result: PlanResult,
              observations: Sequence[Observation]) -> dict[str, set[str]]:
        """Systems that may receive no create: read failed this cycle, or never scanned whole.

        A read that skipped records it could not map holds creates too: a skipped
        record may be the very person (a create whose answer was lost last cycle),
        and creating it again would make two.

        Each maps to the people whose record it returned this cycle (their links prove
        what the system holds, so their updates and deletes may go).
        """
        marks = {p.system: p.watermark for p in polls}
        stored = None
        hold: dict[str, set[str]] = {}
        for name in self.connectors:
            mark = marks.get(name)
            if mark is None:
                if stored is None:
                    stored = self.store.watermarks()
                mark = stored.get(name)
            failed = any(p.system == name and (p.error is not None or p.skipped) for p in polls)
            if failed or mark is None or mark.last_full_scan_at is None:
                ids = result.state.index().get(name, {})
                seen = next((o for o in observations if o.system == name), None)
                hold[name] = {
                    ids[r.remote_id] for r in (seen.records if seen else ()) if r.remote_id in ids
                }
                if seen is not None and seen.unlisted is not None:
                    # Records left out as unchanged were read too: linked, and not unlisted.
                    hold[name].update(gid for rid, gid in ids.items() if rid not in seen.unlisted)
        return hold

    def _synced_ids(self, system: str) -> set[str]:
        """One system's linked records still synced (a scoped scan must account for each)."""
        with self._hash_lock:
            return self.store.linked_ids(system, excluded=False)

    def _hashes(self, system: str) -> dict[str, int]:
        """One system's link hashes, read by one poll thread at a time: an in-memory
        SQLite store has a single connection for every thread."""
        with self._hash_lock:
            return self.store.record_hashes(system)

    def _extras(self, system: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """One token system's links' connector data (see :class:`~syncd.connectors.base.SyncTokens`)."""
        with self._hash_lock:
            return self.store.link_extras(system)

    def _finish(
        self,
        report: CycleReport,
        started: float,
        before: Mapping[str, tuple[int, int]],
        kind: str,
    ) -> CycleReport:
        report.finished_at = self.clock()
        elapsed = time.monotonic() - started
        for name, conn in self.connectors.items():
            rep = report.systems[name]
            requests, throttled = before.get(name, (0, 0))
            rep.requests = conn.traffic.request_count() - requests
            rep.rate_limited = conn.traffic.throttled_count() - throttled
            rep.duration_s = elapsed
        if not report.dry_run:
            summary = {"systems": {n: s.as_dict() for n, s in report.systems.items()},
                       "errors": report.errors[:20], "conflicts": report.conflicts,
                       "capped_until": caps(self.connectors, report.finished_at)}
            history.prune_history(self.store, report.finished_at)
            self._writes.add([self.store.record_run(
                kind, report.started_at, report.finished_at, report.exit_code, summary,
                run_id=self._run[2])])
            self._cache.moved(self._writes)  # our own run row moved the revision
        for name, rep in sorted(report.systems.items()):
            # One line per system at info level: what an operator reads of a healthy cycle.
            log.info("system_synced", system=name, read=rep.read, created=rep.created,
                     updated=rep.updated, deleted=rep.deleted, failed=rep.failed,
                     rejected=rep.rejected, requests=rep.requests, error=rep.error)
        log.info(
            "cycle_finished",
            kind=kind,
            dry_run=report.dry_run,
            exit_code=report.exit_code,
            systems={n: s.as_dict() for n, s in report.systems.items()},
        )
        return report


def run_once(
    settings: Settings,
    store: Store,
    connectors: Mapping[str, Connector],
    **options: Any,
) -> CycleReport:
    """Convenience wrapper: one cycle with a fresh :class:`Syncer`."""
    return Syncer(settings, store, connectors).run_once(**options)
