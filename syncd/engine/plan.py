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
   Field policies (CONTRACT §6) act on proposals, in :meth:`_Planner.propose`:
   a field outside a system's ``targets`` is not read there, a change from a
   system outside its ``sources`` (or a clear of a ``never_clear`` field) is
   refused — noted in ``PlanResult.refused``, the golden value stands and is
   written back.  Matching and moves are not theirs to decide: who is who
   does not depend on what a field policy lets through.
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from syncd.contact import FIELDS, clean, differs, normalise
from syncd.engine.kept import Created, identities, keeps_keys
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
    Refusal,
    State,
    SystemInfo,
    settle_joined,
)

__all__ = ["MASS_DELETE_MIN", "PlanResult", "golden_id_for", "plan"]

_NO_IDS: dict[str, str] = {}

ORG = "organization"
"""The proposal name of a move: the organization merges and conflicts like a field."""

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
    stamped: bool = True
    """``when`` is the system's own update time, not the time we observed the change."""


@dataclass
class PlanResult:
    state: State
    goldens_changed: dict[str, Golden] = field(default_factory=dict)
    links_changed: dict[LinkKey, Link] = field(default_factory=dict)
    links_removed: set[LinkKey] = field(default_factory=set)
    conflicts: list[Conflict] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    """Records refused as they were read (no usable remote id): never linked."""
    sources: dict[str, Mapping[str, tuple[str, bool]]] = field(default_factory=dict)
    """Per changed person: field (or ``organization``, ``deleted``) → (the system whose
    value was taken, whether a policy chose it over another value): the history's source.
    ``*`` names the system a new person was first seen in, for every field it brought
    (one mapping per system, shared: a first sync makes no object per person)."""
    refused: list[Refusal] = field(default_factory=list)
    """Changes a field policy refused (CONTRACT §6): the golden value stands, and the
    derived writes put it back in that system."""

    def touched(self) -> set[str]:
        """People whose golden record or links this plan changed."""
        return (
            set(self.goldens_changed)
            | {gid for gid, _ in self.links_changed}
            | {gid for gid, _ in self.links_removed}
        )


class _Linked:
    """The people ``system`` holds, less those whose move there is half done."""

    __slots__ = ("planner", "system")

    def __init__(self, planner: _Planner, system: str) -> None:
        self.planner = planner
        self.system = system

    def __contains__(self, gid: object) -> bool:
        planner = self.planner
        return (isinstance(gid, str) and gid in planner.linked[self.system]
                and not planner.moving(gid, self.system))


