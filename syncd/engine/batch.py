"""Large cycles in batches: records kept compressed, people planned a group at a time.

A first sync of 100 000 people over five systems reads half a million
records, and matching them needs every golden record: held as Python objects
at once that is over a gigabyte.  Two things keep it small:

- :class:`Spool` holds a poll's records as compressed pages once there are
  many; iterating it unpacks one page at a time.
- :func:`split` puts the records and the stored people into groups that
  nothing can join across: a record's match keys, its link, and the golden id
  it would be given tie it to everything it could be matched with, and a
  union-find joins what is tied (:mod:`match` compares only records that share
  a key).  Each group then goes through the ordinary planner on its own,
  with only its people loaded, in the order the records were read, so the
  plan of a group is the plan the whole cycle would have made for those
  people.  Joining too much is harmless (a bigger group): keys are 64-bit
  digests, and a collision only merges two groups.

Deletions are the one thing a group cannot decide alone (the mass-delete
guard counts a system's deletions as a whole), so a cycle that deletes is
never split: :class:`Splitter` gives up and the cycle plans as one.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from syncd.contact import clean
from syncd.engine.match import KEY_FIELDS, match_keys
from syncd.engine.plan import golden_id_for
from syncd.engine.spool import PAGE, Spool
from syncd.model import Golden, Observation, RemoteRecord, SystemInfo

__all__ = ["Group", "Splitter"]

GROUP_PAGE = 250
"""Records per page of a group's spools: every group's spool of every system fills at
once, and each keeps up to a page as objects."""


def _node(*parts: str) -> int:
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, node: int) -> int:
        parent = self.parent
        root = node
        while (up := parent.get(root, root)) != root:
            root = up
        while node != root:  # path compression
            parent[node], node = root, parent.get(node, node)
        return root

    def join(self, nodes: Sequence[int]) -> int:
        root = self.find(nodes[0])
        for other in nodes[1:]:
            top = self.find(other)
            if top != root:
                self.parent[top] = root
        return root


@dataclass
class Group:
    """Some people, and every record of this cycle that touches them."""

    observations: list[Observation]
    people: set[str] = field(default_factory=set)
    """Stored people in the group: their golden records and links are to be loaded."""

    def records(self) -> int:
        return sum(len(o.records) for o in self.observations)


class Splitter:
    """Splits one cycle's observations into :class:`Group` s of about ``size`` records.

    ``linked(system, remote_ids)`` and ``existing(golden_ids)`` ask the store;
    ``goldens`` streams every stored person (the whole set takes part: a person
    no record touches still needs its writes derived).  :meth:`split` returns
    None when the cycle deletes something: then it is planned whole.
    """

    def __init__(
        self,
        systems: Mapping[str, SystemInfo],
        region: str,
        *,
        linked: Callable[[str, Sequence[str]], Mapping[str, str]],
        existing: Callable[[Sequence[str]], set[str]],
        goldens: Callable[[], Iterable[Golden]],
        known_ids: Callable[[str], Iterable[str]],
    ) -> None:
        self.systems = systems
        self.region = region
        self.linked = linked
        self.existing = existing
        self.goldens = goldens
        self.known_ids = known_ids

    def split(self, observations: Sequence[Observation], size: int) -> list[Group] | None:
        sets = _UnionFind()
        reps: list[array[int]] = []
        for obs in observations:
            got = self._tie(obs, sets)
            if got is None:
                return None
            reps.append(got)
        stored: list[tuple[str, int]] = []
        for golden in self.goldens():
            node = _node("gid", golden.id)
            nodes = [node]
            if not golden.deleted:
                nodes += [_node(*key) for key in match_keys(golden.org, golden.fields, self.region)]
            sets.join(nodes)
            stored.append((golden.id, node))
        total = sum(len(o.records) for o in observations) + len(stored)
        count = max(1, -(-total // max(1, size)))
        # Small pages: every group's spool of every system fills at once.
        spools = [[Spool(page=GROUP_PAGE) for _ in observations] for _ in range(count)]
        for o_index, (obs, obs_reps) in enumerate(zip(observations, reps, strict=True)):
            # The poll's own spool is let go page by page as its records move.
            source = obs.records.drain() if isinstance(obs.records, Spool) else obs.records
            for rec, rep in zip(source, obs_reps, strict=True):
                spools[sets.find(rep) % count][o_index].append(rec)
        groups = []
        for own in spools:
            for spool in own:
                spool.seal()
            groups.append(Group([replace(o, records=spool, unlisted=_unlisted(o))
                                 for o, spool in zip(observations, own, strict=True)]))
        for gid, node in stored:
            groups[sets.find(node) % count].people.add(gid)
        return [g for g in groups if g.people or g.records()]

    def _tie(self, obs: Observation, sets: _UnionFind) -> array[int] | None:
        """Join each record of ``obs`` to what it may be matched with; its node per record.
        None if the observation deletes something."""
        info = self.systems[obs.system]
        # The fields match keys are made of, as the planner cleans them (the rest: "").
        keyed = sorted(KEY_FIELDS & info.capabilities.fields)
        reps: array[int] = array("Q")
        listed: set[str] = set()
        page: list[RemoteRecord] = []

        def tie(page: list[RemoteRecord]) -> bool:
            rids = [r.remote_id for r in page if r.remote_id.strip()]
            gids = self.linked(obs.system, rids)
            firsts = {r.remote_id: golden_id_for(obs.system, r.remote_id)
                      for r in page if r.remote_id.strip() and r.remote_id not in gids}
            taken = _taken(obs.system, firsts, self.existing)
            for n, rec in enumerate(page):
                rid = rec.remote_id
                if not rid.strip():
                    reps.append(_node("invalid", obs.system, str(len(reps))))
                    continue
                listed.add(rid)
                gid = gids.get(rid)
                if rec.deleted:
                    if gid is not None:
                        return False  # a tombstone of a linked record: a deletion
                    reps.append(_node("record", obs.system, rid, str(n)))
                    continue
                nodes = [_node("gid", gid)] if gid is not None else []
                org = info.org_map.get(rec.org_id)
                if gid is None and org is not None:
                    nodes += [_node("gid", g) for g in taken.get(rid, ())]
                    nodes += [_node(*key) for key in
                              match_keys(org, clean(rec.fields, keyed), self.region)]
                if not nodes:
                    nodes = [_node("record", obs.system, rid)]
                reps.append(sets.join(nodes) if len(nodes) > 1 else nodes[0])
            return True

        for rec in obs.records:
            page.append(rec)
            if len(page) >= PAGE:
                if not tie(page):
                    return None
                page = []
        if page and not tie(page):
            return None
        if obs.complete:
            if obs.unlisted is not None:
                if obs.unlisted - listed:
                    return None
            elif any(rid not in listed for rid in self.known_ids(obs.system)):
                return None
        return reps


def _unlisted(obs: Observation) -> frozenset[str] | None:
    """A complete scan of a split cycle missed no linked record (else it is not split)."""
    return frozenset() if obs.complete else None


def _taken(system: str, firsts: Mapping[str, str],
           existing: Callable[[Sequence[str]], set[str]]) -> dict[str, list[str]]:
    """The stored golden ids the planner would skip over to name a new person made of
    each record (``golden_id_for`` again while the id is taken): the record must be
    planned with them, or the new person could take a stored person's id."""
    taken: dict[str, list[str]] = {}
    ask = dict(firsts)
    while ask:
        found = existing(sorted(set(ask.values())))
        ask = {rid: gid for rid, gid in ask.items() if gid in found}
        for rid, gid in ask.items():
            taken.setdefault(rid, []).append(gid)
        ask = {rid: golden_id_for(system, gid) for rid, gid in ask.items()}
    return taken
