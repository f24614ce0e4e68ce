"""Matching (``syncd.engine.match``): which records are one person on a first sync.

The match keys themselves (email case and spaces never matter), then first
syncs over memory systems around a real store (``tests.world``, SQLite and
Postgres): the same person on two systems is linked, not duplicated — by
email, by phone and last name, by a phone in another format — and people
who share an email or a landline are not cross-linked.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given

from syncd.contact import normalise
from syncd.engine.match import match_keys
from syncd.store import Store
from tests.world import ADA, BOB, World, make_world, seed, world

__all__ = ["world"]  # the fixture, for pytest


@given(value=st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.[a-z]{2,3}", fullmatch=True),
       pad=st.sampled_from(["", " ", "  ", "\t"]))
def test_email_case_and_spaces_never_matter(value: str, pad: str) -> None:
    assert normalise("email", pad + value.upper() + pad) == normalise("email", value)
    assert match_keys("acme", {"email": value.upper()}) == match_keys("acme", {"email": value})


def test_first_sync_same_person_on_two_systems_linked_not_duplicated(world: World) -> None:
    world.systems["a"].add("org-a", ADA)
    world.systems["b"].add("org-b", {**ADA, "email": "ADA@Example.com", "phone": "",
                                     "job_title": "Countess"})
    world.systems["b"].add("org-b", {"first_name": "Ada", "last_name": "Lovelace",
                                     "phone": "020 7946 0000"})  # no email: matched by phone+name? no
    world.cycle()
    assert len(world.people("a")) == 2
    assert len([p for p in world.people("b") if p["email"].lower() == "ada@example.com"]) == 1
    a_ada = world.find("a", "ada@example.com")[1]
    assert a_ada["job_title"] == "Countess"          # value from b kept
    assert a_ada["phone"] == "+44 20 7946 0000"       # b's empty phone cleared nothing
    assert world.cycle().writes == 0


def test_first_sync_matches_by_phone_and_last_name(world: World) -> None:
    world.systems["a"].add("org-a", {"first_name": "Ada", "last_name": "Lovelace",
                                     "phone": "+44 (20) 7946-0000"})
    world.systems["b"].add("org-b", {"first_name": "A.", "last_name": "LOVELACE",
                                     "phone": "+44 20 7946 0000", "email": "ada@example.com"})
    world.cycle()
    assert len(world.people("a")) == 1 and len(world.people("b")) == 1
    assert len(world.people("c")) == 1


def test_person_excluded_by_ignore_and_entered_again_is_matched_not_duplicated(
    store: Store,
) -> None:
    world = make_world(store, ("a", "b"), sync={"deletes": "ignore",
                                                      "max_delete_fraction": 1.0})
    ids = seed(world, ADA, BOB)
    world.systems["a"].remove(ids[0])
    world.cycle()
    world.systems["a"].add("org-a", {**ADA, "job_title": "Back again"})
    world.cycle()
    assert len([p for p in world.people("b") if p["email"] == "ada@example.com"]) == 1
    assert world.find("b", "ada@example.com")[1]["job_title"] == "Back again"


def test_d4_people_sharing_an_email_or_a_landline_are_not_cross_linked(store: Store) -> None:
    world = make_world(store, ("a", "b"))
    alice = {"first_name": "Alice", "last_name": "Smith", "email": "accounts@acme.example",
             "mobile": "+1 202 555 0101"}
    bob = {"first_name": "Bob", "last_name": "Jones", "email": "accounts@acme.example",
           "mobile": "+1 202 555 0102"}
    john = {"first_name": "John", "last_name": "Doe", "phone": "+1 202 555 0199"}
    jane = {"first_name": "Jane", "last_name": "Doe", "phone": "+1 202 555 0199"}
    for p in (alice, bob, john):
        world.systems["a"].add("org-a", p)
    for p in (bob, alice, jane):
        world.systems["b"].add("org-b", p)
    world.cycle()
    world.cycle()
    for system in ("a", "b"):
        by_name = {f"{p['first_name']} {p['last_name']}": p for p in world.people(system)}
        assert sorted(by_name) == ["Alice Smith", "Bob Jones", "Jane Doe", "John Doe"], system
        assert normalise("mobile", by_name["Alice Smith"]["mobile"]) == "12025550101"
        assert normalise("mobile", by_name["Bob Jones"]["mobile"]) == "12025550102"
    assert world.cycle().writes == 0


def test_d9_phones_are_matched_in_e164(store: Store) -> None:
    world = make_world(store, ("a", "b"))
    world.systems["a"].add("org-a", {"first_name": "Ada", "last_name": "Lovelace",
                                     "phone": "(555) 010-2000"})
    world.systems["b"].add("org-b", {"first_name": "Ada", "last_name": "Lovelace",
                                     "phone": "+1 555 010 2000", "email": "ada@example.com"})
    world.cycle()
    assert len(world.people("a")) == 1 and len(world.people("b")) == 1
    assert world.cycle().writes == 0
