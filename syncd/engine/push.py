"""Push: send the derived writes, a few at a time per system, and record each result at once.

Each system gets its own thread, and within it up to ``in_flight(connector)``
writes at once (the system's ``max_in_flight``, capped by its connector).  A
request spends most of its life waiting on the network: one at a time, 100 ms
an answer caps a push at ~10 writes/s whatever the API allows, so a few in
flight let the push reach the rate limit instead.  The limit itself stays
with the system's :class:`~syncd.http.RateLimiter`, which every thread shares
(a throttle answer to one blocks them all).

Concurrency changes none of the rules:

* at most one write per (person, system) per cycle (``derive_writes``), so no
  two writes for the same record are ever in flight together;
* a create whose outcome is unknown is never re-sent (``OutcomeUnknown`` is a
  failure like any other, recorded as such);
* results are written to the store as they come, in small batches (at most
  ``_BATCH`` writes or ``_BATCH_SECONDS``, whichever comes first), so a crash
  loses the bookkeeping of a few writes, not of the whole push.  Losing them
  is safe: the next poll sees what the writes did and matches or diffs it;
* ``stop`` (SIGTERM) and ``SystemUnavailable`` stop new writes to the system;
  the ones in hand finish and are recorded;
* a ``BaseException`` that is not an ``Exception`` (the memory connector's
  ``SimulatedCrash``, a ``KeyboardInterrupt``) is a dead process: nothing more
  of that system is recorded, and it propagates out of :meth:`Pusher.push`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from syncd.connectors.base import Connector
from syncd.contact import content_hash
from syncd.errors import (
    ConnectorError,
    NotFound,
    OutcomeUnknown,
    RecordRejected,
    Stale,
    SystemUnavailable,
)
from syncd.logs import get_logger
from syncd.model import MOVED_FROM, Action, Link, LinkKey, Write
from syncd.store.repo import Failure, Store

__all__ = [
    "PushOutcome", "Pusher", "backoff", "in_flight", "outcome_unknown",
]

log = get_logger("syncd.push")
_BATCH = 50
_BATCH_SECONDS = 1.0


def outcome_unknown(failure: Failure) -> bool:
    """A create that may have landed: not to be sent again before its system is read."""
    return failure.unknown and failure.action == Action.CREATE.value


def backoff(attempts: int) -> timedelta:
    """Wait before the next try: none after the first failure, then 1, 4, 16 … minutes."""
    if attempts <= 1:
        return timedelta(0)
    return timedelta(minutes=min(4 ** (attempts - 2), 240))


@dataclass
class PushOutcome:
    done: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    unavailable: dict[str, str] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    links: dict[LinkKey, Link] = field(default_factory=dict)
    """Links as the successful writes left them (for the in-memory state)."""
    removed: set[LinkKey] = field(default_factory=set)
    revisions: list[int] = field(default_factory=list)
    """The store revisions the push's bookkeeping committed (the cycle's cache key)."""


def in_flight(connector: Connector) -> int:
    """How many writes may be in flight to ``connector``'s system at once.

    The connector's :attr:`~syncd.connectors.base.Connector.max_in_flight` (the REST
    base takes it from the system's config, capped by the API's own needs), at least one.
    """
    return max(1, connector.max_in_flight)


@dataclass
class _Batch:
    """Results not yet in the store (and their counts, not yet in the outcome)."""

    links: dict[LinkKey, Link] = field(default_factory=dict)
    removed: set[LinkKey] = field(default_factory=set)
    cleared: list[tuple[str, str]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    done: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.links) + len(self.removed) + len(self.failures)

    def absorb(self, other: _Batch) -> None:
        self.links.update(other.links)
        self.removed.update(other.removed)
        self.cleared.extend(other.cleared)
        self.failures.extend(other.failures)
        self.done.update(other.done)
        self.failed.update(other.failed)
        self.messages.extend(other.messages)


class _Run:
    """One system's push: the writes still to take and the batch of results, under a lock.

    Workers take writes in order and hand back each result; the batch is
    swapped out under the lock and written to the store outside it, so a
    store write never holds back a request.
    """

    def __init__(self, system: str, writes: list[Write]) -> None:
        self.system = system
        self.writes = writes
        self.next = 0
        self.lock = threading.Lock()
        self.batch = _Batch()
        self.started = time.monotonic()
        self.halted = False
        """No new write: stopped, system unavailable, or a worker failed."""
        self.dead = False
        """The "process" died: nothing more is recorded."""
        self.stopped = False
        self.unavailable: str | None = None

    def take(self, stop: threading.Event) -> Write | None:
        with self.lock:
            if self.halted or self.next >= len(self.writes):
                return None
            if stop.is_set():
                self.halted = self.stopped = True
                return None
            write = self.writes[self.next]
            self.next += 1
            return write

    def give_up(self, unavailable: str | None = None) -> None:
        with self.lock:
            self.halted = True
            if unavailable is not None and self.unavailable is None:
                self.unavailable = unavailable

    def die(self) -> None:
        with self.lock:
            self.halted = self.dead = True

    def record(self, results: _Batch) -> _Batch | None:
        """Add one write's results; return the batch when it is due for the store."""
        with self.lock:
            if self.dead:
                return None
            self.batch.absorb(results)
            if len(self.batch) >= _BATCH or time.monotonic() - self.started >= _BATCH_SECONDS:
                due, self.batch = self.batch, _Batch()
                self.started = time.monotonic()
                return due
            return None

    def rest(self) -> _Batch:
        with self.lock:
            rest, self.batch = self.batch, _Batch()
            return rest


