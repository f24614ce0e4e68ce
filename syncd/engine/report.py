"""What one cycle did, per system: the summary event, ``--json`` output and metrics.

``as_dict`` is the report's way out of the process (log event, ``--json``, the
stored run summary), so error texts leave it with every configured secret
masked: a system's error may quote our own request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from syncd.logs import get_logger
from syncd.model import Action, Rejection, State, Write
from syncd.people import People, describe_write
from syncd.redact import redact, redact_value

if TYPE_CHECKING:
    from syncd.engine.plan import PlanResult
    from syncd.engine.poll import PollResult
    from syncd.engine.push import PushOutcome

__all__ = ["CycleReport", "Named", "SystemReport"]

log = get_logger("syncd.cycle")
_PAST = {"create": "created", "update": "updated", "delete": "deleted"}


@dataclass
class SystemReport:
    read: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    rejected: int = 0
    failed: int = 0
    conflicts: int = 0
    requests: int = 0
    rate_limited: int = 0
    full_scan: bool = False
    duration_s: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else redact_value(v))
                for k, v in vars(self).items()}


@dataclass
class CycleReport:
    started_at: datetime
    dry_run: bool = False
    finished_at: datetime | None = None
    systems: dict[str, SystemReport] = field(default_factory=dict)
    planned: list[Write] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    conflicts: int = 0
    refused: set[tuple[str, str]] = field(default_factory=set)
    """(person, system) whose change a field policy refused: their write is a write-back."""
    people: People | None = field(default=None, repr=False)
    """The planned state's people: names the person of each planned write and rejection,
    and holds each system's old values for the dry run's ``old → new``."""
    interrupted: bool = False
    """Stopped by a signal before the cycle was done (the done work is kept)."""
    guard_tripped: bool = False
    """The mass-delete guard stopped the cycle before it committed anything."""

    @property
    def exit_code(self) -> int:
        """CONTRACT §3: 130 interrupted, 3 mass-delete guard, 4 a system unreachable or
        failing, 1 a record or write refused or failed, else 0."""
        if self.interrupted:
            return 130
        if self.guard_tripped:
            return 3
        if any(s.error is not None for s in self.systems.values()):
            return 4
        if self.errors or any(s.rejected or s.failed for s in self.systems.values()):
            return 1
        return 0

    @property
    def writes(self) -> int:
        return sum(s.created + s.updated + s.deleted for s in self.systems.values())

    def changes(self, system: str) -> tuple[int, int, int]:
        """(created, updated, deleted) in ``system``: what the cycle did, or for a dry run
        what it would do (its planned writes), so that its table is not a row of zeros."""
        if not self.dry_run:
            done = self.systems[system]
            return done.created, done.updated, done.deleted
        actions = [w.action for w in self.planned if w.system == system]
        return (actions.count(Action.CREATE), actions.count(Action.UPDATE),
                actions.count(Action.DELETE))

    # -- what the cycle found, planned and did ------------------------------------------------

    def add_polls(self, polls: Iterable[PollResult]) -> None:
        """Each system's read: its records skipped, its failure."""
        for p in polls:
            rep = self.systems[p.system]
            rep.full_scan = p.full
            rep.read = p.listed
            for item in p.skipped:
                self.errors.append(
                    f"{p.system}: record {item.remote_id or '(no id)'} skipped: {item.reason}")
                rep.rejected += 1
                log.warning("record_skipped", system=p.system, remote_id=item.remote_id,
                            reason=item.reason)
            if p.error is not None:
                rep.error = str(p.error)
                self.errors.append(str(p.error))
                log.warning("poll_failed", system=p.system, error=str(p.error))

    def add_plan(self, result: PlanResult, rejections: list[Rejection]) -> People:
        """A plan's invalid records, conflicts, refusals and rejections; its people."""
        for problem in result.invalid:
            self.errors.append(problem)
            log.warning("record_invalid", error=problem)
        self.conflicts += len(result.conflicts)
        for conflict in result.conflicts:
            self.systems[conflict.winner].conflicts += 1
        self.rejections.extend(rejections)
        people = People(result.state)
        for refusal in result.refused:
            self.refused.add((refusal.golden_id, refusal.system))
            log.info("policy_refused", person=refusal.golden_id, who=people.label(refusal.golden_id),
                     system=refusal.system, field=refusal.field, value=refusal.value,
                     kept=refusal.golden, rule=refusal.reason)
        for rej in rejections:
            self.systems[rej.system].rejected += 1
            log.warning("write_rejected", system=rej.system, person=rej.golden_id,
                        who=people.label(rej.golden_id), remote_id=rej.remote_id,
                        field=rej.field, reason=rej.reason)
        return people

    def add_push(self, outcome: PushOutcome) -> None:
        """What the push did: writes done and failed, systems given up."""
        for (system, action), n in outcome.done.items():
            rep = self.systems[system]
            past = _PAST[action]
            setattr(rep, past, getattr(rep, past) + n)
        for system, n in outcome.failed.items():
            self.systems[system].failed += n
        for system, error in outcome.unavailable.items():
            self.systems[system].error = error
            self.errors.append(error)
        self.errors.extend(outcome.messages)

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "dry_run": self.dry_run,
            "exit_code": self.exit_code,
            "conflicts": self.conflicts,
            "systems": {name: s.as_dict() for name, s in sorted(self.systems.items())},
            "planned": self.plan() if self.dry_run else [],
            "rejected": [self.rejection(r) for r in self.rejections],
            "errors": [redact(e) for e in self.errors],
        }

    def plan(self) -> list[dict[str, Any]]:
        """The dry run's writes: the person named, each field's old and new value."""
        docs = []
        for w in self.planned:
            doc = describe_write(w, self.people)
            if (w.golden_id, w.system) in self.refused:
                doc["reason"] = "policy"  # the golden value put back (CONTRACT §6)
            docs.append(redact_value(doc))
        return docs

    def rejection(self, rej: Rejection) -> dict[str, Any]:
        who = self.people(rej.golden_id) if self.people else None
        doc: dict[str, Any] = {
            "system": rej.system, "action": rej.action.value, "remote_id": rej.remote_id,
            **(who.as_dict() if who else {"person": rej.golden_id}),
            "field": rej.field, "reason": rej.reason,
            "text": rej.describe(who.label() if who else None),
        }
        masked: dict[str, Any] = redact_value(doc)
        return masked


class Named:
    """The people of a cycle planned a group at a time that its report names: those
    with a write or a rejection (every person of every group would be the whole state)."""

    def __init__(self) -> None:
        self.state = State(goldens={}, links={})

    def add(self, planned: State, writes: list[Write], rejections: list[Rejection],
            systems: Iterable[str]) -> People:
        goldens, links = self.state.goldens, self.state.links
        assert isinstance(goldens, dict) and isinstance(links, dict)
        names = list(systems)
        for gid in {w.golden_id for w in writes} | {r.golden_id for r in rejections}:
            if gid in planned.goldens:
                goldens[gid] = planned.goldens[gid]
            for system in names:
                if (link := planned.links.get((gid, system))) is not None:
                    links[(gid, system)] = link
        return People(self.state)
