"""The pure planner: golden records + links + observations + policy → new state.

No I/O and no clock: time comes in as an argument, so the same inputs always
give the same plan.  Steps:

1. **Diff** each observed record against its own link (what that system
   held after the last sync).  Unchanged fields — including our own writes
   read back and timestamp bumps — propose nothing.
2. **Match** unlinked records to existing people (see :mod:`match`) or make
   new golden records; a matched record proposes only its non-empty values,
   so a first sync never clears data.
3. **Merge** proposals field by field.  Agreement (after normalisation) is
   no conflict; disagreement is resolved by ``newest`` (the systems' own
   timestamps, else the time of observation) or ``priority``, and logged.
4. **Deletes**: a linked record gone from a complete scan, or a tombstone,
   deletes the person (``propagate``) or only unlinks that system for good
   (``ignore``).  A person changed elsewhere in the same cycle survives:
   modify beats delete.  The mass-delete guard runs before anything else.

:func:`syncd.engine.writes.derive_writes` then computes what each system
still has to receive — golden vs link — so pending writes are never stored,
only failures are.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from syncd.contact import FIELDS, clean, differs, normalise
from syncd.engine.match import Matcher
from syncd.errors import MassDeleteError
from syncd.model import (
    Conflict,
    ConflictPolicy,
    DeletePolicy,
    Golden,
    Link,
    LinkKey,
    Observation,
    Policy,
    State,
    SystemInfo,
    settle_joined,
)

__all__ = ["MASS_DELETE_MIN", "PlanResult", "golden_id_for", "plan"]

_NO_IDS: dict[str, str] = {}

MASS_DELETE_MIN = 2
"""A single deletion is never a mass delete, whatever the fraction says."""



def golden_id_for(system: str, remote_id: str) -> str:
    """Deterministic id of a person first seen as ``system/remote_id`` (keeps plan pure)."""
    return hashlib.blake2b(f"{system}\x00{remote_id}".encode(), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class _Proposal:
    system: str
    value: str
    when: datetime


@dataclass
class PlanResult:
    state: State
    goldens_changed: dict[str, Golden] = field(default_factory=dict)
    links_changed: dict[LinkKey, Link] = field(default_factory=dict)
    links_removed: set[LinkKey] = field(default_factory=set)
    conflicts: list[Conflict] = field(default_factory=list)
    deletions: dict[str, int] = field(default_factory=dict)
    """Per system: records found deleted this cycle."""
    read: dict[str, int] = field(default_factory=dict)

    def touched(self) -> set[str]:
        """People whose golden record or links this plan changed."""
        return (
            set(self.goldens_changed)
            | {gid for gid, _ in self.links_changed}
            | {gid for gid, _ in self.links_removed}
        )


class _Planner:
    def __init__(self, state: State, systems: Mapping[str, SystemInfo], policy: Policy) -> None:
        self.policy = policy
        self.systems = systems
        # Copy-on-write: a cycle that changes nothing copies nothing.
        self.goldens: Mapping[str, Golden] = state.goldens
        self.links: Mapping[LinkKey, Link] = state.links
        self._own_goldens: dict[str, Golden] | None = None
        self._own_links: dict[LinkKey, Link] | None = None
        # Copy-on-write per system: a quiet cycle copies nothing of the index.
        self.index = dict(state.index())
        self._owned: set[str] = set()
        self._linked: dict[str, set[str]] | None = None
        self._matcher: Matcher | None = None
        self.proposals: dict[str, dict[str, list[_Proposal]]] = defaultdict(lambda: defaultdict(list))
        self.deletes: dict[str, list[str]] = defaultdict(list)
        self.result = PlanResult(state=state)

    @property
    def linked(self) -> dict[str, set[str]]:
        """Per system, the people it holds; built on first use (matching needs it)."""
        if self._linked is None:
            self._linked = defaultdict(set)
            for (gid, system), link in self.links.items():
                if not link.excluded:
                    self._linked[system].add(gid)
        return self._linked

    @property
    def matcher(self) -> Matcher:
        """Built on first use: a cycle with no new records never pays for it."""
        if self._matcher is None:
            self._matcher = Matcher(self.goldens.values())
        return self._matcher

    # -- links ------------------------------------------------------------------------------

    def own(self, system: str) -> dict[str, str]:
        """This plan's own copy of one system's index, made on first change."""
        if system not in self._owned:
            self.index[system] = dict(self.index.get(system, {}))
            self._owned.add(system)
        return self.index[system]

    def writable_links(self) -> dict[LinkKey, Link]:
        if self._own_links is None:
            self._own_links = dict(self.links)
            self.links = self._own_links
        return self._own_links

    def set_link(self, link: Link) -> None:
        key = (link.golden_id, link.system)
        self.writable_links()[key] = link
        if self._linked is not None and not link.excluded:
            self._linked[link.system].add(link.golden_id)
        if link.remote_id is not None:
            self.own(link.system)[link.remote_id] = link.golden_id
        self.result.links_changed[key] = link
        self.result.links_removed.discard(key)

    def drop_link(self, key: LinkKey) -> None:
        link = self.writable_links().pop(key, None)
        if link is None:
            return
        if self._linked is not None:
            self._linked[link.system].discard(link.golden_id)
        if link.remote_id is not None:
            self.own(link.system).pop(link.remote_id, None)
        self.result.links_changed.pop(key, None)
        self.result.links_removed.add(key)

    def set_golden(self, golden: Golden) -> None:
        if self._own_goldens is None:
            self._own_goldens = dict(self.goldens)
            self.goldens = self._own_goldens
        self._own_goldens[golden.id] = golden
        self.result.goldens_changed[golden.id] = golden

    # -- step 1 and 2: diff and match -------------------------------------------------------

    def observe(self, obs: Observation) -> None:
        info = self.systems[obs.system]
        fields = sorted(info.capabilities.fields)
        system_index = self.index.get
        seen: set[str] = set()
        for rec in obs.records:
            org = info.org_map.get(rec.org_id)
            if org is None:
                continue
            seen.add(rec.remote_id)
            # Looked up afresh each time: a link made above may have copied the index.
            gid = system_index(obs.system, _NO_IDS).get(rec.remote_id)
            if rec.deleted:
                if gid is not None:
                    self.deletes[gid].append(obs.system)
                continue
            if gid is not None:
                link = self.links[(gid, obs.system)]
                if rec.fields == link.fields and (not rec.extra or rec.extra == link.extra):
                    continue  # the common case: exactly what we hold, nothing to normalise
            when = rec.updated_at if info.capabilities.timestamps and rec.updated_at else obs.observed_at
            values = clean(rec.fields, fields)
            if gid is not None:
                values = settle_joined(info.capabilities, values, link.fields)
                changed = [f for f in fields if differs(f, values[f], link.fields.get(f, ""))]
                if changed:
                    for f in changed:
                        self.proposals[gid][f].append(_Proposal(obs.system, values[f], when))
                    self.set_link(
                        replace(
                            link,
                            fields=values,
                            org_id=rec.org_id,
                            remote_updated_at=rec.updated_at,
                            extra=dict(rec.extra) or link.extra,
                        )
                    )
                elif dict(rec.extra) and dict(rec.extra) != dict(link.extra):
                    self.set_link(replace(link, extra=dict(rec.extra)))
                continue
            gid, keys = self.matcher.find(org, values, self.linked[obs.system])
            if gid is not None:
                golden = self.goldens[gid]
                values = settle_joined(info.capabilities, values, golden.fields)
                for f in fields:
                    if values[f] and differs(f, values[f], golden.fields.get(f, "")):
                        self.proposals[gid][f].append(_Proposal(obs.system, values[f], when))
            else:
                gid = golden_id_for(obs.system, rec.remote_id)
                while gid in self.goldens:
                    gid = golden_id_for(obs.system, gid)
                golden = Golden(gid, org, {f: values.get(f, "") for f in FIELDS})
                self.set_golden(golden)
                self.matcher.add_keys(gid, keys)
            self.set_link(
                Link(
                    system=obs.system,
                    golden_id=gid,
                    remote_id=rec.remote_id,
                    org_id=rec.org_id,
                    fields=values,
                    remote_updated_at=rec.updated_at,
                    extra=dict(rec.extra),
                )
            )
        self.result.read[obs.system] = len(obs.records)
        if obs.complete:
            known = self.index.get(obs.system, _NO_IDS)
            for remote_id in sorted(known.keys() - seen):
                gid = known[remote_id]
                if not self.links[(gid, obs.system)].excluded:
                    self.deletes[gid].append(obs.system)

    # -- the mass-delete guard --------------------------------------------------------------

    def guard(self, state: State) -> None:
        counts: dict[str, int] = defaultdict(int)
        for systems in self.deletes.values():
            for system in systems:
                counts[system] += 1
        self.result.deletions = dict(counts)
        if self.policy.force_delete or not counts:
            return
        linked: dict[str, int] = defaultdict(int)
        for link in state.links.values():
            if link.remote_id is not None and not link.excluded:
                linked[link.system] += 1
        trips = [
            (system, n, linked[system])
            for system, n in sorted(counts.items())
            if n >= MASS_DELETE_MIN and n > self.policy.max_delete_fraction * linked[system]
        ]
        if trips:
            raise MassDeleteError(trips, self.policy.max_delete_fraction)

    # -- step 3: merge ----------------------------------------------------------------------

    def resolve(self, gid: str, name: str, props: list[_Proposal]) -> _Proposal:
        ranked = sorted(props, key=lambda p: self.policy.rank(p.system))
        if len({normalise(name, p.value) for p in props}) == 1:
            return ranked[0]
        if self.policy.conflict is ConflictPolicy.NEWEST:
            latest = max(p.when for p in props)
            winner = next(p for p in ranked if p.when == latest)
        else:
            winner = ranked[0]
        self.result.conflicts.append(
            Conflict(
                golden_id=gid,
                field=name,
                candidates=tuple((p.system, p.value, p.when) for p in ranked),
                winner=winner.system,
                value=winner.value,
                policy=self.policy.conflict.value,
            )
        )
        return winner

    def merge(self) -> None:
        for gid in sorted(self.proposals):
            golden = self.goldens[gid]
            values = dict(golden.fields)
            for name in sorted(self.proposals[gid]):
                winner = self.resolve(gid, name, self.proposals[gid][name])
                values[name] = winner.value
            if values != golden.fields or golden.deleted:
                # A change to a deleted person brings it back: modify beats delete.
                self.set_golden(replace(golden, fields=values, deleted=False))

    # -- step 4: deletes --------------------------------------------------------------------

    def apply_deletes(self) -> None:
        for gid in sorted(self.deletes):
            golden = self.goldens[gid]
            systems = self.deletes[gid]
            modified = gid in self.proposals
            for system in systems:
                key = (gid, system)
                if self.policy.deletes is DeletePolicy.IGNORE and not golden.deleted:
                    link = self.links[key]
                    self.drop_link(key)
                    self.set_link(replace(link, remote_id=None, excluded=True, fields={}))
                else:
                    self.drop_link(key)
            if self.policy.deletes is DeletePolicy.PROPAGATE and not modified and not golden.deleted:
                self.set_golden(replace(golden, deleted=True))

    def finish(self) -> PlanResult:
        self.result.state = State(goldens=self.goldens, links=self.links, remote_index=self.index)
        return self.result


def plan(
    state: State,
    observations: Sequence[Observation],
    systems: Mapping[str, SystemInfo],
    policy: Policy,
) -> PlanResult:
    """Reconcile one cycle's observations into the state; raises ``MassDeleteError``."""
    planner = _Planner(state, systems, policy)
    for obs in sorted(observations, key=lambda o: policy.rank(o.system)):
        planner.observe(obs)
    planner.guard(state)
    planner.merge()
    planner.apply_deletes()
    return planner.finish()
