"""The history's replay check, shared by the state machine and the history tests."""

from __future__ import annotations

import json

import sqlalchemy as sa

from syncd.contact import FIELDS
from syncd.store import Store
from syncd.store.repo import H

__all__ = ["replay_history"]


def replay_history(store: Store) -> None:
    """Replaying every kept change in id order from an empty record gives each golden
    record's current fields, organization and ``deleted`` flag; every change names a run."""
    replayed: dict[str, dict[str, str]] = {}
    with store.engine.connect() as conn:
        rows = [(gid, name, old, new) for gid, packed in conn.execute(
                    sa.select(H.c.golden_id, H.c.changes_json).order_by(H.c.id))
                for name, old, new, _source, _conflict in json.loads(packed)]
        runs = {int(r) for (r,) in conn.execute(sa.text("SELECT id FROM run"))}
        named = {int(r) for (r,) in conn.execute(sa.select(H.c.run_id).distinct())}
    assert named <= runs, ("changes naming a run that is not stored", sorted(named - runs))
    for gid, field, old, new in rows:
        record = replayed.setdefault(gid, {})
        assert record.get(field, "false" if field == "deleted" else "") == old, (gid, field, old)
        record[field] = new
    state = store.load_state()
    assert set(replayed) == set(state.goldens), "golden records without history, or history " \
        "without its golden record"
    for gid, golden in state.goldens.items():
        record = replayed[gid]
        fields = {f: record.get(f, "") for f in (*FIELDS, *golden.fields)}
        assert fields == {f: golden.fields.get(f, "") for f in fields}, gid
        assert record.get("organization", "") == golden.org, gid
        assert record.get("deleted", "false") == ("true" if golden.deleted else "false"), gid
