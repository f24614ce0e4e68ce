"""``run_once``: poll → plan → push, the one entry point of every command.

Poll reads every enabled system concurrently.  The plan is committed in one
transaction together with the watermarks it justifies, so a watermark never
runs ahead of what is stored.  Push then sends the derived writes, one thread
per system, recording each result in the link at once (in small batches); a
crash between a write and its bookkeeping is healed by the next poll, which
sees the record and matches it instead of writing it again.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from syncd.config import Settings
from syncd.connectors.base import Connector
from syncd.contact import content_hash
from syncd.engine.batch import Group, Splitter
from syncd.engine.budget import caps, resume_budgets
from syncd.engine.match import KEY_FIELDS
from syncd.engine.plan import PlanResult, plan
from syncd.engine.poll import Hashes, Interrupted, Poller, PollResult, Progress
from syncd.engine.push import Pusher, PushOutcome, outcome_unknown
from syncd.engine.report import CycleReport, SystemReport
from syncd.engine.writes import derive_writes
from syncd.errors import MassDeleteError, StoreLockedError, StoreUnavailable
from syncd.logs import get_logger
from syncd.model import (
    Discovered,
    Failure,
    Golden,
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


class _Raced(Exception):
    """Golden records this plan changes were changed by someone else since it read them."""

    def __init__(self, people: list[str]) -> None:
        super().__init__(f"{len(people)} people changed meanwhile")
        self.people = people
_PAST = {"create": "created", "update": "updated", "delete": "deleted"}


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
        self._cache: tuple[int, State, set[str]] | None = None
        self._run: tuple[str, datetime, int | None] = ("once", datetime.min.replace(tzinfo=UTC),
                                                       None)
        """This cycle's kind, start and run id (opened by its first change, see ``_commit``)."""
        self._basis: int | None = None
        """The store revision the state being planned was read at (None: not known)."""
        self._mark = 0
        """The store revision when this cycle began: with :attr:`_wrote`, whether anyone else
        wrote during it (see :meth:`_foreign`)."""
        self._wrote: list[int] = []
        """The store revisions this cycle's own writes committed."""
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
                except _Raced as exc:
                    # Nothing of that plan was committed: read and plan again.
                    self._cache = None
                    log.warning("cycle_replanned", people=exc.people[:10], attempt=attempt)
            raise StoreUnavailable(
                f"store {self.store.where}: golden records changed under the cycle "
                f"{_REPLANS} times in a row (another process writing); nothing was committed"
            )
        except StoreUnavailable:
            self._cache = None  # what the cycle held in memory may not have been stored
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
        now = self.clock()
        if not self._replanning or self._run[0] != kind:
            self._run = (kind, now, None)
        report = CycleReport(started_at=now, dry_run=dry_run)
        started = time.monotonic()
        before = {name: (c.traffic.request_count(), c.traffic.throttled_count())
                  for name, c in self.connectors.items()}
        for name in self.connectors:
            report.systems[name] = SystemReport()
        marker = setup_marker(self.systems(), self.policy(force_delete))
        self._mark, self._wrote = self.store.revision(), []
        cached = self._state(self._mark)
        self._basis = self._mark if cached is not None else None
        unsettled = self.store.unsettled(marker) if cached is None else None
        try:
            # A cold process that knows who is unsettled reads only what changed.
            polls = self.poll(now, full=full, since=since, only=only,
                              hashes=self._hashes if unsettled is not None else None)
        except Interrupted as exc:
            report.errors.append(str(exc))
            report.exit_code = 130
            return self._finish(report, started, before, kind)
        for p in polls:
            rep = report.systems[p.system]
            rep.full_scan = p.full
            rep.read = p.listed
            for item in p.skipped:
                message = f"{p.system}: record {item.remote_id or '(no id)'} skipped: {item.reason}"
                report.errors.append(message)
                rep.rejected += 1
                report.exit_code = max(report.exit_code, 1)
                log.warning("record_skipped", system=p.system, remote_id=item.remote_id,
                            reason=item.reason)
            if p.error is not None:
                rep.error = str(p.error)
                report.errors.append(str(p.error))
                report.exit_code = max(report.exit_code, 4)
                log.warning("poll_failed", system=p.system, error=str(p.error))
        # Taken after polling: opening a connector may have changed what it can do.
        systems = self.systems()
        observations = [p.observation for p in polls if p.observation is not None]
        scope: set[str] | None
        if cached is not None:
            state, scope = cached
        else:
            if setup_marker(systems, self.policy(force_delete)) != marker:
                unsettled = None  # opening a connector changed what it can do
            self._basis = self.store.revision()
            loaded, scope = self._load(observations, systems, unsettled)
            if loaded is None:
                groups = self._split(observations, systems)
                if groups is not None:
                    return self._run_groups(
                        groups, polls, systems, report,
                        setup_marker(systems, self.policy(force_delete)),
                        dry_run=dry_run, force_delete=force_delete, now=now,
                        finish=lambda: self._finish(report, started, before, kind),
                    )
                self._basis = self.store.revision()
                loaded = self.store.load_state()
            state = loaded
        policy = self.policy(force_delete)
        marker = setup_marker(systems, policy)
        try:
            result = plan(state, observations, systems, policy)
        except MassDeleteError as exc:
            report.errors.append(str(exc))
            report.exit_code = 3
            log.error("mass_delete_guard", trips=exc.trips)
            return self._finish(report, started, before, kind)
        if scope is not None:
            scope = scope | result.touched()
        hold = self._hold(polls, result, observations)
        writes, rejections = derive_writes(result.state, systems.values(), scope, hold, policy)
        report.people = people = self._note(report, result, rejections)
        if dry_run:
            report.planned = writes
            return self._finish(report, started, before, kind)
        self._cache = None
        # Writes held for a system not read may be owed to anyone derived for: with a
        # partial scope, all of it stays unsettled (a whole one is distrusted in _settle).
        owed = scope if hold and scope is not None else set()
        outcome, left = self._push(report, result, writes, rejections, polls, now,
                                   people, first=True, owed=owed, before=state.goldens)
        self._settle(scope, left, bool(hold), marker)
        if hold or (cached is None and scope is not None):
            # Held writes are pending, but derived only from a full state; a partial
            # state is no state to keep.
            self._cache = None
        else:
            self._remember(result, outcome, left)
        return self._finish(report, started, before, kind)

    # -- a large cycle, a group of people at a time ------------------------------------------

    def _split(self, observations: list[Observation],
               systems: Mapping[str, SystemInfo]) -> list[Group] | None:
        """Groups of people to plan one after the other, or None: plan the cycle whole
        (it is small, or it deletes something)."""
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

    def _run_groups(
        self,
        groups: list[Group],
        polls: list[PollResult],
        systems: Mapping[str, SystemInfo],
        report: CycleReport,
        marker: str,
        *,
        dry_run: bool,
        force_delete: bool,
        now: datetime,
        finish: Callable[[], CycleReport],
    ) -> CycleReport:
        """Plan, commit and push each group in turn (see :mod:`syncd.engine.batch`).

        The watermarks are saved with the last group only: a cycle stopped
        between groups reads the same records again, and what the finished
        groups linked is then found unchanged.  Who is owed a write is kept
        as in a whole cycle: every stored person is in some group.
        """
        self._cache = None
        policy = self.policy(force_delete)
        named = State(goldens={}, links={})
        assert isinstance(named.goldens, dict) and isinstance(named.links, dict)
        left: set[str] = set()
        held = False
        for number, group in enumerate(groups):
            if self.stop.is_set():
                report.errors.append(f"stopped after {number} of {len(groups)} groups of people")
                report.exit_code = 130
                return finish()
            self._basis = self.store.revision()
            state = self.store.load_people(group.people, systems, counts=False)
            try:
                result = plan(state, group.observations, systems, policy)
            except MassDeleteError as exc:  # cannot happen: a split cycle deletes nothing
                report.errors.append(str(exc))
                report.exit_code = 3
                return finish()
            hold = self._hold(polls, result, group.observations)
            held = held or bool(hold)
            writes, rejections = derive_writes(result.state, systems.values(), None, hold,
                                               policy)
            people = self._note(report, result, rejections)
            for gid in {w.golden_id for w in writes} | {r.golden_id for r in rejections}:
                if gid in result.state.goldens:
                    named.goldens[gid] = result.state.goldens[gid]
                for system in systems:
                    if (link := result.state.links.get((gid, system))) is not None:
                        named.links[(gid, system)] = link
            if dry_run:
                report.planned.extend(writes)
                continue
            # The watermarks go with the last group: one stopped before reads it all again.
            left |= self._push(report, result, writes, rejections, polls, now, people,
                               first=number == 0, marks=number == len(groups) - 1,
                               before=state.goldens)[1]
        report.people = People(named)
        if not dry_run:
            self._settle(None, left, held, marker)
        return finish()

    def _note(self, report: CycleReport, result: PlanResult,
              rejections: list[Rejection]) -> People:
        """Put a plan's invalid records, conflicts and rejections in the report and log."""
        for problem in result.invalid:
            report.errors.append(problem)
            report.exit_code = max(report.exit_code, 1)
            log.warning("record_invalid", error=problem)
        report.conflicts += len(result.conflicts)
        for conflict in result.conflicts:
            report.systems[conflict.winner].conflicts += 1
        report.rejections.extend(rejections)
        people = People(result.state)
        for refusal in result.refused:
            report.refused.add((refusal.golden_id, refusal.system))
            log.info("policy_refused", person=refusal.golden_id, who=people.label(refusal.golden_id),
                     system=refusal.system, field=refusal.field, value=refusal.value,
                     kept=refusal.golden, rule=refusal.reason)
        for rej in rejections:
            report.systems[rej.system].rejected += 1
            log.warning("write_rejected", system=rej.system, person=rej.golden_id,
                        who=people.label(rej.golden_id), remote_id=rej.remote_id,
                        field=rej.field, reason=rej.reason)
        if rejections:
            report.exit_code = max(report.exit_code, 1)
        return people

    def _push(
        self,
        report: CycleReport,
        result: PlanResult,
        writes: list[Write],
        rejections: list[Rejection],
        polls: list[PollResult],
        now: datetime,
        people: People,
        *,
        first: bool,
        marks: bool = True,
        owed: set[str] | None = None,
        before: Mapping[str, Golden] | None = None,
    ) -> tuple[PushOutcome, set[str]]:
        """Commit a plan (with ``polls``' watermarks if ``marks``), then push what is due;
        the outcome and the people still owed a write.  ``owed``: more people to keep
        unsettled (stored before the push, with those the writes are for); ``before``:
        the golden records the plan started from (what the history diffs against)."""
        if self.store.locking and not self.store.lock_held():
            # Its connection died (a failover, a network cut): another instance may be
            # writing already, so this one commits and pushes nothing more.
            raise StoreLockedError(
                "lost the instance lock on the store (its connection died) during the cycle; "
                "nothing more was written: run syncd again when the store is reachable"
            )
        failures = (
            {(f.system, f.golden_id): f for f in self.store.failures()}
            if writes or rejections or result.links_changed else {}
        )
        self._commit(result, polls if marks else [], rejections, failures, now,
                     {w.golden_id for w in writes} | {r.golden_id for r in rejections}
                     | (owed or set()), before or {})
        read = {p.system for p in polls if p.error is None}
        due = self._due(writes, failures, now, read)
        for name in self.connectors:
            self.progress(name, "planned" if first else "planned_more",
                          sum(1 for w in due if w.system == name))
        pusher = Pusher(self.store, self.connectors, self.settings.sync.max_attempts, now,
                        failures, stop=self.stop, progress=self.progress, name=people.label)
        outcome = pusher.push(due)
        self._wrote.extend(outcome.revisions)
        self._account(report, outcome)
        done = set(outcome.links) | outcome.removed
        left = {w.golden_id for w in writes if (w.golden_id, w.system) not in done}
        left |= {r.golden_id for r in rejections}
        return outcome, left

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

    def _load(
        self,
        observations: list[Observation],
        systems: Mapping[str, SystemInfo],
        unsettled: set[str] | None,
    ) -> tuple[State | None, set[str] | None]:
        """The state this cycle plans on: everyone (None: load it), or only the people
        it touches.

        Partial when the unsettled people are known and every record read is
        linked already: the people those records (and a complete scan's missing
        ids) belong to, plus the unsettled ones.  An unlinked record needs
        first-sync matching against everyone: then the whole state.
        """
        if unsettled is None or any(o.complete and o.unlisted is None for o in observations):
            return None, None
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
                return None, None
            needed.update(found.values())
        return self.store.load_people(needed, systems, counts=deleting), needed

    def _settle(self, scope: set[str] | None, left: set[str], held: bool, marker: str) -> None:
        """Keep the unsettled people in the store (written before pushing, see ``_commit``).

        After writes derived for everyone the set is exactly ``left``; after a
        scoped cycle the scope's settled people leave it.  A held system's writes
        were not derived at all: with a full derive nobody knows who is owed one
        (the set is dropped), with a scoped one nobody in scope is settled.
        """
        foreign = self._foreign()
        if scope is not None and (held or foreign or not scope - left):
            return  # nothing settled, or someone else wrote meanwhile: keep the superset
        with self.store.transaction() as tx:
            if scope is None:
                known = not held and not foreign
                self.store.track_unsettled(tx.conn, left if known else None, marker)
            else:
                self.store.settle(tx.conn, scope - left)
        self._wrote.append(tx.revision)

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

    # -- the in-memory state cache ----------------------------------------------------------

    def _foreign(self) -> bool:
        """Whether someone else wrote to the store since this cycle began: its own writes
        are not the unbroken run of revisions after the one it began at."""
        return sorted(self._wrote) != list(range(self._mark + 1, self._mark + 1 + len(self._wrote)))

    def _state(self, revision: int) -> tuple[State, set[str]] | None:
        """The state, from memory when the store has not moved since our last write.

        With a warm cache the planner derives writes only for people touched
        this cycle or left unsettled by the last one: a quiet incremental cycle
        costs a few small queries, not a pass over every person.
        """
        cache = self._cache
        if cache is not None and cache[0] == revision:
            return cache[1], set(cache[2])
        return None

    def _remember(self, result: PlanResult, outcome: PushOutcome, unsettled: set[str]) -> None:
        if self._foreign():
            return
        links = result.state.links
        index = result.state.index()
        if outcome.links or outcome.removed:
            # The planner may have handed on the previous state's dicts untouched
            # (copy-on-write): copy before changing.
            links = dict(links)
            index = {system: dict(ids) for system, ids in index.items()}
        assert isinstance(links, dict)
        for key, link in outcome.links.items():
            old = links.get(key)
            if old is not None and old.remote_id not in (None, link.remote_id):
                index.get(old.system, {}).pop(old.remote_id, None)  # re-created or moved
            links[key] = link
            if link.remote_id is not None:
                index.setdefault(link.system, {})[link.remote_id] = link.golden_id
        for key in outcome.removed:
            gone = links.pop(key, None)
            if gone is not None and gone.remote_id is not None:
                index.get(gone.system, {}).pop(gone.remote_id, None)
        state = State(goldens=result.state.goldens, links=links, remote_index=index)
        self._cache = (max(self._wrote, default=self._mark), state, unsettled)

    def _commit(
        self,
        result: PlanResult,
        polls: list[PollResult],
        rejections: list[Rejection],
        failures: Mapping[tuple[str, str], Failure],
        now: datetime,
        owed: set[str],
        before: Mapping[str, Golden],
    ) -> None:
        changes = (history.packed_changes(before, result.goldens_changed, result.sources)
                   if result.goldens_changed and history.enabled(self.store) else [])
        with self.store.transaction() as tx:
            conn = tx.conn
            if result.goldens_changed and (self._basis is None
                                           or tx.revision != self._basis + 1):
                # Someone wrote since this plan's state was read (an operator's undo):
                # committing over a person it changed would throw that change away.
                stored = history.stored_goldens(self.store, conn, result.goldens_changed)
                raced = sorted(g for g in result.goldens_changed if stored.get(g) != before.get(g))
                if raced:
                    raise _Raced(raced)
            # Before any push: a crash after this leaves these people unsettled.
            self.store.add_unsettled(conn, owed)
            self.store.save_changes(
                conn,
                goldens=result.goldens_changed,
                links=result.links_changed,
                removed=result.links_removed,
                now=now,
            )
            if changes:
                # In the same transaction as the golden records: never one without the other.
                kind, started, run_id = self._run
                if run_id is None:
                    run_id = history.start_run(self.store, conn, kind, started)
                    self._run = (kind, started, run_id)
                history.save_history(self.store, conn, run_id, changes, now)
            self.store.save_conflicts(conn, result.conflicts, now)
            self.store.save_watermarks(conn, [p.watermark for p in polls])
            # A failed create whose record the poll found and matched is done: its
            # failure row would otherwise outlive it (and keep the person "pending").
            landed = [
                key for key, f in failures.items()
                if f.action == "create"
                and (link := result.state.links.get((f.golden_id, f.system))) is not None
                and link.remote_id is not None
            ]
            if landed:
                self.store.clear_failures(conn, landed)
            for rej in rejections:
                reason = f"rejected before sending: field {rej.field}: {rej.reason}"
                known = failures.get((rej.system, rej.golden_id))
                if known is not None and known.quarantined and known.last_error == reason:
                    continue  # the same rejection as last cycle: nothing new to store
                self.store.record_failure(
                    conn,
                    Failure(rej.system, rej.golden_id, rej.action.value, rej.remote_id, 0,
                            reason, "", True, None, now),
                )
        self._wrote.append(tx.revision)

    def _due(self, writes: list[Write], failures: Mapping[tuple[str, str], Failure],
             now: datetime, read: set[str]) -> list[Write]:
        """Leave out writes that are backing off or quarantined with the same content,
        and creates of unknown outcome to a system not read since (``read``: this cycle)."""
        due: list[Write] = []
        for write in writes:
            failure = failures.get((write.system, write.golden_id))
            if failure is not None and outcome_unknown(failure) and write.system not in read:
                continue
            if failure is not None and failure.desired_hash == content_hash(write.desired):
                if failure.quarantined:
                    continue
                if failure.next_retry_at is not None and failure.next_retry_at > now:
                    continue
            due.append(write)
        return due

    def _account(self, report: CycleReport, outcome: PushOutcome) -> None:
        for (system, action), n in outcome.done.items():
            rep = report.systems[system]
            past = _PAST[action]
            setattr(rep, past, getattr(rep, past) + n)
        for system, n in outcome.failed.items():
            report.systems[system].failed += n
            report.exit_code = max(report.exit_code, 1)
        for system, error in outcome.unavailable.items():
            report.systems[system].error = error
            report.errors.append(error)
            report.exit_code = max(report.exit_code, 4)
        report.errors.extend(outcome.messages)

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
            self._wrote.append(self.store.record_run(
                kind, report.started_at, report.finished_at, report.exit_code, summary,
                run_id=self._run[2]))
            # Our own run row moved the revision: keep the cache valid unless someone
            # else wrote meanwhile.
            if self._foreign():
                self._cache = None
            elif self._cache is not None:
                self._cache = (max(self._wrote), self._cache[1], self._cache[2])
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
