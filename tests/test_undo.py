"""History and undo end to end: the command line against the five simulators over HTTP.

Each test serves the sandbox on 127.0.0.1, syncs it, changes something in one
system as a user would (the simulators' admin side channel), and then works
only through ``syncd`` commands, checking what every system holds afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.cli import main
from syncd.sandbox.serve import Sandbox, available_kinds, build_sandbox, write_config
from tests.e2e import REPO, assert_fits

SYSTEMS = set(available_kinds(synced_only=True))
"""The five APIs, and the address book where Radicale is installed (the dev extras)."""


@pytest.fixture
def box(tmp_path: Path) -> Iterator[tuple[Sandbox, Path]]:
    sandbox = build_sandbox(10, synced_only=True)
    sandbox.start()
    assert set(sandbox.handles) == SYSTEMS
    config = tmp_path / "syncd.toml"
    write_config(sandbox.config(f"sqlite:///{tmp_path / 'syncd.db'}"), config)
    try:
        yield sandbox, config
    finally:
        sandbox.stop()


def syncd(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    """One command in process; its ``--json`` document (else its text) and exit code."""
    capsys.readouterr()
    code = main(["--config", str(config), "--log-level", "error", *args])
    out = capsys.readouterr().out
    return code, json.loads(out) if "--json" in args else out


def at_80(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command line at 80 columns, as on an operator's terminal."""
    return subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(config), "--log-level", "error", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "80"},
    )


