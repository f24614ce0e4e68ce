"""The state kept in memory between cycles, and how a cycle knows it is still true.

A daemon's quiet incremental cycle should cost a few small queries, not a pass
over every person: the state the last cycle ended with is kept, keyed on the
store revision of the cycle's last own write.  It is true as long as nobody
else wrote since, which :class:`OwnWrites` tells from the revisions that
:meth:`Store.transaction <syncd.store.repo.Store.transaction>` hands back.
"""

from __future__ import annotations

from collections.abc import Iterable

from syncd.engine.push import PushOutcome
from syncd.model import State

__all__ = ["OwnWrites", "StateCache"]


class OwnWrites:
    """The store revisions one cycle committed, from the revision it began at."""

    def __init__(self, start: int) -> None:
        self.start = start
        self._revisions: list[int] = []

    def add(self, revisions: Iterable[int]) -> None:
        self._revisions.extend(revisions)

    @property
    def last(self) -> int:
        """The store's revision after the cycle's own last write."""
        return max(self._revisions, default=self.start)

    def foreign(self) -> bool:
        """Whether someone else wrote since the cycle began: its own writes are not the
        unbroken run of revisions after the one it began at."""
        mine = sorted(self._revisions)
        return mine != list(range(self.start + 1, self.start + 1 + len(mine)))


class StateCache:
    """The whole state and the unsettled people, as of one store revision."""

    def __init__(self) -> None:
        self._kept: tuple[int, State, set[str]] | None = None

    def get(self, revision: int) -> tuple[State, set[str]] | None:
        """The kept state and unsettled people, if the store is still at ``revision``."""
        kept = self._kept
        if kept is not None and kept[0] == revision:
            return kept[1], set(kept[2])
        return None

    def drop(self) -> None:
        self._kept = None

    def moved(self, writes: OwnWrites) -> None:
        """The cycle wrote again (its run row): keep the state under the new revision, or
        drop it if someone else wrote meanwhile."""
        if self._kept is None:
            return
        if writes.foreign():
            self._kept = None
        else:
            self._kept = (writes.last, self._kept[1], self._kept[2])

    def keep(self, planned: State, outcome: PushOutcome, unsettled: set[str],
             writes: OwnWrites) -> None:
        """The planned state with the push's links applied, unless someone else wrote."""
        if writes.foreign():
            return
        links = planned.links
        index = planned.index()
        if outcome.links or outcome.removed:
            # The planner may have handed on the previous state's dicts untouched
            # (copy-on-write): copy before changing.
            links = dict(links)
            index = {system: dict(ids) for system, ids in index.items()}
        assert isinstance(links, dict)
        for key, link in outcome.links.items():
            old = links.get(key)
            if old is not None and old.remote_id not in (None, link.remote_id):
                index.get(old.system, {}).pop(old.remote_id, None)  # re-created or moved
            links[key] = link
            if link.remote_id is not None:
                index.setdefault(link.system, {})[link.remote_id] = link.golden_id
        for key in outcome.removed:
            gone = links.pop(key, None)
            if gone is not None and gone.remote_id is not None:
                index.get(gone.system, {}).pop(gone.remote_id, None)
        state = State(goldens=planned.goldens, links=links, remote_index=index)
        self._kept = (writes.last, state, unsettled)
