"""``syncd demo``: the sandbox in-process, two cycles, and a table of what moved where."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from syncd.app import syncer
from syncd.config import load_settings
from syncd.contact import normalise
from syncd.engine.report import CycleReport
from syncd.sandbox.serve import build_sandbox, write_config

__all__ = ["run_demo"]


def _moved(title: str, report: CycleReport) -> Table:
    table = Table(title=title)
    for col in ("system", "read", "created", "updated", "deleted", "conflicts", "requests"):
        table.add_column(col, justify="right" if col != "system" else "left")
    for name, s in sorted(report.systems.items()):
        table.add_row(name, str(s.read), str(s.created), str(s.updated), str(s.deleted),
                      str(s.conflicts), str(s.requests))
    return table


def run_demo(console: Console, contacts: int = 12) -> int:
    box = build_sandbox(contacts, synced_only=True)  # every system it starts must sync
    box.start()
    try:
        with tempfile.TemporaryDirectory(prefix="syncd-demo-") as tmp:
            path = Path(tmp) / "syncd.toml"
            write_config(box.config(f"sqlite:///{Path(tmp) / 'syncd.db'}"), path)
            settings = load_settings(path)
            console.print(f"[bold]sandbox[/]: {', '.join(f'{n} {h.url}' for n, h in box.handles.items())}")
            with syncer(settings) as s:
                console.print(_moved("first sync: every seeded person reaches every system",
                                     s.run_once()))
                notes = _edit_as_users(box)
                for note in notes:
                    console.print(f"  user edit: {note}")
                # A full sweep, as the periodic one: a system without a delete feed
                # (Harvest, Valomnia) shows a deletion only to a complete scan.
                console.print(_moved("second sync (a full sweep): the edits move",
                                     s.run_once(full=set())))
                quiet = s.run_once()
                console.print(_moved("third sync: nothing left to do", quiet))
            return _check(box, console, quiet)
    finally:
        box.stop()


def _edit_as_users(box: object) -> list[str]:
    """A few edits in different systems, made through the simulators' admin side."""
    from syncd.sandbox.serve import Sandbox

    assert isinstance(box, Sandbox)
    notes: list[str] = []
    names = sorted(box.sims)
    first, second = box.sims[names[0]], box.sims[names[-1]]
    with first.lock:
        rec = first.admin_dump()[0]
        first.admin_update(str(rec["id"]), {"phone": "+1 555 0199", "last_name": rec["last_name"]})
        notes.append(f"{names[0]}: {rec['first_name']} {rec['last_name']} got a new phone")
        org = str(rec["org"])
        first.admin_create(org, {"first_name": "Hedy", "last_name": "Newcomer",
                                 "email": "hedy.newcomer@acme.example", "phone": "+1 555 0150"})
        notes.append(f"{names[0]}: Hedy Newcomer was added")
    with second.lock:
        recs = second.admin_dump()
        rec = recs[-1]
        second.admin_update(str(rec["id"]), {"email": f"new.{rec['email']}".lower()})
        notes.append(f"{names[-1]}: {rec['first_name']} {rec['last_name']} changed e-mail")
        gone = recs[1]
        second.admin_delete(str(gone["id"]))
        notes.append(f"{names[-1]}: {gone['first_name']} {gone['last_name']} was deleted")
    return notes


def _check(box: object, console: Console, quiet: CycleReport) -> int:
    """Print who is where; 0 when every system holds the same people and the last cycle was quiet."""
    from syncd.sandbox.serve import Sandbox

    assert isinstance(box, Sandbox)
    holdings: dict[str, set[str]] = {}
    for name, sim in box.sims.items():
        with sim.lock:
            holdings[name] = {normalise("email", r.get("email")) for r in sim.admin_dump()}
    everyone = sorted(set().union(*holdings.values()))
    table = Table(title=f"{len(everyone)} people, by system")
    table.add_column("email")
    for name in sorted(holdings):
        table.add_column(name, justify="center")
    for email in everyone:
        table.add_row(email, *("✓" if email in holdings[n] else "✗" for n in sorted(holdings)))
    console.print(table)
    same = all(h == holdings[next(iter(holdings))] for h in holdings.values())
    ok = same and quiet.writes == 0 and quiet.exit_code == 0
    console.print("[green]all systems agree[/]" if ok else "[red]systems disagree[/]")
    return 0 if ok else 1
