"""Who a person is, for an operator: display name, email and each system's id.

The store keys people by an opaque id (``34a7bff39db2…``) that means nothing
to whoever reads a quarantine list or a failed write at 3 a.m.  Everything an
operator sees names a person the same way::

    Ada Lovelace <ada@acme.example> (harvest 1001, logisense 1871)

and ``--json`` carries the same as fields next to the person id.  This module
is pure (it reads a :class:`~syncd.model.State`, nothing else), so the engine
can name people in its log events and the CLI in its tables without either
depending on the other.

It also finds people by what an operator knows of them (``syncd show QUERY``,
``quarantine retry --person QUERY``): an email, a name, ``system:remote id``
or the person id itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from syncd.contact import Fields
from syncd.model import Action, State, Write

__all__ = ["People", "Person", "changes", "describe_write", "format_changes"]

ARROW = "→"


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    name: str
    email: str
    ids: Mapping[str, str] = field(default_factory=dict)
    """system → remote id, in system order."""
    deleted: bool = False

    def label(self) -> str:
        """``Ada Lovelace <ada@acme.example> (harvest 1001, logisense 1871)``.

        A person with neither name nor email (a record with only a phone) is
        named by a short person id, which ``syncd show`` accepts as a prefix.
        """
        head = " ".join(x for x in (self.name, f"<{self.email}>" if self.email else "") if x)
        if not head:
            head = f"person {self.id[:12]}"
        ids = ", ".join(f"{system} {rid}" for system, rid in self.ids.items())
        return f"{head} ({ids})" if ids else head

    def as_dict(self) -> dict[str, Any]:
        """The label's parts, for ``--json``: a script need not parse the label."""
        return {"person": self.id, "name": self.name, "email": self.email, "ids": dict(self.ids)}


def _name(fields: Mapping[str, str]) -> str:
    return " ".join(v.strip() for v in (fields.get("first_name", ""), fields.get("last_name", ""))
                    if v and v.strip())


class People:
    """Names the people of one state; the per-person id index is built on first use.

    Built lazily because the engine makes one per cycle but needs it only
    when something goes wrong (a rejected or failed write).
    """

    def __init__(self, state: State) -> None:
        self.state = state
        self._ids: dict[str, dict[str, str]] | None = None
        self._linked: dict[str, list[Fields]] | None = None

    def _index(self) -> tuple[dict[str, dict[str, str]], dict[str, list[Fields]]]:
        if self._ids is None or self._linked is None:
            ids: dict[str, dict[str, str]] = {}
            linked: dict[str, list[Fields]] = {}
            for (gid, system), link in sorted(self.state.links.items()):
                if link.remote_id is not None:
                    ids.setdefault(gid, {})[system] = link.remote_id
                linked.setdefault(gid, []).append(dict(link.fields))
            self._ids, self._linked = ids, linked
        return self._ids, self._linked

    def __call__(self, gid: str) -> Person:
        ids, linked = self._index()
        golden = self.state.goldens.get(gid)
        sources = ([dict(golden.fields)] if golden else []) + linked.get(gid, [])
        name = next((n for n in map(_name, sources) if n), "")
        email = next((f.get("email", "").strip() for f in sources if f.get("email", "").strip()), "")
        return Person(gid, name, email, ids.get(gid, {}), bool(golden and golden.deleted))

    def label(self, gid: str) -> str:
        return self(gid).label()

    def __iter__(self) -> Iterator[Person]:
        gids = set(self.state.goldens) | {gid for gid, _ in self.state.links}
        return (self(gid) for gid in sorted(gids))

    def find(self, query: str) -> list[Person]:
        """Everyone the query may mean, best kind of match first.

        Tried in order, the first kind that matches wins: the person id (or a
        prefix of at least 6 characters), ``system:remote id``, an email
        (case-insensitive), an exact name, then a part of a name or email.
        """
        text = query.strip()
        if not text:
            return []
        everyone = list(self)
        known = {gid for gid, _ in self.state.links} | set(self.state.goldens)
        if text in known:
            return [self(text)]
        if len(text) >= 6:
            prefixed = [p for p in everyone if p.id.startswith(text.lower())]
            if prefixed:
                return prefixed
        system, sep, remote = text.partition(":")
        if sep:
            hits = [p for p in everyone if p.ids.get(system.strip()) == remote.strip()]
            if hits:
                return hits
        low = text.casefold()
        for match in (
            lambda p: p.email.casefold() == low,
            lambda p: p.name.casefold() == low,
            lambda p: low in p.name.casefold() or low in p.email.casefold(),
        ):
            hits = [p for p in everyone if match(p)]
            if hits:
                return hits
        return []


def changes(write: Write, before: Fields | None) -> dict[str, dict[str, str | None]]:
    """Per field: what the system holds now and what it will hold (``None``: no value).

    ``before`` is the system's link (what it held at the last sync).  A create
    has no old values, a delete no new ones.
    """
    old = dict(before or {})
    if write.action is Action.CREATE:
        return {f: {"old": None, "new": v} for f, v in sorted(write.desired.items()) if v}
    if write.action is Action.DELETE:
        return {f: {"old": v, "new": None} for f, v in sorted(old.items()) if v}
    return {f: {"old": old.get(f) or None, "new": v or None} for f, v in sorted(write.changed.items())}


def format_changes(diff: Mapping[str, Mapping[str, str | None]]) -> list[str]:
    """``phone: +1 555 0100 → +1 555 9999``, one line per field."""
    def show(value: str | None) -> str:
        return repr(value) if value is not None and value != value.strip() else (value or "(empty)")

    return [f"{f}: {show(d['old'])} {ARROW} {show(d['new'])}" for f, d in diff.items()]


def describe_write(write: Write, people: People | None) -> dict[str, Any]:
    """One planned or failed write as ``--json`` carries it, person named, values shown."""
    before = people.state.links.get((write.golden_id, write.system)) if people else None
    person = people(write.golden_id) if people else Person(write.golden_id, "", "")
    doc: dict[str, Any] = {
        "system": write.system,
        "action": write.action.value,
        "remote_id": write.remote_id,
        **person.as_dict(),
        "label": person.label(),
        "changes": changes(write, before.fields if before else None),
        "text": write.describe(person.label()),
    }
    if write.moved_from is not None:
        doc["moved_from"] = write.moved_from[0]
        doc["org_id"] = write.org_id
    return doc
