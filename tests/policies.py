"""Field policies as an operator may write them: Hypothesis strategies for ``[fields.*]``
tables and what a drawn policy lets through (``test_policies``, ``test_machine``)."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st

SYSTEMS = ("a", "b", "c")
RULED = ("email", "phone", "mobile", "job_title")
CHOICES = {
    "email": ["", "x@example.com", "y@example.com"],
    "phone": ["", "+1 555 0100", "555.0199"],
    "mobile": ["", "+44 7700 900123"],
    "job_title": ["", "CEO", "Clerk"],
}


@st.composite
def field_rule(draw: st.DrawFn, systems: tuple[str, ...] = SYSTEMS,
               targets_too: bool = True) -> dict[str, Any]:
    """One ``[fields.NAME]`` table as an operator may write it (sources within targets)."""
    rule: dict[str, Any] = {}
    targets = draw(st.none() | st.lists(st.sampled_from(systems), min_size=1, unique=True)
                   if targets_too else st.none())
    if targets is not None:
        rule["targets"] = targets
    sources = draw(st.none() | st.lists(st.sampled_from(targets or systems), min_size=1,
                                        unique=True))
    if sources is not None:
        rule["sources"] = sources
    if draw(st.booleans()):
        rule["never_clear"] = True
    if draw(st.booleans()):
        rule["conflict"] = draw(st.sampled_from(["newest", "priority"]))
        rule["priority"] = draw(st.permutations(systems))
    return rule


def field_policies(fields: tuple[str, ...] = RULED, systems: tuple[str, ...] = SYSTEMS,
                   no_targets: tuple[str, ...] = ()) -> st.SearchStrategy[dict[str, Any]]:
    """``[fields.*]`` tables for some of ``fields``; no ``targets`` for ``no_targets``."""
    return st.fixed_dictionaries({}, optional={
        name: field_rule(systems, targets_too=name not in no_targets) for name in fields})


def taken(policy: dict[str, Any], system: str, field: str, value: str) -> bool:
    """Whether the policy lets ``system``'s change of ``field`` to ``value`` through."""
    rule = policy.get(field, {})
    return (targeted(policy, system, field) and system in rule.get("sources", [system])
            and not (rule.get("never_clear") and not value))


def targeted(policy: dict[str, Any], system: str, field: str) -> bool:
    """Whether ``system`` may hold ``field`` under the policy (is among its targets)."""
    return system in policy.get(field, {}).get("targets", [system])
