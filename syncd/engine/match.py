"""First-sync matching: find the golden record an unlinked remote record belongs to.

Rules, in order, always within one organization and only among people that
have no live link in the record's system (a second record in the same system
is a different record, even if it looks alike; a person excluded from the
system by ``deletes = ignore`` and entered there again is matched and comes
back):

1. the same normalised email — when several people share it (a team's
   ``accounts@`` address), only the one whose name agrees; a lone candidate
   whose first *and* last names both contradict the record is no match either;
2. the same phone (phone or mobile, compared in E.164 with the configured
   default region; digits when it does not parse) and the same last name, and
   a first name that agrees — equal, or one is the other's initial — so family
   members sharing a landline do not merge;
3. for a record with neither email nor phone: the same full name, when exactly
   one person of the organization bears it.

A key that leaves several candidates after these checks is no match: a
duplicate can be merged by a person, a cross-link silently rewrites someone.

Matching is what makes a create whose answer was lost harmless: the next
poll sees the new record and links it instead of creating it again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Iterable

from syncd.contact import Fields, normalise, phone_e164
from syncd.model import Golden

__all__ = ["KEY_FIELDS", "Matcher", "first_names_agree", "match_keys"]

MatchKey = tuple[str, str, str]


def _name(fields: Fields, field: str) -> str:
    return normalise(field, fields.get(field)).casefold().replace(".", "").strip()


def first_names_agree(a: str, b: str) -> bool:
    """Equal, or one is the other's initial ("A." and "Ada"); both must be known."""
    a, b = a.casefold().replace(".", "").strip(), b.casefold().replace(".", "").strip()
    if not a or not b:
        return False
    if a == b:
        return True
    return (len(a) == 1 and b.startswith(a)) or (len(b) == 1 and a.startswith(b))


KEY_FIELDS = frozenset({"email", "first_name", "last_name", "phone", "mobile"})
"""The only fields :func:`match_keys` reads."""


def match_keys(org: str, fields: Fields, region: str = "US") -> list[MatchKey]:
    """The keys a record can be found by, strongest first."""
    keys: list[MatchKey] = []
    email = normalise("email", fields.get("email"))
    if email:
        keys.append((org, "email", email))
    last = _name(fields, "last_name")
    if last:
        for name in ("phone", "mobile"):
            phone = phone_e164(fields.get(name) or "", region)
            if phone:
                keys.append((org, "phone", f"{phone}|{last}"))
        first = _name(fields, "first_name")
        if first:
            keys.append((org, "name", f"{first}|{last}"))
    return keys


class Matcher:
    """An index of golden records by match key."""

    def __init__(self, goldens: Iterable[Golden], region: str = "US") -> None:
        self.region = region
        self._index: dict[MatchKey, list[str]] = defaultdict(list)
        self._names: dict[str, tuple[str, str]] = {}
        for golden in goldens:
            self.add(golden)

    def add(self, golden: Golden) -> None:
        if golden.deleted:
            return
        self.add_keys(golden.id, match_keys(golden.org, golden.fields, self.region),
                      golden.fields)

    def _agrees(self, gid: str, first: str, last: str, *, strict: bool) -> bool:
        g_first, g_last = self._names.get(gid, ("", ""))
        if strict:
            return last == g_last and first_names_agree(first, g_first)
        # Lenient (a lone email candidate): no match only when both names contradict.
        firsts_clash = bool(first and g_first) and not first_names_agree(first, g_first)
        lasts_clash = bool(last and g_last) and last != g_last
        return not (firsts_clash and lasts_clash)

    def find(
        self, org: str, fields: Fields, linked_in_system: Container[str]
    ) -> tuple[str | None, list[MatchKey]]:
        """The one golden id matching ``fields`` that the system has no link to yet.

        Also returns the record's keys, so a caller that makes a new person
        of it can :meth:`add_keys` without computing them again.
        """
        keys = match_keys(org, fields, self.region)
        first, last = _name(fields, "first_name"), _name(fields, "last_name")
        name_only = all(kind == "name" for _, kind, _ in keys)
        for key in keys:
            _, kind, _ = key
            everyone = self._index.get(key, ())
            if kind == "name":
                # Only for a record with nothing better, and only if the name is unique.
                if not name_only or len(set(everyone)) != 1:
                    continue
                candidates = [g for g in everyone if g not in linked_in_system]
            else:
                candidates = list(dict.fromkeys(g for g in everyone if g not in linked_in_system))
                if kind == "phone" or len(candidates) > 1:
                    candidates = [g for g in candidates if self._agrees(g, first, last, strict=True)]
                else:
                    candidates = [g for g in candidates if self._agrees(g, first, last, strict=False)]
            if len(candidates) == 1:
                return candidates[0], keys
        return None, keys

    def add_keys(self, gid: str, keys: list[MatchKey], fields: Fields | None = None) -> None:
        if fields is not None:
            self._names[gid] = (_name(fields, "first_name"), _name(fields, "last_name"))
        for key in keys:
            self._index[key].append(gid)
