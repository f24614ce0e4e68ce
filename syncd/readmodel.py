"""The console's view of the store: the read side's documents, kept per store revision.

Loading 100 000 people and deriving what every system owes takes seconds; a
page must answer in milliseconds.  The store counts its write transactions
(``store_revision``), so one cheap query says whether the last snapshot still
holds: the costly part is rebuilt only after something was written (a cycle,
an operator's action), and everything small (watermarks, failures, runs) is
read fresh for every page.

Search runs over an index of every person's name, email, phones and remote ids
built with the snapshot, so ``/people?q=`` needs no SQL ``LIKE`` (and no index
migration): a scan of 100 000 short strings in memory is a few milliseconds.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncd import readside
from syncd.config import Settings
from syncd.connectors.base import Connector
from syncd.logs import get_logger
from syncd.people import Person
from syncd.readside import Snapshot
from syncd.store.repo import Store
from syncd.store.views import drop_failures, retry_failures, use_conflict_value

__all__ = ["Directory", "ReadModel"]

log = get_logger("syncd.readmodel")
_PHONE_FIELDS = ("phone", "mobile", "fax")
_NOT_DIGITS = re.compile(r"\D")


@dataclass(frozen=True)
class Directory:
    """Everyone, as search text: ``(person id, name + email, phone digits)``, in id order."""

    ids: Sequence[str]
    words: Sequence[str]
    digits: Sequence[str]
    remote: Mapping[str, Mapping[str, str]]
    """system → remote id → person id."""

    @classmethod
    def of(cls, snap: Snapshot) -> Directory:
        ids, words, digits = [], [], []
        for p in snap.people:
            golden = snap.state.goldens.get(p.id)
            fields = golden.fields if golden else {}
            ids.append(p.id)
            words.append(f"{p.name}\n{p.email}".casefold())
            digits.append(" ".join(_NOT_DIGITS.sub("", fields.get(f, "")) for f in _PHONE_FIELDS))
        return cls(ids, words, digits, snap.state.index())

    def find(self, query: str, limit: int = 50) -> tuple[list[str], int]:
        """The people ``query`` may mean, and how many there are in all (``limit`` listed).

        A person id (or a prefix of 6+ characters), ``system:remote id`` or a bare
        remote id match exactly; otherwise a part of a name or email, or (for a
        query of 4+ digits) a part of a phone number.
        """
        text = query.strip()
        if not text:
            return [], 0
        exact: list[str] = []
        system, sep, rid = text.partition(":")
        if sep and system.strip() in self.remote:
            gid = self.remote[system.strip()].get(rid.strip())
            exact = [gid] if gid else []
        else:
            exact = [by[text] for by in self.remote.values() if text in by]
            if len(text) >= 6 and re.fullmatch(r"[0-9a-fA-F]+", text):
                low = text.lower()
                exact += [gid for gid in self.ids if gid.startswith(low)]
        hits = list(dict.fromkeys(exact))
        seen = set(hits)
        low = text.casefold()
        wanted = _NOT_DIGITS.sub("", text)
        phone = len(wanted) >= 4 and not re.search(r"[^\d\s+().-]", text)
        total = len(hits)
        for i, words in enumerate(self.words):
            if low in words or (phone and wanted in self.digits[i]):
                gid = self.ids[i]
                if gid in seen:
                    continue
                total += 1
                if len(hits) < limit:
                    hits.append(gid)
        return hits[:limit], total


class ReadModel:
    """What the console shows and does, through the read side and the store's own actions."""

    def __init__(self, settings: Settings, store: Store, connectors: Mapping[str, Connector],
                 clock: Callable[[], datetime] | None = None, *, background: bool = True) -> None:
        self.settings = settings
        self.store = store
        self.connectors = connectors
        self.clock = clock or (lambda: datetime.now(UTC))
        self.background = background
        """Rebuild after a write in the background (the console); False: every read waits."""
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._building: threading.Thread | None = None
        self._cached: tuple[int, Snapshot, Directory] | None = None

    def _current(self) -> tuple[Snapshot, Directory]:
        """The snapshot of the store's revision; while a newer one is built, the last one.

        Only the very first page waits for a build.  After a write (a cycle, an
        operator's action) the build runs in the background and pages go on
        answering from the previous snapshot meanwhile: at 100 000 people a build
        takes seconds.  What an action changes at once (the failures, the runs) is
        read fresh on every page anyway.
        """
        revision = self.store.revision()
        with self._lock:
            cached = self._cached
            if cached is not None and cached[0] == revision:
                return cached[1], cached[2]
            if cached is not None and self.background:
                if self._building is None or not self._building.is_alive():
                    self._building = threading.Thread(target=self._rebuild, args=(revision,),
                                                      name="syncd-readmodel", daemon=True)
                    self._building.start()
                return cached[1], cached[2]
        built = self._build(revision)
        return built[1], built[2]

    def _build(self, revision: int) -> tuple[int, Snapshot, Directory]:
        with self._build_lock:
            cached = self._cached
            if cached is not None and cached[0] >= revision:
                return cached
            snap = readside.snapshot(self.settings, self.store.load_state(), self.connectors)
            snap.people(next(iter(snap.state.goldens), ""))  # build the id index now
            built = (revision, snap, Directory.of(snap))
            with self._lock:
                self._cached = built
            return built

    def _rebuild(self, revision: int) -> None:
        try:
            self._build(revision)
        except Exception as exc:  # the next page tries again; this one keeps the last snapshot
            log.error("readmodel_rebuild_failed", error=str(exc))

    def snapshot(self) -> Snapshot:
        return self._current()[0]

    # -- reading ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return readside.status(self.settings, self.store, self.connectors, self.snapshot(),
                               now=self.clock(), with_health=True)

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        return readside.runs(self.store, limit)

    def errors(self, golden_id: str | None = None) -> list[dict[str, Any]]:
        return readside.quarantine_rows(self.store, self.snapshot().people, golden_id=golden_id)

    def conflicts(self, limit: int = 200) -> list[dict[str, Any]]:
        return readside.conflict_rows(self.store.conflicts(limit=limit), self.snapshot().people)

    def card(self, who: Person) -> dict[str, Any]:
        """A person's fields as every JSON answer carries them (CONTRACT §5)."""
        golden = self.snapshot().state.goldens.get(who.id)
        return {**who.as_dict(), "label": who.label(), "organization": golden.org if golden else None,
                "deleted": who.deleted}

    def search(self, query: str, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
        snap, directory = self._current()
        gids, total = directory.find(query, limit)
        return [self.card(snap.people(gid)) for gid in gids], total

    def known(self, gid: str) -> bool:
        state = self.snapshot().state
        return gid in state.goldens

    def person(self, gid: str) -> dict[str, Any] | None:
        """``show --json`` for one person, or None for an id the store does not know."""
        snap = self.snapshot()
        if gid not in snap.state.goldens:
            return None
        doc = readside.person(self.settings, self.store, self.connectors, snap.state, snap.people,
                              gid)
        doc["organization"] = snap.state.goldens[gid].org
        return doc

    def history(self, gid: str) -> list[dict[str, Any]] | None:
        return readside.history(self.store, gid)

    # -- acting (the store only; the next cycle pushes) ---------------------------------------

    def retry(self, ids: Sequence[int]) -> list[int]:
        return retry_failures(self.store, ids)

    def drop(self, ids: Sequence[int]) -> list[int]:
        return drop_failures(self.store, ids)

    def use_value(self, conflict_id: int, system: str) -> dict[str, str] | None:
        """"Use this value instead": an operator change of the golden field (CONTRACT §7)."""
        return use_conflict_value(self.store, conflict_id, system)

    def undo(self, *, changes: Sequence[int] = (), run: int | None = None) -> dict[str, Any]:
        return readside.undo(self.store, changes=changes, run=run)
