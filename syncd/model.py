"""The value objects every layer shares: what a system is, holds and is sent.

This is the leaf of the package: it imports nothing of ours but
:mod:`syncd.contact`, so the pure planner, the store and the connectors can
all depend on it without depending on each other (``tests/test_boundaries.py``
keeps it so).

A **golden record** is one real person; a **link** is what one system held of
that person after the last sync.  A system's change is its current record
diffed against its own link, so a system that cannot hold a field never
clears it, and our own writes, once recorded in the link, read back as no
change at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from syncd.contact import Fields

__all__ = [
    "MOVED_FROM",
    "Action",
    "Capabilities",
    "Conflict",
    "ConflictPolicy",
    "DeletePolicy",
    "Discovered",
    "Failure",
    "FieldLimit",
    "FieldPolicy",
    "Golden",
    "Link",
    "LinkKey",
    "Observation",
    "Page",
    "Policy",
    "Refusal",
    "Rejection",
    "RemoteRecord",
    "Skipped",
    "State",
    "SystemInfo",
    "Watermark",
    "Write",
    "WriteResult",
    "check_limits",
    "joined_value",
    "record_hash",
    "settle_joined",
]


MOVED_FROM = "moved_from"
"""Key in an update's ``extra``: the record moves from this parent to the update's ``org_id``."""


class ConflictPolicy(StrEnum):
    NEWEST = "newest"
    PRIORITY = "priority"


class DeletePolicy(StrEnum):
    PROPAGATE = "propagate"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class FieldLimit:
    max_length: int | None = None
    required_on_create: bool = False
    required: bool = False


@dataclass(frozen=True, slots=True)
class Capabilities:
    fields: frozenset[str]
    incremental: bool = False
    can_delete: bool = True
    timestamps: bool = False
    """The system stamps records with its own update time (used by ``newest``)."""
    limits: Mapping[str, FieldLimit] = field(default_factory=dict)
    overlap: timedelta = timedelta(0)
    """How far before the watermark an incremental read starts (the API's granularity)."""
    can_move: bool = False
    """An update can change the record's organization (its parent); else a move is a
    delete under the old parent and a create under the new one."""
    joined: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """The system's own field → the canonical fields it holds as that one value, joined by
    a space (Lightening's ``name`` = first_name last_name).  Such fields compare joined
    (:func:`settle_joined`), so a split that reads back otherwise is no change, and a
    limit may name the joined field (:func:`check_limits`)."""
    scoped_listing: bool = False
    """A scan lists only the mapped organizations' records (Lightening asks by customer), so a
    linked record missing from it may have moved out of them: the poller reads it by id
    (``Connector.read_ids``) before anyone concludes it was deleted."""


@dataclass(frozen=True, slots=True)
class Discovered:
    """What opening a system (or writing to it) found its server not to offer.

    A connector's :class:`Capabilities` are fixed once it is built; what it learns of
    its server later is this fact, returned by ``Connector.open``, carried by the poll and
    applied where the planner's :class:`SystemInfo` are built.  None: nothing found.
    A fact only takes away: a server cannot grant what the connector does not do.
    """

    can_delete: bool | None = None
    """False: the server has no contact delete (a LogiSense without the route, a Valomnia
    answering 405)."""
    incremental: bool | None = None
    """False: the server offers no change listing (a CardDAV server without
    ``sync-collection``): every read is a full scan."""

    def apply(self, caps: Capabilities) -> Capabilities:
        """``caps`` narrowed by what was found."""
        can_delete = caps.can_delete and self.can_delete is not False
        incremental = caps.incremental and self.incremental is not False
        if (can_delete, incremental) == (caps.can_delete, caps.incremental):
            return caps
        return replace(caps, can_delete=can_delete, incremental=incremental)


@dataclass(frozen=True, slots=True)
class RemoteRecord:
    """One remote record, mapped to canonical fields."""

    remote_id: str
    org_id: str
    """Its organization's parent id in this system (client-id, account id, ...)."""
    fields: Fields
    updated_at: datetime | None = None
    deleted: bool = False
    """An explicit tombstone from a change feed."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Connector-private data kept in the link (e.g. child ids)."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """A listed item that could not be read as a record: rejected alone, named in the report."""

    remote_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Page:
    records: Sequence[RemoteRecord]
    skipped: Sequence[Skipped] = ()
    """A page with a skipped item is no proof that a missing record is gone."""
    unread_orgs: frozenset[str] = frozenset()
    """Organizations (parent ids) this scan left for a later cycle (a budgeted sweep):
    a record missing under them is not gone."""
    token: str | None = None
    """The system's own change token (a CardDAV sync token) that this page and the ones
    before it justify: stored as the watermark's ``token`` with the plan they feed."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    remote_id: str
    fields: Fields | None = None
    """What the system holds now, when its answer says so (else the desired fields)."""
    updated_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def joined_value(parts: Sequence[str], fields: Mapping[str, str]) -> str:
    """The one value a system holds for ``parts``: the non-empty ones, one space apart."""
    return " ".join(" ".join((fields.get(p) or "").split()) for p in parts if
                    (fields.get(p) or "").strip())


def settle_joined(caps: Capabilities, values: Fields, held: Mapping[str, str]) -> Fields:
    """``values`` as read, with each joined group re-split the way ``held`` splits it.

    A system holding one name cannot say where first name ends and last name
    begins: its reader splits on a fixed rule ("Ada von Neumann" reads back as
    "Ada von" + "Neumann").  When the joined value is what ``held`` joins to
    (our own write, read back), ``held``'s parts stand: no change.  When it
    changed, a part that still opens (or closes) the new value is kept and the
    rest is the other part, so renaming "Ada von Neumann" to "Ada von
    Neumann-Smith" changes only the last name.  Otherwise the reader's split stands.
    """
    if not caps.joined:
        return values
    out = dict(values)
    for parts in caps.joined.values():
        new, old = joined_value(parts, values), joined_value(parts, held)
        if new == old:
            out.update({p: held.get(p, "") for p in parts})
        elif len(parts) == 2 and new:
            head, tail = (" ".join((held.get(p) or "").split()) for p in parts)
            if head and new.startswith(head + " "):
                out.update({parts[0]: head, parts[1]: new[len(head) + 1:]})
            elif tail and new.endswith(" " + tail):
                out.update({parts[0]: new[: -len(tail) - 1], parts[1]: tail})
    return out


def check_limits(caps: Capabilities, fields: Fields, *, creating: bool) -> tuple[str, str] | None:
    """The first (field, reason) that breaks this system's limits, or None."""
    for name, limit in caps.limits.items():
        parts = caps.joined.get(name)
        value = joined_value(parts, fields) if parts else fields.get(name, "")
        if limit.max_length is not None and len(value) > limit.max_length:
            return name, f"{len(value)} characters, the limit is {limit.max_length}"
        if (limit.required or (creating and limit.required_on_create)) and not value.strip():
            return name, "required, but empty"
    return None



_HASH_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True,
                                 default=str)


