"""Property tests: normalisers, durations, and the planner's purity."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import hypothesis.strategies as st
from hypothesis import given, settings

from syncd.config import parse_duration
from syncd.connectors.base import Capabilities, RemoteRecord
from syncd.contact import FIELDS, content_hash, normalise
from syncd.engine.match import match_keys
from syncd.engine.plan import plan
from syncd.errors import MassDeleteError
from syncd.model import Golden, Link, Observation, Policy, State, SystemInfo

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@given(field=st.sampled_from(FIELDS), value=text)
def test_normalise_is_idempotent(field: str, value: str) -> None:
    once = normalise(field, value)
    assert normalise(field, once) == once


@given(value=st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.[a-z]{2,3}", fullmatch=True),
       pad=st.sampled_from(["", " ", "  ", "\t"]))
def test_email_case_and_spaces_never_matter(value: str, pad: str) -> None:
    assert normalise("email", pad + value.upper() + pad) == normalise("email", value)
    assert match_keys("acme", {"email": value.upper()}) == match_keys("acme", {"email": value})


@given(digits=st.from_regex(r"[0-9]{6,12}", fullmatch=True),
       sep=st.sampled_from([" ", ".", "-", "/", ""]))
def test_phones_compare_on_digits(digits: str, sep: str) -> None:
    formatted = "+" + sep.join(digits[i:i + 3] for i in range(0, len(digits), 3))
    assert normalise("phone", formatted) == digits
    a = {f: "" for f in FIELDS} | {"phone": formatted}
    b = {f: "" for f in FIELDS} | {"phone": digits}
    assert content_hash(a) == content_hash(b)


@given(n=st.integers(0, 10_000), unit=st.sampled_from(["s", "m", "h", "d"]))
def test_durations_parse(n: int, unit: str) -> None:
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert parse_duration(f"{n}{unit}") == timedelta(seconds=n * seconds)


people = st.fixed_dictionaries({
    "first_name": st.sampled_from(["Ada", "Bob", ""]),
    "last_name": st.sampled_from(["Doe", "Roe"]),
    "email": st.sampled_from(["a@x.io", "b@x.io", "c@x.io", ""]),
    "phone": st.sampled_from(["555 0100", "5550101", ""]),
})


@settings(max_examples=150, deadline=None)
@given(
    held=st.lists(st.tuples(st.sampled_from(["a", "b"]), people), max_size=6),
    seen=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 9), people,
                            st.booleans()), max_size=8),
    complete=st.booleans(),
)
def test_plan_is_pure_and_deterministic(
    held: list[tuple[str, dict[str, str]]],
    seen: list[tuple[str, int, dict[str, str], bool]],
    complete: bool,
) -> None:
    goldens: dict[str, Golden] = {}
    links: dict[tuple[str, str], Link] = {}
    for i, (system, fields) in enumerate(held):
        gid = f"g{i}"
        goldens[gid] = Golden(gid, "acme", {f: fields.get(f, "") for f in FIELDS})
        links[(gid, system)] = Link(system, gid, str(i), "1", dict(fields))
    state = State(goldens, links)
    frozen = copy.deepcopy((goldens, links))
    caps = Capabilities(fields=frozenset(FIELDS), timestamps=True)
    systems = {s: SystemInfo(s, caps, {"1": "acme"}) for s in ("a", "b")}
    observations = [
        Observation(s, [RemoteRecord(str(rid), "1", dict(f), NOW, deleted=gone)
                        for sys_, rid, f, gone in seen if sys_ == s], complete, NOW)
        for s in ("a", "b")
    ]
    policy = Policy(max_delete_fraction=1.0)
    try:
        first = plan(state, observations, systems, policy)
    except MassDeleteError:
        return
    second = plan(state, observations, systems, policy)
    assert first.state == second.state
    assert first.conflicts == second.conflicts
    assert (goldens, links) == frozen  # the input was not touched
    remote = [(s, link.remote_id) for (_, s), link in first.state.links.items() if link.remote_id]
    assert len(remote) == len(set(remote))  # one person per remote record
