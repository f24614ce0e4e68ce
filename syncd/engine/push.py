"""Push: send the derived writes, one thread per system, and record each result at once.

Results are written to the store as they come, in small batches (at most
``_BATCH`` writes or ``_BATCH_SECONDS``, whichever comes first), so a crash
loses the bookkeeping of a few writes, not of the whole push.  Losing them is
safe: the next poll sees what the writes did and matches or diffs it, so
nothing is written twice.
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
    RetriableError,
    SystemUnavailable,
)
from syncd.logs import get_logger
from syncd.model import MOVED_FROM, Action, Link, LinkKey, Write
from syncd.store.repo import Failure, Store

__all__ = ["UNKNOWN_OUTCOME", "PushOutcome", "Pusher", "backoff", "outcome_unknown"]

log = get_logger("syncd.push")
_BATCH = 50
_BATCH_SECONDS = 1.0


UNKNOWN_OUTCOME = "outcome unknown: "
"""Prefix of a failed create's stored error when the create may have been applied."""


def outcome_unknown(failure: Failure) -> bool:
    """A create that may have landed: not to be sent again before its system is read."""
    return failure.action == Action.CREATE.value and failure.last_error.startswith(UNKNOWN_OUTCOME)


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


@dataclass
class _Batch:
    links: dict[LinkKey, Link] = field(default_factory=dict)
    removed: set[LinkKey] = field(default_factory=set)
    cleared: list[tuple[str, str]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.links) + len(self.removed) + len(self.failures)


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
        batch = _Batch()
        started = time.monotonic()
        try:
            for write in writes:
                if self.stop.is_set():
                    outcome.messages.append(f"{system}: stopped; the rest is pushed next time")
                    break
                self._one(connector, write, batch, outcome)
                if self.progress is not None:
                    self.progress(system, "written", 1)
                if len(batch) >= _BATCH or time.monotonic() - started >= _BATCH_SECONDS:
                    self._flush(batch, outcome)
                    batch = _Batch()
                    started = time.monotonic()
        except SystemUnavailable as exc:
            outcome.unavailable[system] = str(exc)
            log.error("system_unavailable", system=system, error=str(exc))
        except Exception:
            self._flush(batch, outcome)
            raise
        # Not in a ``finally``: a process that dies mid-push (a BaseException here)
        # records nothing more, exactly like a killed one; the next poll heals it.
        self._flush(batch, outcome)

    def _one(self, connector: Connector, write: Write, batch: _Batch, outcome: PushOutcome) -> None:
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
                    self._one(connector, again, batch, outcome)
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
        except ConnectorError as exc:
            self._failed(write, exc, batch, outcome)
            return
        except Exception as exc:  # an answer nobody foresaw: the write may have landed
            log.error("connector_crashed", system=write.system, action=write.action.value,
                      exc_info=exc)
            unknown = OutcomeUnknown(f"{write.system}: unexpected error on {write.action.value}: "
                                     f"{type(exc).__name__}: {exc}", system=write.system)
            self._failed(write, unknown, batch, outcome)
            return
        batch.cleared.append((write.system, write.golden_id))
        outcome.done[(write.system, write.action.value)] += 1

    def _failed(
        self, write: Write, exc: ConnectorError, batch: _Batch, outcome: PushOutcome
    ) -> None:
        desired_hash = content_hash(write.desired)
        before = self.previous.get((write.system, write.golden_id))
        attempts = (before.attempts if before and before.desired_hash == desired_hash else 0) + 1
        quarantined = isinstance(exc, RecordRejected) or attempts >= self.max_attempts
        error = str(exc)
        if write.action is Action.CREATE and isinstance(exc, RetriableError):
            # A 5xx, a timeout or a cut connection may mean "applied": the next read of
            # the system finds the record and matching links it; until then, no resend.
            error = UNKNOWN_OUTCOME + error
        batch.failures.append(
            Failure(
                write.system, write.golden_id, write.action.value, write.remote_id, attempts,
                error, desired_hash, quarantined, self.now + backoff(attempts), self.now,
            )
        )
        outcome.failed[write.system] += 1
        who = self.name(write.golden_id) if self.name else None
        outcome.messages.append(f"{write.describe(who)}: {exc}")
        log.warning(
            "write_failed", system=write.system, person=write.golden_id, who=who,
            action=write.action.value, remote_id=write.remote_id, attempts=attempts,
            quarantined=quarantined, error=str(exc),
        )

    def _flush(self, batch: _Batch, outcome: PushOutcome) -> None:
        outcome.links.update(batch.links)
        outcome.removed.update(batch.removed)
        if not len(batch) and not batch.cleared:
            return
        with self.store.write() as conn:
            self.store.save_changes(
                conn, goldens={}, links=batch.links, removed=batch.removed, now=self.now
            )
            self.store.clear_failures(
                conn, [k for k in batch.cleared if k in self.previous]
            )
            for failure in batch.failures:
                self.store.record_failure(conn, failure)
