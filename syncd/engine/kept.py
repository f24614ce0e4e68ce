"""Matching when a field policy keeps a match key field from some systems (pure).

First-sync matching decides who is who, and field policies must not change
that (CONTRACT §6).  But ``targets`` changes what the two sides hold:

* a person's golden record may lack a key field (email, phone, names) that
  the systems outside its targets hold — :func:`identities` lends matching
  those values from the links;
* the record syncd creates in a system outside a key field's targets lacks
  it, so if the create's answer is lost the next poll may have nothing to
  match it by (a person known by name alone, or sharing a name).
  :class:`Created` finds it by its whole content instead: an unlinked record
  equal to what syncd would create there for exactly one person not yet
  linked there.

Both apply only when some key field has ``targets``: without, matching is
exactly :mod:`syncd.engine.match`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Iterable, Mapping
from dataclasses import replace

from syncd.contact import normalise
from syncd.engine.match import KEY_FIELDS
from syncd.model import Golden, Link, LinkKey, Policy, SystemInfo

__all__ = ["Created", "identities", "keeps_keys"]


def keeps_keys(policy: Policy) -> bool:
    """Some match key field has ``targets``: matching needs the help of this module."""
    return any(policy.rule(f).targets is not None for f in KEY_FIELDS)


def identities(goldens: Iterable[Golden], links: Mapping[LinkKey, Link],
               systems: Iterable[str], policy: Policy) -> list[Golden]:
    """The people as matching sees them: a key field empty in the golden record because
    of ``targets`` is taken from the first link (by system name) that holds it."""
    kept = sorted(f for f in KEY_FIELDS if policy.rule(f).targets is not None)
    names = sorted(systems)
    people: list[Golden] = []
    for golden in goldens:
        fields = dict(golden.fields)
        for name in kept:
            if not fields.get(name):
                fields[name] = next(
                    (held for s in names
                     if (link := links.get((golden.id, s))) is not None
                     and not link.excluded and (held := link.fields.get(name, ""))), "")
        people.append(replace(golden, fields=fields) if fields != golden.fields else golden)
    return people


class Created:
    """Per system, the people by the content syncd would create for them there."""

    def __init__(self, goldens: Mapping[str, Golden], systems: Mapping[str, SystemInfo],
                 policy: Policy) -> None:
        self.goldens = goldens
        self.systems = systems
        self.policy = policy
        self._index: dict[str, dict[tuple[str, tuple[str, ...]], list[str]]] = {}

    def _shape(self, system: str, fields: Mapping[str, str], *, golden: bool) -> tuple[str, ...]:
        names = sorted(self.systems[system].capabilities.fields)
        return tuple(
            normalise(f, fields.get(f, "")
                      if not golden or self.policy.targets(system, f) else "")
            for f in names
        )

    def find(self, system: str, org: str, values: Mapping[str, str],
             linked: Container[str]) -> str | None:
        """The one person whose create in ``system`` would be exactly ``values`` and who
        has no link there yet (``linked``), or None."""
        index = self._index.get(system)
        if index is None:
            index = defaultdict(list)
            for golden in self.goldens.values():
                if not golden.deleted:
                    shape = self._shape(system, golden.fields, golden=True)
                    if any(shape):
                        index[(golden.org, shape)].append(golden.id)
            self._index[system] = index
        shape = self._shape(system, values, golden=False)
        found = [g for g in index.get((org, shape), ()) if g not in linked]
        return found[0] if len(found) == 1 else None
