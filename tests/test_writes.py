"""What each system still has to receive (``syncd.engine.writes.derive_writes``).

Golden record against link: the changed fields and the desired record of each
write, what a field policy keeps out of it, and the writes refused before
sending (a value past a field limit, an invalid email) — one write rejected,
the others sent.  Cycles over memory systems around a real store
(``tests.world``, SQLite and Postgres), and a pure call of :func:`derive_writes`.
"""

from __future__ import annotations

import pytest

from syncd.connectors.base import FieldLimit
from syncd.store import Store
from tests.world import ADA, BOB, make_world, names


def test_field_limit_rejects_that_write_only(store: Store) -> None:
    world = make_world(store, ("a", "b"))
    world.systems["b"].limits = {"job_title": FieldLimit(max_length=10)}
    world.systems["a"].add("org-a", {**ADA, "job_title": "Director of Analytical Engines"})
    world.systems["a"].add("org-a", BOB)
    report = world.cycle()
    assert report.exit_code == 1
    (rej,) = report.rejections
    assert rej.system == "b" and rej.field == "job_title" and "limit is 10" in rej.reason
    world.find("b", "bob@example.com")
    with pytest.raises(KeyError):
        world.find("b", "ada@example.com")
    assert "job_title" in world.store.failures(quarantined=True)[0].last_error


def test_d9_an_invalid_email_is_rejected_before_sending(store: Store) -> None:
    world = make_world(store, ("a", "b"))
    world.systems["a"].add("org-a", {**ADA, "email": "ada at example"})
    world.systems["a"].add("org-a", {**ADA, "first_name": "Bob", "email": "bob@example.com"})
    report = world.cycle()
    assert report.exit_code == 1
    (rej,) = report.rejections
    assert rej.system == "b" and rej.field == "email" and "email" in rej.reason
    assert names(world, "b") == ["Bob Lovelace"]
    assert world.systems["b"].writes == 1


def test_a_joined_name_keeps_the_systems_own_part_outside_the_targets() -> None:
    """Lightening writes ``name`` = first + last from the write's ``desired``: with the last
    name kept from it, a new first name goes with Lightening's own last name."""
    from syncd.connectors.lightening import LighteningConnector
    from syncd.engine.writes import derive_writes
    from syncd.model import FieldPolicy, Golden, Link, Policy, State, SystemInfo

    info = SystemInfo("lightening", LighteningConnector.capabilities, {"1": "acme"})
    fields = dict.fromkeys(LighteningConnector.capabilities.fields, "")
    golden = Golden("g1", "acme", {**fields, "first_name": "Augusta", "last_name": "Lovelace"})
    held = {**fields, "first_name": "Ada", "last_name": "Byron"}
    state = State({"g1": golden}, {("g1", "lightening"): Link("lightening", "g1", "7", "1", held)})
    policy = Policy(fields={"last_name": FieldPolicy(targets=frozenset({"harvest"}))})
    (write,), _ = derive_writes(state, [info], policy=policy)
    assert write.changed == {"first_name": "Augusta"}
    assert (write.desired["first_name"], write.desired["last_name"]) == ("Augusta", "Byron")
    (plain,), _ = derive_writes(state, [info])  # without the policy both go
    assert plain.changed == {"first_name": "Augusta", "last_name": "Lovelace"}