def refused(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """A command that fails: its exit code and what it said on stderr."""
    capsys.readouterr()
    code = main(["--config", str(config), "--log-level", "error", *args])
    return code, capsys.readouterr().err


def once(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, report = syncd(config, capsys, "once", "--json")
    assert code == 0, report["errors"]
    return report  # type: ignore[no-any-return]


def held(box: Sandbox, email: str) -> dict[str, dict[str, Any]]:
    """system → that system's record of the person (canonical fields)."""
    found: dict[str, dict[str, Any]] = {}
    for name, sim in box.sims.items():
        for record in sim.admin_dump():
            if (record.get("email") or "").casefold() == email.casefold():
                found[name] = record
    return found


def synced(box: Sandbox, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    once(config, capsys)
    for person in box.seeded:
        assert set(held(box, person["email"])) == SYSTEMS, person["email"]


def edit(box: Sandbox, system: str, email: str, **fields: str) -> str:
    record = held(box, email)[system]
    box.sims[system].admin_update(record["id"], fields)
    return str(record["id"])


def last_run(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, doc = syncd(config, capsys, "runs", "--json", "--limit", "1")
    assert code == 0
    return doc["runs"][0]  # type: ignore[no-any-return]


def test_an_edit_shows_in_history_and_its_undo_reaches_all_five_systems(
    box: tuple[Sandbox, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox, config = box
    synced(sandbox, config, capsys)
    ada = sandbox.seeded[0]["email"]
    rid = edit(sandbox, "harvest", ada, last_name="Byron")
    once(config, capsys)
    run = last_run(config, capsys)
    assert (run["kind"], run["changes"], run["exit_code"]) == ("once", 1, 0)
    assert run["systems"]["lightening"]["updated"] == 1
    assert all(n["failed"] == 0 for n in run["systems"].values())
    # The real entry point, by the id the editing system knows the person by.
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(config), "--log-level", "error",
         "history", f"harvest:{rid}", "--json", "--limit", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["email"].casefold() == ada and doc["organization"] == "acme"
    assert doc["ids"]["harvest"] == rid and set(doc["ids"]) == SYSTEMS
    change = doc["changes"][0]
    assert {k: change[k] for k in ("field", "old", "new", "source", "conflict", "run")} == {
        "field": "last_name", "old": "Lovelace", "new": "Byron", "source": "harvest",
        "conflict": False, "run": run["id"]}
    assert all(r["last_name"] == "Byron" for r in held(sandbox, ada).values())

    code, undone = syncd(config, capsys, "undo", str(change["id"]), "--json")
    assert code == 0 and undone["undone"] == [change["id"]] and undone["refused"] == []
    (new_id,) = undone["changes"]
    assert new_id > change["id"]
    once(config, capsys)
    assert {n: r["last_name"] for n, r in held(sandbox, ada).items()} == dict.fromkeys(
        SYSTEMS, "Lovelace")
    code, doc = syncd(config, capsys, "history", ada, "--json", "--limit", "1")
    assert doc["changes"][0] == {**doc["changes"][0], "id": new_id, "field": "last_name",
                                 "old": "Byron", "new": "Lovelace", "source": "operator"}
    code, runs = syncd(config, capsys, "runs", "--json", "--limit", "2")
    assert [r["kind"] for r in runs["runs"]] == ["once", "undo"]
    assert runs["runs"][1]["changes"] == 1 and runs["runs"][0]["changes"] == 0
    assert once(config, capsys)["systems"]["harvest"]["updated"] == 0  # settled, quiet
    code, shown = syncd(config, capsys, "show", f"harvest:{rid}", "--json")
    assert code == 0 and [c["id"] for c in shown["history"]][:2] == [new_id, change["id"]]
    assert len(shown["history"]) == 5
    # What an operator reads at 80 columns: nothing cut, ids and values whole.
    for args in (["runs"], ["history", ada], ["show", ada]):
        done = at_80(config, *args)
        assert done.returncode == 0, done.stderr
        assert_fits(done.stdout)
        assert str(new_id) in done.stdout or args == ["runs"]
        assert "Byron → Lovelace" in done.stdout or args == ["runs"]


def test_a_bad_run_of_ten_edits_is_reverted_by_undo_run(
    box: tuple[Sandbox, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox, config = box
    synced(sandbox, config, capsys)
    before = {p["email"]: held(sandbox, p["email"]) for p in sandbox.seeded}
    for person in sandbox.seeded:  # a bad bulk import in Zoho: ten people renamed
        edit(sandbox, "zoho_books", person["email"], last_name="Imported")
    once(config, capsys)
    bad = last_run(config, capsys)
    assert bad["changes"] == 10
    assert all(r["last_name"] == "Imported"
               for p in sandbox.seeded for r in held(sandbox, p["email"]).values())

    code, dry = syncd(config, capsys, "undo", "--run", str(bad["id"]), "--dry-run", "--json")
    assert code == 0 and dry["changes"] == [] and len(dry["undone"]) == 10
    assert len(dry["planned"]) == 10 * len(SYSTEMS)
    assert all(p["action"] == "update" and p["changes"]["last_name"]["old"] == "Imported"
               for p in dry["planned"])
    assert last_run(config, capsys)["id"] == bad["id"], "a dry run is no run"

    code, done = syncd(config, capsys, "undo", "--run", str(bad["id"]), "--json")
    assert code == 0 and done["refused"] == [] and len(done["changes"]) == 10
    assert done["undone"] == sorted(done["undone"], reverse=True), "newest change first"
    report = once(config, capsys)
    assert all(report["systems"][n]["updated"] == 10 for n in SYSTEMS)
    for person in sandbox.seeded:
        now = held(sandbox, person["email"])
        assert {n: r["last_name"] for n, r in now.items()} == {
            n: r["last_name"] for n, r in before[person["email"]].items()}, person["email"]


def test_a_superseded_change_is_refused_naming_the_later_one(
    box: tuple[Sandbox, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox, config = box
    synced(sandbox, config, capsys)
    ada = sandbox.seeded[0]["email"]
    for title in ("Byron", "King"):
        edit(sandbox, "valomnia", ada, last_name=title)
        once(config, capsys)
    code, doc = syncd(config, capsys, "history", ada, "--json", "--limit", "2")
    later, first = doc["changes"]
    assert (first["new"], later["new"]) == ("Byron", "King")

    code, text = syncd(config, capsys, "undo", str(first["id"]))
    assert code == 3 and f"superseded by change {later['id']}" in text
    code, refused = syncd(config, capsys, "undo", str(first["id"]), str(later["id"]), "--json")
    # The later change itself is undone; the first is not superseded by it any more.
    assert code == 0 and refused["refused"] == [] and len(refused["changes"]) == 2
    once(config, capsys)
    assert {r["last_name"] for r in held(sandbox, ada).values()} == {"Lovelace"}
    code, again = syncd(config, capsys, "undo", str(first["id"]), "--json")
    assert code == 3 and again["undone"] == [] and again["refused"][0]["id"] == first["id"]
    assert "superseded by change" in again["refused"][0]["reason"]
    code, forced = syncd(config, capsys, "undo", str(first["id"]), "--force", "--json")
    assert code == 0 and forced["undone"] == [first["id"]] and forced["refused"] == []


def test_an_undone_delete_creates_the_person_again_everywhere(
    box: tuple[Sandbox, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox, config = box
    synced(sandbox, config, capsys)
    grace = sandbox.seeded[3]["email"]
    sandbox.sims["lightening"].admin_delete(held(sandbox, grace)["lightening"]["id"])
    report = once(config, capsys)
    assert sum(s["deleted"] for s in report["systems"].values()) == len(SYSTEMS) - 1
    assert held(sandbox, grace) == {}
    code, doc = syncd(config, capsys, "history", grace, "--json", "--limit", "1")
    assert code == 0 and doc["deleted"] is True
    gone = doc["changes"][0]
    assert (gone["field"], gone["old"], gone["new"], gone["source"]) == (
        "deleted", "false", "true", "lightening")

    code, done = syncd(config, capsys, "undo", str(gone["id"]), "--json")
    assert code == 0 and done["undone"] == [gone["id"]]
    report = once(config, capsys)
    assert {n: s["created"] for n, s in report["systems"].items()} == dict.fromkeys(SYSTEMS, 1)
    assert set(held(sandbox, grace)) == SYSTEMS
    code, doc = syncd(config, capsys, "history", grace, "--json", "--limit", "1")
    assert doc["deleted"] is False and doc["changes"][0]["source"] == "operator"
    assert once(config, capsys)["systems"]["lightening"]["created"] == 0


def test_unknown_people_changes_and_runs_exit_2_naming_them(
    box: tuple[Sandbox, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    _, config = box
    once(config, capsys)
    for args in (["history", "nobody@nowhere.example"], ["history", "harvest:424242"],
                 ["undo", "987654"], ["undo", "--run", "4242"]):
        code, err = refused(config, capsys, *args)
        assert code == 2 and args[-1] in err and "Traceback" not in err, (args, err)
    code, err = refused(config, capsys, "undo")
    assert code == 2 and "change ids" in err
