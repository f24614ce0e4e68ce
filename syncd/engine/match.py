"""First-sync matching: find the golden record an unlinked remote record belongs to.

Rules, in order, always within one organization and only among people that
have no live link in the record's system (a second record in the same system
is a different record, even if it looks alike; a person excluded from the
system by ``deletes = ignore`` and entered there again is matched and comes
back):

1. the same normalised email;
2. the same phone digits (phone or mobile) and the same last name.

Matching is what makes a create whose answer was lost harmless: the next
poll sees the new record and links it instead of creating it again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from syncd.contact import Fields, normalise
from syncd.model import Golden

__all__ = ["Matcher", "match_keys"]

MatchKey = tuple[str, str, str]


def match_keys(org: str, fields: Fields) -> list[MatchKey]:
    """The keys a record can be found by, strongest first."""
    keys: list[MatchKey] = []
    email = normalise("email", fields.get("email"))
    if email:
        keys.append((org, "email", email))
    last = normalise("last_name", fields.get("last_name")).casefold()
    if last:
        for name in ("phone", "mobile"):
            digits = normalise(name, fields.get(name))
            if len(digits) >= 6:
                keys.append((org, "phone", f"{digits}|{last}"))
    return keys


class Matcher:
    """An index of golden records by match key."""

    def __init__(self, goldens: Iterable[Golden]) -> None:
        self._index: dict[MatchKey, list[str]] = defaultdict(list)
        for golden in goldens:
            self.add(golden)

    def add(self, golden: Golden) -> None:
        if golden.deleted:
            return
        for key in match_keys(golden.org, golden.fields):
            self._index[key].append(golden.id)

    def find(
        self, org: str, fields: Fields, linked_in_system: set[str]
    ) -> tuple[str | None, list[MatchKey]]:
        """The first golden id matching ``fields`` that the system has no link to yet.

        Also returns the record's keys, so a caller that makes a new person
        of it can :meth:`add_keys` without computing them again.
        """
        keys = match_keys(org, fields)
        for key in keys:
            for gid in self._index.get(key, ()):
                if gid not in linked_in_system:
                    return gid, keys
        return None, keys

    def add_keys(self, gid: str, keys: list[MatchKey]) -> None:
        for key in keys:
            self._index[key].append(gid)