class Pusher:
    def __init__(
        self,
        store: Store,
        connectors: Mapping[str, Connector],
        max_attempts: int,
        now: datetime,
        failures: Mapping[tuple[str, str], Failure],
        *,
        stop: threading.Event | None = None,
        progress: Callable[[str, str, int], None] | None = None,
        name: Callable[[str], str] | None = None,
    ) -> None:
        self.stop = stop or threading.Event()
        self.name = name
        """Person id → ``Ada Lovelace <ada@…> (harvest 1001)``: failures name the person."""
        self.progress = progress
        self.store = store
        self.connectors = connectors
        self.max_attempts = max_attempts
        self.now = now
        self.previous = failures
        """The failures stored before this push, by (system, person)."""
        self._outcome_lock = threading.Lock()
        """Every system's workers add to the one outcome."""

    def push(self, writes: list[Write]) -> PushOutcome:
        by_system: dict[str, list[Write]] = defaultdict(list)
        for write in writes:
            by_system[write.system].append(write)
        outcome = PushOutcome()
        if not by_system:
            return outcome
        with ThreadPoolExecutor(max_workers=min(8, len(by_system))) as pool:
            for future in [pool.submit(self._push_system, s, w, outcome) for s, w in by_system.items()]:
                future.result()
        return outcome

    def _push_system(self, system: str, writes: list[Write], outcome: PushOutcome) -> None:
        connector = self.connectors[system]
        run = _Run(system, writes)
        workers = min(in_flight(connector), len(writes))
        if len({w.golden_id for w in writes}) < len(writes):
            # Never expected (one write per person and system); two writes for one
            # record must not race, so such a push goes one at a time.
            log.warning("push_serialised", system=system, reason="several writes for one person")
            workers = 1
        error: BaseException | None = None
        if workers <= 1:
            try:
                self._work(connector, run, outcome)
            except BaseException as exc:  # re-raised below, after the bookkeeping rule
                error = exc
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix=f"push-{system}") as pool:
                futures = [pool.submit(self._work, connector, run, outcome) for _ in range(workers)]
            errors = [e for f in futures if (e := f.exception()) is not None]
            # A dead process outranks an ordinary error met by another worker.
            error = next((e for e in errors if not isinstance(e, Exception)),
                         errors[0] if errors else None)
        if run.dead:
            # Not flushed: a process that dies mid-push records nothing more, exactly
            # like a killed one; the next poll heals it.
            assert error is not None
            raise error
        if run.stopped:
            self._note(outcome, f"{system}: stopped; the rest is pushed next time")
        if run.unavailable is not None:
            with self._outcome_lock:
                outcome.unavailable[system] = run.unavailable
            log.error("system_unavailable", system=system, error=run.unavailable)
        self._flush(run.rest(), outcome)
        if error is not None:
            raise error

    def _work(self, connector: Connector, run: _Run, outcome: PushOutcome) -> None:
        """One worker: take the next write, send it, hand its result back, until none is left."""
        while (write := run.take(self.stop)) is not None:
            results = _Batch()
            try:
                self._one(connector, write, results)
            except SystemUnavailable as exc:
                run.give_up(str(exc))
                return
            except Exception:
                run.give_up()
                raise
            except BaseException:
                run.die()
                raise
            due = run.record(results)
            if self.progress is not None:
                self.progress(run.system, "written", 1)
            if due is not None:
                self._flush(due, outcome)

    def _note(self, outcome: PushOutcome, message: str) -> None:
        with self._outcome_lock:
            outcome.messages.append(message)

    def _one(self, connector: Connector, write: Write, batch: _Batch) -> None:
        key = (write.golden_id, write.system)
        try:
            if write.action is Action.CREATE:
                old_org, old_id = write.moved_from or ("", None)
                if old_id is not None:
                    # A move where the API cannot change the parent: the old record goes
                    # first, so a crash leaves at most a missing record (the next cycle
                    # creates it), never two of the same person.
                    with contextlib.suppress(NotFound):  # already gone
                        connector.delete(old_id, old_org, write.extra)
                result = connector.create(write.org_id, write.desired)
                batch.links[key] = Link(
                    write.system, write.golden_id, result.remote_id, write.org_id,
                    dict(write.desired), result.updated_at, dict(result.extra),
                )
            elif write.action is Action.UPDATE:
                assert write.remote_id is not None
                try:
                    extra = write.extra
                    if write.moved_from is not None:  # the API moves it by an update
                        extra = {**extra, MOVED_FROM: write.moved_from[0]}
                    result = connector.update(
                        write.remote_id, write.org_id, write.changed, write.desired, extra
                    )
                except NotFound:
                    # Deleted there while changed here: modify beats delete, so the
                    # person is made again (else a later sweep would delete the edit).
                    log.info("update_target_gone", system=write.system, person=write.golden_id,
                             remote_id=write.remote_id)
                    again = replace(write, action=Action.CREATE, remote_id=None,
                                    changed=dict(write.desired), extra={}, moved_from=None)
                    self._one(connector, again, batch)
                    return
                batch.links[key] = Link(
                    write.system, write.golden_id, write.remote_id, write.org_id,
                    dict(write.desired), result.updated_at, {**write.extra, **result.extra},
                )
            else:
                assert write.remote_id is not None
                connector.delete(write.remote_id, write.org_id, write.extra)
                batch.removed.add(key)
        except SystemUnavailable:
            raise
        except Stale as exc:
            # Changed there since we read it: no failure, no overwrite. Nothing is
            # recorded, so the person stays owed the write; the next poll reads the
            # new version and the plan derives it again.
            log.info("write_stale", system=write.system, person=write.golden_id,
                     action=write.action.value, remote_id=write.remote_id, error=str(exc))
            return
        except ConnectorError as exc:
            self._failed(write, exc, batch)
            return
        except Exception as exc:  # an answer nobody foresaw: the write may have landed
            log.error("connector_crashed", system=write.system, action=write.action.value,
                      exc_info=exc)
            unknown = OutcomeUnknown(f"{write.system}: unexpected error on {write.action.value}: "
                                     f"{type(exc).__name__}: {exc}", system=write.system)
            self._failed(write, unknown, batch)
            return
        batch.cleared.append((write.system, write.golden_id))
        batch.done[(write.system, write.action.value)] += 1

    def _failed(self, write: Write, exc: ConnectorError, batch: _Batch) -> None:
        desired_hash = content_hash(write.desired)
        before = self.previous.get((write.system, write.golden_id))
        attempts = (before.attempts if before and before.desired_hash == desired_hash else 0) + 1
        quarantined = isinstance(exc, RecordRejected) or attempts >= self.max_attempts
        batch.failures.append(
            Failure(
                write.system, write.golden_id, write.action.value, write.remote_id, attempts,
                str(exc), desired_hash, quarantined, self.now + backoff(attempts), self.now,
                # Decided where the answer was lost (the HTTP layer, the connector): the
                # next read finds the record and matching links it; until then, no resend.
                unknown=write.action is Action.CREATE and isinstance(exc, OutcomeUnknown),
            )
        )
        batch.failed[write.system] += 1
        who = self.name(write.golden_id) if self.name else None
        batch.messages.append(f"{write.describe(who)}: {exc}")
        log.warning(
            "write_failed", system=write.system, person=write.golden_id, who=who,
            action=write.action.value, remote_id=write.remote_id, attempts=attempts,
            quarantined=quarantined, error=str(exc),
        )

    def _flush(self, batch: _Batch, outcome: PushOutcome) -> None:
        with self._outcome_lock:
            outcome.links.update(batch.links)
            outcome.removed.update(batch.removed)
            outcome.done.update(batch.done)
            outcome.failed.update(batch.failed)
            outcome.messages.extend(batch.messages)
        if not len(batch) and not batch.cleared:
            return
        with self.store.transaction() as tx:
            conn = tx.conn
            self.store.save_changes(
                conn, goldens={}, links=batch.links, removed=batch.removed, now=self.now
            )
            self.store.clear_failures(
                conn, [k for k in batch.cleared if k in self.previous]
            )
            for failure in batch.failures:
                self.store.record_failure(conn, failure)
        with self._outcome_lock:
            outcome.revisions.append(tx.revision)