class _Planner:
    def __init__(self, state: State, systems: Mapping[str, SystemInfo], policy: Policy) -> None:
        self.base = state
        """The state before this cycle: what each link held when the cycle began."""
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
        self.kept = Created(state.goldens, systems, policy) if keeps_keys(policy) else None
        """Set when a policy keeps a match key field from some systems (:mod:`kept`)."""
        self.proposals: dict[str, dict[str, list[_Proposal]]] = defaultdict(lambda: defaultdict(list))
        self.deletes: dict[str, list[str]] = defaultdict(list)
        self.left: set[str] = set()
        """People who left every mapped organization this cycle (:meth:`leave`)."""
        self.unconfirmed: dict[str, int] = {}
        """Per system: linked records missing from a scoped scan, not yet read by id."""
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
            people: Iterable[Golden] = self.goldens.values()
            if self.kept is not None:  # matching is not the field policies' business
                people = identities(people, self.links, self.systems, self.policy)
            self._matcher = Matcher(people, self.policy.default_region)
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
        old = self.links.get(key)
        if old is not None and old.remote_id not in (None, link.remote_id):
            self.own(link.system).pop(old.remote_id, None)  # the person's record was replaced
        self.writable_links()[key] = link
        if self._linked is not None:
            if link.excluded:
                self._linked[link.system].discard(link.golden_id)
            else:
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
        origin = {"*": (obs.system, False)}
        seen: set[str] = set()
        for rec in obs.records:
            if not rec.remote_id.strip():
                # Nothing could tell two such records apart, nor find this one again:
                # linking it would merge strangers and update the wrong record.
                who = " ".join(v for v in (rec.fields.get("first_name"),
                                           rec.fields.get("last_name")) if v) or "no name"
                self.result.invalid.append(
                    f"{obs.system}: a record without a usable id was left out ({who})"
                )
                continue
            org = info.org_map.get(rec.org_id)
            # Looked up afresh each time: a link made above may have copied the index.
            gid = system_index(obs.system, _NO_IDS).get(rec.remote_id)
            if org is None:
                if gid is not None:
                    # Moved out of every mapped organization: no longer synced, and
                    # not gone either — nothing is deleted anywhere.  A tombstone under
                    # an unmapped organization is the same person: it left, then was
                    # deleted where syncd no longer follows it.
                    seen.add(rec.remote_id)
                    self.leave(gid)
                continue
            seen.add(rec.remote_id)
            if rec.deleted:
                if gid is not None:
                    self.gone(gid, obs.system)
                continue
            if gid is not None:
                link = self.links[(gid, obs.system)]
                if (rec.fields == link.fields and rec.org_id == link.org_id
                        and (not rec.extra or rec.extra == link.extra)):
                    continue  # the common case: exactly what we hold, nothing to normalise
            stamped = info.capabilities.timestamps and rec.updated_at is not None
            when = rec.updated_at if stamped and rec.updated_at else obs.observed_at
            values = clean(rec.fields, fields)
            if gid is not None:
                values = settle_joined(info.capabilities, values, link.fields)
                changed = [f for f in fields if differs(f, values[f], link.fields.get(f, ""))]
                moved = rec.org_id != link.org_id
                if moved and org != info.org_map.get(link.org_id) and org != self.goldens[gid].org:
                    # The organization is part of the person: a move is a change like any.
                    self.proposals[gid][ORG].append(_Proposal(obs.system, org, when, stamped))
                if changed or moved:
                    for f in changed:
                        self.propose(gid, obs.system, f, values[f], when, stamped)
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
            gid, keys = self.matcher.find(org, values, self.linked_not_moving(obs.system))
            if gid is None and self.kept is not None:
                # Our own create whose answer was lost, holding too little to be matched.
                gid = self.kept.find(obs.system, org, values, self.linked_not_moving(obs.system))
            if gid is not None:
                golden = self.goldens[gid]
                values = settle_joined(info.capabilities, values, golden.fields)
                for f in fields:
                    if values[f] and differs(f, values[f], golden.fields.get(f, "")):
                        self.propose(gid, obs.system, f, values[f], when, stamped)
            else:
                gid = golden_id_for(obs.system, rec.remote_id)
                while gid in self.goldens:
                    gid = golden_id_for(obs.system, gid)
                golden = Golden(gid, org, {f: values.get(f, "") for f in FIELDS})
                if self.policy.fields:  # a field not read from there starts empty
                    golden = replace(golden, fields={
                        f: v if self.policy.targets(obs.system, f) else ""
                        for f, v in golden.fields.items()})
                self.set_golden(golden)
                self.result.sources[gid] = origin
                self.matcher.add_keys(gid, keys, values)
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
        if obs.complete:
            known = self.index.get(obs.system, _NO_IDS)
            missing = known.keys() - seen if obs.unlisted is None else obs.unlisted - seen
            missing -= obs.unconfirmed  # not read by id yet: moved away, or deleted?
            self.unconfirmed[obs.system] = len(obs.unconfirmed)
            for remote_id in sorted(missing):
                gid = known.get(remote_id)
                if gid is None:
                    continue  # linked when polled, replaced by a link made above
                link = self.links[(gid, obs.system)]
                if not link.excluded and link.org_id not in obs.unread_orgs:
                    self.gone(gid, obs.system)

    def propose(self, gid: str, system: str, name: str, value: str, when: datetime,
                stamped: bool) -> None:
        """``system``'s change of one field, unless a field policy refuses it (CONTRACT §6).

        A field outside the system's targets is not read from there at all.  A refused
        change proposes nothing, so the golden value stands and the derived writes put it
        back in ``system`` (its link now holds the refused value); it is noted once, in
        the cycle that first sees it.  A system that is not a source proposes nothing even
        when it agrees with the golden value: it must not tip a conflict between sources.
        """
        policy = self.policy
        if policy.fields:
            if not policy.targets(system, name):
                return
            golden = self.goldens[gid].fields.get(name, "")
            why = policy.refuses(system, name, value, golden)
            if why is not None:
                if differs(name, value, golden):
                    self.result.refused.append(Refusal(gid, system, name, value, golden, why))
                return
        self.proposals[gid][name].append(_Proposal(system, value, when, stamped))

    # -- moves and leaving the mapped organizations -----------------------------------------

    def moving(self, gid: str, system: str) -> bool:
        """The person's record there is still under another organization than the person:
        a move not done yet, or half done (the old record deleted, the new one not made)."""
        link = self.links.get((gid, system))
        golden = self.goldens.get(gid)
        if link is None or golden is None or link.excluded or golden.deleted:
            return False
        return self.systems[system].org_map.get(link.org_id) != golden.org

    def gone(self, gid: str, system: str) -> None:
        """A linked record disappeared: a delete, unless it is the old half of a move."""
        if self.moving(gid, system):
            self.drop_link((gid, system))  # the new record is made (or matched) instead
        else:
            self.deletes[gid].append(system)

    def linked_not_moving(self, system: str) -> _Linked:
        """People matching may not link again in ``system``: a person whose move there
        is half done may be matched, so that a record made under the new organization
        whose answer was lost is linked, not duplicated.

        A view, asked only about the few candidates of one match key: building the
        set for every unlinked record made a first sync quadratic in its size.
        """
        return _Linked(self, system)

    def leave(self, gid: str) -> None:
        """Stop syncing a person (its organization is no longer mapped): every link is
        excluded, keeping its remote id, so nothing reads it as new or as deleted; a
        system that holds no record of the person gets an excluded placeholder, so no
        create is derived for it (a move elsewhere may have left it waiting for one)."""
        self.left.add(gid)
        for system in sorted(self.systems):
            link = self.links.get((gid, system))
            if link is None:
                self.set_link(Link(system, gid, None, "", {}, excluded=True))
            elif not link.excluded:
                self.set_link(replace(link, excluded=True))

    # -- the mass-delete guard --------------------------------------------------------------

    def guard(self, state: State) -> None:
        counts: dict[str, int] = defaultdict(int)
        for systems in self.deletes.values():
            for system in systems:
                counts[system] += 1
        if self.policy.force_delete or not counts:
            return
        linked: dict[str, int] = defaultdict(int)
        if state.linked_counts is not None:
            linked.update(state.linked_counts)
        else:
            for link in state.links.values():
                if link.remote_id is not None and not link.excluded:
                    linked[link.system] += 1
        # Records whose deletion is not confirmed yet count too: a mass delete confirmed a
        # hundred records a cycle must not slip under the guard a hundred at a time.
        trips = [
            (system, total, linked[system])
            for system, n in sorted(counts.items())
            if (total := n + self.unconfirmed.get(system, 0)) >= MASS_DELETE_MIN
            and total > self.policy.max_delete_fraction * linked[system]
        ]
        if trips:
            raise MassDeleteError(trips, self.policy.max_delete_fraction)

    # -- step 3: merge ----------------------------------------------------------------------

    def resolve(self, gid: str, name: str, props: list[_Proposal]) -> _Proposal:
        ranked = sorted(props, key=lambda p: self.policy.rank_for(name, p.system))
        if len({normalise(name, p.value) for p in props}) == 1:
            return ranked[0]
        conflict = self.policy.conflict_for(name)
        if conflict is ConflictPolicy.NEWEST:
            # A change seen by a system without timestamps happened at some moment since
            # its last read: it counts as no newer than the newest stamp of the others,
            # and a tie goes to the priority order.
            stamps = [p.when for p in props if p.stamped]
            cap = max(stamps) if stamps else None

            def when(p: _Proposal) -> datetime:
                return p.when if p.stamped or cap is None else min(p.when, cap)

            latest = max(when(p) for p in props)
            winner = next(p for p in ranked if when(p) == latest)
        else:
            winner = ranked[0]
        self.result.conflicts.append(
            Conflict(
                golden_id=gid,
                field=name,
                candidates=tuple((p.system, p.value, p.when) for p in ranked),
                winner=winner.system,
                value=winner.value,
                policy=conflict.value,
            )
        )
        return winner

    def lagging(self, gid: str, name: str, props: list[_Proposal]) -> list[_Proposal]:
        """The golden value, as proposed by the systems holding it, when a change comes
        from a system whose link lags it (it never received that value).

        Without this the lagging system's change would overwrite a value it never saw,
        silently: it is a conflict, resolved by policy and logged (DESIGN invariant 4).
        """
        base_golden = self.base.goldens.get(gid)
        if base_golden is None or name not in FIELDS:
            return []
        gold = base_golden.fields.get(name, "")
        lag = [
            p for p in props
            if (link := self.base.links.get((gid, p.system))) is not None
            and not link.excluded
            and differs(name, link.fields.get(name, ""), gold)
            and differs(name, p.value, gold)
        ]
        if not lag:
            return []
        proposing = {p.system for p in props}
        holders: list[_Proposal] = []
        for system in sorted(self.systems, key=lambda s: self.policy.rank_for(name, s)):
            link = self.base.links.get((gid, system))
            caps = self.systems[system].capabilities
            if (system in proposing or link is None or link.excluded or link.remote_id is None
                    or name not in caps.fields or differs(name, link.fields.get(name, ""), gold)
                    or not self.policy.targets(system, name)):
                continue
            stamped = caps.timestamps and link.remote_updated_at is not None
            when = link.remote_updated_at if stamped and link.remote_updated_at else lag[0].when
            holders.append(_Proposal(system, gold, when, stamped))
        return holders

    def merge(self) -> None:
        for gid in sorted(self.proposals):
            golden = self.goldens[gid]
            values = dict(golden.fields)
            org = golden.org
            taken: dict[str, tuple[str, bool]] = {}
            for name in sorted(self.proposals[gid]):
                props = self.proposals[gid][name]
                logged = len(self.result.conflicts)
                winner = self.resolve(gid, name, props + self.lagging(gid, name, props))
                taken[name] = (winner.system, len(self.result.conflicts) > logged)
                if name == ORG:
                    org = winner.value
                else:
                    values[name] = winner.value
            if values != golden.fields or org != golden.org or golden.deleted:
                # A change to a deleted person brings it back: modify beats delete.
                self.set_golden(replace(golden, fields=values, org=org, deleted=False))
                mine = {**self.result.sources.get(gid, {}), **taken}
                if taken:  # brought back: by the first system (by priority) that changed it
                    mine["deleted"] = (min((s for s, _ in taken.values()), key=self.policy.rank),
                                       False)
                self.result.sources[gid] = mine

    # -- step 4: deletes --------------------------------------------------------------------

    def apply_deletes(self) -> None:
        for gid in sorted(self.deletes):
            golden = self.goldens[gid]
            systems = self.deletes[gid]
            modified = gid in self.proposals
            left = gid in self.left  # deleted here, gone from every mapped organization there
            for system in systems:
                key = (gid, system)
                if left or (self.policy.deletes is DeletePolicy.IGNORE and not golden.deleted):
                    # No longer synced: an excluded placeholder, as :meth:`leave` makes.
                    link = self.links[key]
                    self.drop_link(key)
                    self.set_link(replace(link, remote_id=None, excluded=True, fields={}))
                else:
                    self.drop_link(key)
            if left:
                continue  # a person who left is deleted nowhere
            if self.policy.deletes is DeletePolicy.PROPAGATE and not modified and not golden.deleted:
                self.set_golden(replace(golden, deleted=True))
                self.result.sources[gid] = {**self.result.sources.get(gid, {}),
                                            "deleted": (min(systems, key=self.policy.rank), False)}

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