def record_hash(fields: Mapping[str, str], org_id: str, extra: Mapping[str, Any]) -> int:
    """A link's content hash, and a listed record's: equal means "nothing to plan".

    One function for both sides, over exactly what the planner compares before
    doing any work (fields, parent, connector data), with sorted keys so a
    connector's field order never reads as a change.  The poller leaves out a
    record whose hash equals its link's, so the link's hash must be kept with
    every link write (the store's ``hash`` column); 64 bits make a collision
    between a record's old and new content negligible, and records of different
    people never compare (the index is keyed by remote id).
    """
    raw = _HASH_ENCODER.encode([dict(fields), org_id, dict(extra)])
    return int.from_bytes(hashlib.blake2b(raw.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class Golden:
    id: str
    org: str
    fields: Fields
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Link:
    system: str
    golden_id: str
    remote_id: str | None
    org_id: str
    fields: Fields
    remote_updated_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    excluded: bool = False
    """The person is never pushed to this system again (deletes = ignore, quarantine drop)."""


LinkKey = tuple[str, str]
"""(golden id, system)"""


@dataclass(frozen=True, slots=True)
class State:
    goldens: Mapping[str, Golden]
    links: Mapping[LinkKey, Link]
    remote_index: dict[str, dict[str, str]] | None = field(default=None, compare=False, repr=False)
    """system → {remote id → golden id}; built once, then handed on by the planner."""
    linked_counts: Mapping[str, int] | None = field(default=None, compare=False, repr=False)
    """system → live links (a remote id, not excluded), when ``links`` holds only some
    people (a partial state): the mass-delete guard's denominator."""

    def index(self) -> dict[str, dict[str, str]]:
        if self.remote_index is None:
            index: dict[str, dict[str, str]] = {}
            for (gid, system), link in self.links.items():
                if link.remote_id is not None:
                    index.setdefault(system, {})[link.remote_id] = gid
            object.__setattr__(self, "remote_index", index)
            return index
        return self.remote_index

    def by_remote(self) -> dict[tuple[str, str], str]:
        """(system, remote id) → golden id, flat."""
        return {(s, rid): gid for s, ids in self.index().items() for rid, gid in ids.items()}


@dataclass(frozen=True, slots=True)
class SystemInfo:
    name: str
    capabilities: Capabilities
    org_map: Mapping[str, str]
    """parent id in this system → organization key"""
    read_only: bool = False

    @property
    def org_ids(self) -> dict[str, str]:
        """organization key → parent id in this system"""
        return {org: pid for pid, org in self.org_map.items()}


@dataclass(frozen=True, slots=True)
class Observation:
    """What one poll of one system returned."""

    system: str
    records: Sequence[RemoteRecord]
    complete: bool
    """A full scan that finished: a linked record absent from it is gone."""
    observed_at: datetime
    unread_orgs: frozenset[str] = frozenset()
    """Parents the scan did not read this time: absence under them proves nothing."""
    unlisted: AbstractSet[str] | None = None
    """Set when the poller left out records equal to their links (by hash): the linked
    remote ids this read did not list.  ``records`` then holds only what changed, and a
    complete scan's deletions are these ids, not "every link not in ``records``"."""
    unconfirmed: frozenset[str] = frozenset()
    """Linked ids missing from a scoped scan that were not read by id this time (more were
    missing than one cycle confirms): their absence proves nothing yet, but the mass-delete
    guard counts them with the deletes."""


@dataclass(frozen=True, slots=True)
class FieldPolicy:
    """One field's rules (CONTRACT §6): who may change it, who receives it, whether a
    clear counts, and how its conflicts are decided.  ``None`` means "as without a rule"."""

    sources: frozenset[str] | None = None
    """Only these systems' changes to the field are taken (people syncd already holds)."""
    targets: frozenset[str] | None = None
    """The field is written to, and read from, only these systems."""
    never_clear: bool = False
    """A system that empties the field does not empty it elsewhere: it gets it back."""
    conflict: ConflictPolicy | None = None
    priority: tuple[str, ...] | None = None


_NO_RULE = FieldPolicy()


@dataclass(frozen=True, slots=True)
class Policy:
    conflict: ConflictPolicy = ConflictPolicy.NEWEST
    priority: tuple[str, ...] = ()
    deletes: DeletePolicy = DeletePolicy.PROPAGATE
    max_delete_fraction: float = 0.2
    force_delete: bool = False
    default_region: str = "US"
    """Where a phone without a country code is read from, for first-sync matching."""
    fields: Mapping[str, FieldPolicy] = field(default_factory=dict)
    """Canonical field → its rules; a field without an entry has none."""

    def rank(self, system: str) -> tuple[int, str]:
        """Sort key: listed systems first in their order, then the rest by name."""
        try:
            return (self.priority.index(system), system)
        except ValueError:
            return (len(self.priority), system)

    def rule(self, name: str) -> FieldPolicy:
        return self.fields.get(name, _NO_RULE)

    def targets(self, system: str, name: str) -> bool:
        """``system`` holds ``name`` as far as syncd is concerned: it is read from there
        and written there.  Outside the targets a field is like one the system lacks."""
        targets = self.rule(name).targets
        return targets is None or system in targets

    def takes(self, system: str, name: str) -> bool:
        """``system``'s changes to ``name`` are taken (it is one of the field's sources)."""
        sources = self.rule(name).sources
        return sources is None or system in sources

    def conflict_for(self, name: str) -> ConflictPolicy:
        return self.rule(name).conflict or self.conflict

    def rank_for(self, name: str, system: str) -> tuple[int, str]:
        """:meth:`rank` by the field's own priority, when it has one."""
        priority = self.rule(name).priority
        if priority is None:
            return self.rank(system)
        try:
            return (priority.index(system), system)
        except ValueError:
            return (len(priority), system)

    def refuses(self, system: str, name: str, value: str, golden: str) -> str | None:
        """Why the field's rules refuse ``system``'s change of ``name`` to ``value`` for a
        person whose golden value is ``golden`` (``sources`` or ``never_clear``), or None.

        The caller asks only about real changes: a value equal to the golden one
        (normalised) changes nothing and is never refused.
        """
        rule = self.rule(name)
        if rule.sources is not None and system not in rule.sources:
            return "sources"
        if rule.never_clear and not value.strip() and golden.strip():
            return "never_clear"
        return None


@dataclass(frozen=True, slots=True)
class Conflict:
    golden_id: str
    field: str
    candidates: tuple[tuple[str, str, datetime], ...]
    """(system, value, when) for every side that changed the field."""
    winner: str
    value: str
    policy: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A system's change that a field policy refused: the golden value stands and is
    written back to that system."""

    golden_id: str
    system: str
    field: str
    value: str
    """The refused value, as the system holds it now."""
    golden: str
    """The value that stands."""
    reason: str
    """``sources`` (not one of the field's sources) or ``never_clear``."""


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Write:
    system: str
    golden_id: str
    action: Action
    org_id: str
    remote_id: str | None = None
    changed: Fields = field(default_factory=dict)
    desired: Fields = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    moved_from: tuple[str, str | None] | None = None
    """An organization move: (old parent id, old remote id).  An UPDATE that carries it
    moves the record to ``org_id`` (systems that ``can_move``); a CREATE that carries it
    is made under ``org_id`` after the old remote record is deleted (systems that cannot)."""

    def describe(self, who: str | None = None) -> str:
        """One line for messages; ``who`` names the person (``syncd.people``), else the id."""
        target = f"{self.system}/{self.remote_id}" if self.remote_id else self.system
        detail = ", ".join(sorted(self.changed)) if self.action is Action.UPDATE else ""
        if self.moved_from is not None:
            detail = ", ".join(x for x in (detail, f"moved from {self.moved_from[0]}") if x)
        person = who or f"person {self.golden_id}"
        return f"{self.action.value} {target} for {person}{': ' + detail if detail else ''}"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A write the planner will not send: it breaks the target's field limits."""

    system: str
    golden_id: str
    remote_id: str | None
    action: Action
    field: str
    reason: str

    def describe(self, who: str | None = None) -> str:
        """One line for messages; ``who`` names the person (``syncd.people``), else the id."""
        target = f"{self.system}/{self.remote_id}" if self.remote_id else self.system
        person = who or f"person {self.golden_id}"
        return f"{self.action.value} {target} for {person}: field {self.field}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Watermark:
    system: str
    cursor: datetime | None = None
    last_poll_at: datetime | None = None
    last_full_scan_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    token: str | None = None
    """An opaque change token the system hands out (CardDAV's sync token), if it has one."""


@dataclass(frozen=True, slots=True)
class Failure:
    system: str
    golden_id: str
    action: str
    remote_id: str | None
    attempts: int
    last_error: str
    desired_hash: str
    quarantined: bool
    next_retry_at: datetime | None
    updated_at: datetime
    unknown: bool = False
    """A create that may have landed (its answer was lost): not sent again before its
    system is read, where matching finds and links it if it did."""
