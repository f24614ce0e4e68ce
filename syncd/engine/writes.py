"""Pending writes, derived: what each system still has to receive.

Nothing is queued.  After planning, a system's pending writes are exactly the
difference between each golden record and that system's link: no link is a
create, a deleted person with a live link is a delete, different fields are an
update.  A write that breaks the target's field limits, or would send an
email address that is not valid, is a rejection instead, naming the system,
the person and the field.

A system in ``hold`` (its read failed this cycle, or it never completed a
scan) receives no create: it may hold the person already, and a create there
would be a duplicate once it is read.  Its updates and deletes wait too —
they could overwrite a change not read yet — except for people whose record
was read this cycle: that link proves what the system holds.

A field outside a system's ``targets`` (a field policy, CONTRACT §6) is one
syncd does not manage there: a create leaves it empty, an update keeps the
system's own value (its link's) in ``desired``, so it never differs and is
never sent — and a connector that writes a joined value (Lightening's name)
joins the system's own part, not the golden one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set

from syncd.contact import Fields, differs, email_problem, project
from syncd.model import Action, Policy, Rejection, State, SystemInfo, Write, check_limits

__all__ = ["derive_writes"]


def derive_writes(
    state: State,
    systems: Iterable[SystemInfo],
    only: Iterable[str] | None = None,
    hold: Mapping[str, Set[str]] | None = None,
    policy: Policy | None = None,
) -> tuple[list[Write], list[Rejection]]:
    """What every system still has to receive: the difference between golden and link.

    ``only`` limits the work to some people — those a cycle touched plus those
    still unsettled — when the caller knows every other person is settled.
    ``hold``: system → the people whose link it proved this cycle (see above).
    ``policy``: its field policies' ``targets`` (see above); the planner's policy.
    """
    hold = hold or {}
    writes: list[Write] = []
    rejections: list[Rejection] = []
    targets = [s for s in systems if not s.read_only]
    org_ids = {s.name: s.org_ids for s in targets}
    fields = {s.name: sorted(s.capabilities.fields) for s in targets}
    own: dict[str, list[str]] = {}  # per system, the fields no policy lets syncd write there
    if policy is not None and policy.fields:
        own = {s: kept for s, names in fields.items()
               if (kept := [f for f in names if not policy.targets(s, f)])}

    def want(system: str, golden: Fields, held: Fields | None) -> Fields:
        desired = project(golden, fields[system])
        for name in own.get(system, ()):
            desired[name] = held.get(name, "") if held is not None else ""
        return desired
    people = (
        state.goldens.values()
        if only is None
        else [state.goldens[g] for g in sorted(set(only)) if g in state.goldens]
    )
    for golden in people:
        for info in targets:
            link = state.links.get((golden.id, info.name))
            if link is not None and link.excluded:
                continue
            proven = hold.get(info.name)
            if proven is not None and (link is None or golden.id not in proven):
                continue
            caps = info.capabilities
            if golden.deleted:
                if link is not None and link.remote_id is not None and caps.can_delete:
                    writes.append(
                        Write(info.name, golden.id, Action.DELETE, link.org_id, link.remote_id,
                              extra=link.extra)
                    )
                continue
            if link is None:
                org_id = org_ids[info.name].get(golden.org)
                if org_id is None:
                    continue
                desired = want(info.name, golden.fields, None)
                if not any(desired.values()):
                    continue
                write = Write(info.name, golden.id, Action.CREATE, org_id, None, desired, desired)
            elif info.org_map.get(link.org_id) != golden.org:
                # The person moved to another organization: move the record with the
                # API's own means (an update of its parent), else delete it under the
                # old parent and create it under the new one — the same person.
                org_id = org_ids[info.name].get(golden.org)
                if org_id is None or link.remote_id is None:
                    continue
                desired = want(info.name, golden.fields, link.fields)
                moved_from = (link.org_id, link.remote_id)
                if caps.can_move:
                    changed = {f: v for f, v in desired.items()
                               if differs(f, v, link.fields.get(f, ""))}
                    write = Write(info.name, golden.id, Action.UPDATE, org_id, link.remote_id,
                                  changed, desired, link.extra, moved_from)
                else:
                    write = Write(info.name, golden.id, Action.CREATE, org_id, None, desired,
                                  desired, link.extra, moved_from)
            else:
                desired = want(info.name, golden.fields, link.fields)
                if desired == link.fields:
                    continue
                changed = {f: v for f, v in desired.items() if differs(f, v, link.fields.get(f, ""))}
                if not changed:
                    continue
                write = Write(info.name, golden.id, Action.UPDATE, link.org_id, link.remote_id,
                              changed, desired, link.extra)
            problem = check_limits(caps, write.desired, creating=write.action is Action.CREATE)
            sent = write.desired if write.action is Action.CREATE else write.changed
            bad_email = email_problem(sent.get("email", ""))
            if problem is None and bad_email is not None:
                # Refused here, naming the field, rather than by the target API's 400.
                problem = ("email", bad_email)
            if problem is not None:
                rejections.append(
                    Rejection(info.name, golden.id, write.remote_id, write.action, *problem)
                )
            else:
                writes.append(write)
    writes.sort(key=lambda w: (w.system, w.action.value, w.golden_id))
    return writes, rejections
