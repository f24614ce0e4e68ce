"""What a plan commits before anything is pushed, and which derived writes are then due.

The plan's golden records, links, conflicts, history and the watermarks its
reads justify go in one transaction, so a watermark never runs ahead of what
is stored and a change never lacks its history row.  A plan whose people
someone else changed since it read them (an operator's undo) commits nothing:
:class:`Raced`, and the cycle plans again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from syncd.contact import content_hash
from syncd.engine.plan import PlanResult
from syncd.engine.push import outcome_unknown
from syncd.model import Failure, Golden, Rejection, Watermark, Write
from syncd.store import history
from syncd.store.repo import Store

__all__ = ["Commit", "Raced", "commit_plan", "due"]


class Raced(Exception):
    """Golden records this plan changes were changed by someone else since it read them."""

    def __init__(self, people: list[str]) -> None:
        super().__init__(f"{len(people)} people changed meanwhile")
        self.people = people


@dataclass
class Commit:
    """One plan to commit, and what it was planned from."""

    result: PlanResult
    before: Mapping[str, Golden]
    """The golden records the plan started from (what the history diffs against)."""
    basis: int | None
    """The store revision they were read at (None: not known, so always checked)."""
    owed: set[str]
    """People to keep unsettled until their writes are done (stored before any push)."""
    rejections: list[Rejection]
    failures: Mapping[tuple[str, str], Failure]
    watermarks: Iterable[Watermark]


def commit_plan(store: Store, plan: Commit, now: datetime, run: tuple[str, datetime, int | None],
                ) -> tuple[int, int | None]:
    """Commit ``plan``; the revision committed and the run id its history rows name
    (``run``'s, or one opened now by this first change of the run)."""
    result, before = plan.result, plan.before
    kind, started, run_id = run
    changes = (history.packed_changes(before, result.goldens_changed, result.sources)
               if result.goldens_changed and history.enabled(store) else [])
    with store.transaction() as tx:
        conn = tx.conn
        if result.goldens_changed and (plan.basis is None or tx.revision != plan.basis + 1):
            # Someone wrote since this plan's state was read (an operator's undo):
            # committing over a person it changed would throw that change away.
            stored = history.stored_goldens(store, conn, result.goldens_changed)
            raced = sorted(g for g in result.goldens_changed if stored.get(g) != before.get(g))
            if raced:
                raise Raced(raced)
        # Before any push: a crash after this leaves these people unsettled.
        store.add_unsettled(conn, plan.owed)
        store.save_changes(conn, goldens=result.goldens_changed, links=result.links_changed,
                           removed=result.links_removed, now=now)
        if changes:
            # In the same transaction as the golden records: never one without the other.
            if run_id is None:
                run_id = history.start_run(store, conn, kind, started)
            history.save_history(store, conn, run_id, changes, now)
        store.save_conflicts(conn, result.conflicts, now)
        store.save_watermarks(conn, plan.watermarks)
        # A failed create whose record the poll found and matched is done: its
        # failure row would otherwise outlive it (and keep the person "pending").
        landed = [
            key for key, f in plan.failures.items()
            if f.action == "create"
            and (link := result.state.links.get((f.golden_id, f.system))) is not None
            and link.remote_id is not None
        ]
        if landed:
            store.clear_failures(conn, landed)
        for rej in plan.rejections:
            reason = f"rejected before sending: field {rej.field}: {rej.reason}"
            known = plan.failures.get((rej.system, rej.golden_id))
            if known is not None and known.quarantined and known.last_error == reason:
                continue  # the same rejection as last cycle: nothing new to store
            store.record_failure(conn, Failure(rej.system, rej.golden_id, rej.action.value,
                                               rej.remote_id, 0, reason, "", True, None, now))
    return tx.revision, run_id


def due(writes: list[Write], failures: Mapping[tuple[str, str], Failure], now: datetime,
        read: set[str]) -> list[Write]:
    """Leave out writes that are backing off or quarantined with the same content,
    and creates of unknown outcome to a system not read since (``read``: this cycle)."""
    found: list[Write] = []
    for write in writes:
        failure = failures.get((write.system, write.golden_id))
        if failure is not None and outcome_unknown(failure) and write.system not in read:
            continue
        if failure is not None and failure.desired_hash == content_hash(write.desired):
            if failure.quarantined:
                continue
            if failure.next_retry_at is not None and failure.next_retry_at > now:
                continue
        found.append(write)
    return found
