"""The operator's view (issue 14): who a person is, what will happen to them, and why.

Every test drives the command line as an operator does — ``python -m syncd``
in a subprocess at 80 columns, or the entry point for what needs a fault
injected — and asserts on what it prints, in tables and in ``--json``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from syncd.cli import main
from syncd.connectors.memory import MemoryConnector
from syncd.errors import RecordRejected
from syncd.model import Conflict
from syncd.store import Store
from syncd.store.repo import Failure
from tests.e2e import assert_fits, billing, crm, write_config

ADA = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@acme.example",
       "phone": "+1 555 0100"}


def syncd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command line at 80 columns, as on an operator's terminal."""
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "80", **(env or {})},
    )


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first table printed, as cell texts: one entry per printed line."""
    lines = text.splitlines()
    body = lines[next(i for i, line in enumerate(lines) if line.startswith("┡")) + 1:]
    rows = []
    for line in body:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip("│").split("│")])
    return rows


def synced(tmp: Path) -> Path:
    """Ada and Grace in crm, synced to billing: Ada is crm 1001 and billing 1."""
    cfg = write_config(tmp)
    crm(tmp).add("1", ADA, "1001")
    crm(tmp).add("1", {"first_name": "Grace", "last_name": "Hopper",
                       "email": "grace@acme.example"}, "1002")
    assert main(["--config", str(cfg), "--log-level", "warning", "once"]) == 0
    assert len(billing(tmp).records) == 2
    return cfg


def ada_billing(tmp: Path) -> str:
    """Ada's id in billing (given by billing when syncd created her there)."""
    return next(rid for rid, r in billing(tmp).records.items()
                if r.fields["email"] == "ada@acme.example")


def ada_label(tmp: Path) -> str:
    return f"Ada Lovelace <ada@acme.example> (billing {ada_billing(tmp)}, crm 1001)"


def person_id(tmp: Path, email: str) -> str:
    state = Store(f"sqlite:///{tmp / 'syncd.db'}").load_state()
    return next(g.id for g in state.goldens.values() if g.fields["email"] == email)


def quarantine(tmp: Path, gid: str, error: str = "HTTP 422 phone: not a valid number") -> None:
    store = Store(f"sqlite:///{tmp / 'syncd.db'}")
    with store.write() as conn:
        store.record_failure(conn, Failure("billing", gid, "update", ada_billing(tmp), 5, error,
                                           "h", True, None, datetime.now(UTC)))


def conflict(tmp: Path, gid: str, field: str, won: str, lost: str) -> None:
    """A conflict logged for the person: crm's ``won`` over billing's ``lost``."""
    store = Store(f"sqlite:///{tmp / 'syncd.db'}")
    now = datetime.now(UTC)
    with store.write() as conn:
        store.save_conflicts(conn, [Conflict(gid, field, (("crm", won, now), ("billing", lost, now)),
                                             "crm", won, "newest")], now)


def check_named(doc: dict[str, Any], tmp: Path) -> None:
    assert doc["person"] == person_id(tmp, "ada@acme.example") and doc["name"] == "Ada Lovelace"
    assert doc["email"] == "ada@acme.example"
    assert doc["ids"] == {"billing": ada_billing(tmp), "crm": "1001"}


# -- dry run: values, not just field names ---------------------------------------------------


def test_dry_run_shows_old_and_new_values_for_update_create_and_delete(tmp_path: Path) -> None:
    cfg = synced(tmp_path)
    crm(tmp_path).edit("1001", phone="+1 555 9999")
    crm(tmp_path).remove("1002")
    crm(tmp_path).add("1", {"first_name": "Alan", "last_name": "Turing",
                            "email": "alan@acme.example"}, "1003")
    table = syncd("--config", str(cfg), "--log-level", "warning", "once", "--dry-run")
    assert table.returncode == 0, table.stderr
    text = table.stdout
    assert_fits(text)
    bid = ada_billing(tmp_path)
    assert f"update billing/{bid}" in text and "phone: +1 555 0100 → +1 555 9999" in text
    assert ada_label(tmp_path) in text
    assert "delete billing/" in text and "email: grace@acme.example → (empty)" in text
    assert "create billing" in text and "email: (empty) → alan@acme.example" in text
    for header in ("system", "billing", "crm"):
        assert header in text

    doc = json.loads(syncd("--config", str(cfg), "once", "--dry-run", "--json").stdout)
    by_action = {p["action"]: p for p in doc["planned"]}
    update = by_action["update"]
    check_named(update, tmp_path)
    assert update["system"] == "billing" and update["remote_id"] == bid
    assert update["changes"] == {"phone": {"old": "+1 555 0100", "new": "+1 555 9999"}}
    assert by_action["create"]["changes"]["email"] == {"old": None, "new": "alan@acme.example"}
    assert by_action["create"]["ids"] == {"crm": "1003"}
    assert by_action["delete"]["changes"]["last_name"] == {"old": "Hopper", "new": None}
    assert by_action["delete"]["name"] == "Grace Hopper"
    assert billing(tmp_path).records[bid].fields["phone"] == "+1 555 0100"  # nothing changed


def test_dry_run_table_counts_the_writes_it_would_make(tmp_path: Path) -> None:
    cfg = synced(tmp_path)
    crm(tmp_path).edit("1001", phone="+1 555 9999")
    crm(tmp_path).remove("1002")
    crm(tmp_path).add("1", {"first_name": "Alan", "last_name": "Turing",
                            "email": "alan@acme.example"}, "1003")
    crm(tmp_path).add("1", {"first_name": "Edsger", "last_name": "Dijkstra",
                            "email": "edsger@acme.example"}, "1004")
    table = syncd("--config", str(cfg), "--log-level", "warning", "once", "--dry-run")
    assert table.returncode == 0, table.stderr
    rows = {row[0]: row for row in table_rows(table.stdout)}
    # system, read, new, upd, del, ...: two creates, one update, one delete, all in billing
    assert rows["billing"][2:5] == ["2", "1", "1"], table.stdout
    assert rows["crm"][2:5] == ["0", "0", "0"], table.stdout
    assert "4 planned writes" in table.stdout
    assert "records it would create, update, delete there" in table.stdout
    done = syncd("--config", str(cfg), "--log-level", "warning", "once")
    assert {row[0]: row for row in table_rows(done.stdout)}["billing"][2:5] == ["2", "1", "1"]
    assert "records created, updated, deleted there" in done.stdout


# -- show ------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["ada@acme.example", "ADA@acme.example", "Ada Lovelace",
                                   "crm:1001", "billing:<bid>", "<gid>"])
def test_show_finds_a_person_by_what_the_operator_knows(tmp_path: Path, query: str) -> None:
    cfg = synced(tmp_path)
    gid = person_id(tmp_path, "ada@acme.example")
    query = query.replace("<gid>", gid).replace("<bid>", ada_billing(tmp_path))
    doc = json.loads(syncd("--config", str(cfg), "show", query, "--json").stdout)
    check_named(doc, tmp_path)
    assert doc["golden"]["phone"] == "+1 555 0100" and doc["organization"] == "acme"
    assert doc["systems"]["billing"]["remote_id"] == ada_billing(tmp_path)
    assert doc["systems"]["billing"]["fields"]["email"] == "ada@acme.example"
    assert doc["systems"]["crm"]["updated_at"] is not None
    assert doc["pending"] == [] and doc["failures"] == [] and doc["conflicts"] == []


def test_show_prints_golden_systems_pending_failures_and_conflicts(tmp_path: Path) -> None:
    cfg = synced(tmp_path)
    gid = person_id(tmp_path, "ada@acme.example")
    crm(tmp_path).edit("1001", phone="+1 555 9999")
    assert main(["--config", str(cfg), "--log-level", "warning", "once", "--dry-run"]) == 0
    quarantine(tmp_path, gid)
    conflict(tmp_path, gid, "job_title", "Countess", "Analyst")
    shown = syncd("--config", str(cfg), "show", "ada@acme.example")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert_fits(text)
    assert text.startswith(ada_label(tmp_path))
    assert gid in text and "billing" in text and "1001" in text
    assert "failed update billing" in text and "quarantined" in text and "not a valid" in text
    assert "job_title" in text and "'Countess' ✓" in text and "'Analyst'" in text
    doc = json.loads(syncd("--config", str(cfg), "show", "ada@acme.example", "--json").stdout)
    assert doc["failures"][0]["quarantined"] and doc["failures"][0]["system"] == "billing"
    assert doc["conflicts"][0]["field"] == "job_title" and doc["conflicts"][0]["winner"] == "crm"


def test_show_lists_pending_writes_with_values(tmp_path: Path) -> None:
    cfg = synced(tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'syncd.db'}")
    gid = person_id(tmp_path, "ada@acme.example")
    # The golden record moved on but billing was not written yet: a pending update.
    state = store.load_state()
    golden = state.goldens[gid]
    with store.write() as conn:
        store.save_changes(conn, goldens={gid: type(golden)(gid, golden.org, {
            **golden.fields, "phone": "+1 555 4242"})}, links={}, removed=(),
            now=datetime.now(UTC))
    text = syncd("--config", str(cfg), "show", "crm:1001").stdout
    assert f"update billing/{ada_billing(tmp_path)}" in text
    assert "phone: +1 555 0100 → +1 555 4242" in text
    doc = json.loads(syncd("--config", str(cfg), "show", "crm:1001", "--json").stdout)
    pending = {p["system"]: p for p in doc["pending"]}
    assert pending["billing"]["changes"]["phone"] == {"old": "+1 555 0100", "new": "+1 555 4242"}


def test_show_ambiguous_lists_candidates_and_no_match_exits_2(tmp_path: Path) -> None:
    cfg = synced(tmp_path)
    crm(tmp_path).add("1", {"first_name": "Ada", "last_name": "Byron",
                            "email": "byron@acme.example"}, "1003")
    assert main(["--config", str(cfg), "--log-level", "warning", "once"]) == 0
    both = syncd("--config", str(cfg), "show", "ada")
    assert both.returncode == 2
    assert "matches 2 people" in both.stderr
    assert "Ada Lovelace <ada@acme.example>" in both.stderr
    assert "Ada Byron <byron@acme.example>" in both.stderr
    doc = json.loads(syncd("--config", str(cfg), "show", "ada", "--json").stdout)
    assert {c["email"] for c in doc["candidates"]} == {"ada@acme.example", "byron@acme.example"}
    none = syncd("--config", str(cfg), "show", "nobody@nowhere.example")
    assert none.returncode == 2 and "no person matches 'nobody@nowhere.example'" in none.stderr
    assert "Traceback" not in none.stderr and none.stdout == ""


# -- quarantine, conflicts, status: the person named ------------------------------------------


def test_quarantine_names_the_person_and_acts_on_a_query(tmp_path: Path) -> None:
    cfg = synced(tmp_path)
    gid = person_id(tmp_path, "ada@acme.example")
    quarantine(tmp_path, gid)
    listed = syncd("--config", str(cfg), "quarantine", "list")
    assert_fits(listed.stdout)
    flat = " ".join(listed.stdout.split())
    assert "Ada Lovelace" in flat and "<ada@acme.example>" in flat and "crm 1001" in flat
    doc = json.loads(syncd("--config", str(cfg), "quarantine", "list", "--json").stdout)
    check_named(doc["quarantined"][0], tmp_path)
    assert doc["quarantined"][0]["label"] == ada_label(tmp_path)

    missing = syncd("--config", str(cfg), "quarantine", "retry", "--person", "ghost@x.example")
    assert missing.returncode == 2 and "no person matches" in missing.stderr
    retried = syncd("--config", str(cfg), "quarantine", "retry", "--person", "crm:1001")
    assert retried.returncode == 0 and "retried: 1" in retried.stdout and "Ada Lovelace" in retried.stdout
    quarantine(tmp_path, gid)
    dropped = json.loads(syncd("--config", str(cfg), "quarantine", "drop", "--person",
                               "Ada Lovelace", "--json").stdout)
    assert dropped["dropped"] == 1 and dropped["person"]["person"] == gid


def test_status_and_conflicts_name_people_and_fit_80_columns(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "\n[systems.harvest_eu_longname]\nkind = \"memory\"\n"
                                 f"path = \"{tmp_path / 'h.json'}\"\n")
    crm(tmp_path).add("1", ADA, "1001")
    assert main(["--config", str(cfg), "--log-level", "warning", "once"]) == 0
    assert main(["--config", str(cfg), "--log-level", "warning", "once"]) == 0
    gid = person_id(tmp_path, "ada@acme.example")
    quarantine(tmp_path, gid)
    conflict(tmp_path, gid, "phone", "+1 555 0100", "+1 555 0199")
    status = syncd("--config", str(cfg), "status")
    assert status.returncode == 0, status.stderr
    assert_fits(status.stdout)
    for word in ("harvest_eu_longname", "billing", "crm", "linked", "pending", "quarantined"):
        assert word in status.stdout, word
    assert f"quarantined update billing for {ada_label(tmp_path)}" in status.stdout
    doc = json.loads(syncd("--config", str(cfg), "status", "--json").stdout)
    check_named(doc["quarantine"][0], tmp_path)
    assert set(doc["systems"]["billing"]) >= {"last_poll", "watermark", "linked", "last_error"}

    conflicts = syncd("--config", str(cfg), "conflicts")
    assert_fits(conflicts.stdout)
    assert "Ada Lovelace" in conflicts.stdout and "'+1 555 0100' ✓" in conflicts.stdout
    listed = json.loads(syncd("--config", str(cfg), "conflicts", "--json").stdout)["conflicts"]
    assert listed[0]["label"] == ada_label(tmp_path) and listed[0]["email"] == "ada@acme.example"


def test_status_prints_one_row_per_system_at_80_columns(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "\n[systems.harvest_eu_longname]\nkind = \"memory\"\n"
                                 f"path = \"{tmp_path / 'h.json'}\"\nenabled = false\n")
    crm(tmp_path).add("1", ADA, "1001")
    crm(tmp_path).add("1", {**ADA, "email": "not an email", "first_name": "Bad"}, "1002")
    assert main(["--config", str(cfg), "--log-level", "warning", "once"]) in (0, 1)
    status = syncd("--config", str(cfg), "status")
    assert status.returncode == 0, status.stderr
    assert_fits(status.stdout)
    rows = table_rows(status.stdout)
    assert [row[0] for row in rows] == ["crm", "billing", "harvest_eu_longname (off)"], status.stdout
    crm_row, billing_row, off_row = rows
    age = re.compile(r"now|\d+[smhd] ago")
    assert age.fullmatch(crm_row[1]) and age.fullmatch(billing_row[1])  # last poll
    assert age.fullmatch(billing_row[2]) and off_row[1:3] == ["-", "-"]  # watermark
    assert (crm_row[3], billing_row[3]) == ("2", "1")  # linked: the bad address not in billing
    assert "billing: 1 writes not sent: a value breaks the field limits" in status.stdout


def test_cycle_table_keeps_system_names_whole_at_80_columns(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "\n[systems.logisense_production]\nkind = \"memory\"\n"
                                 f"path = \"{tmp_path / 'l.json'}\"\n")
    done = syncd("--config", str(cfg), "--log-level", "warning", "once")
    assert done.returncode == 0, done.stderr
    assert_fits(done.stdout)
    assert "logisense_production" in done.stdout
    doc = json.loads(syncd("--config", str(cfg), "once", "--json").stdout)
    assert set(doc["systems"]["logisense_production"]) >= {
        "read", "created", "updated", "deleted", "conflicts", "rejected", "failed", "requests",
        "error"}


# -- failed and rejected writes name the person ------------------------------------------------


def test_failed_write_names_the_person_in_message_and_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = synced(tmp_path)
    crm(tmp_path).edit("1001", phone="+1 555 9999")

    def refuse(self: MemoryConnector, *args: Any, **kwargs: Any) -> Any:
        raise RecordRejected("HTTP 422 phone refused")

    monkeypatch.setattr(MemoryConnector, "update", refuse)
    capsys.readouterr()
    assert main(["--config", str(cfg), "once"]) == 1
    captured = capsys.readouterr()
    label = ada_label(tmp_path)
    assert f"update billing/{ada_billing(tmp_path)} for {label}: phone:" in captured.out
    events = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    failed = next(e for e in events if e["event"] == "write_failed")
    assert failed["who"] == label and failed["person"] == person_id(tmp_path, "ada@acme.example")
    shown = json.loads(syncd("--config", str(cfg), "show", "ada@acme.example", "--json").stdout)
    assert shown["failures"][0]["quarantined"]


def test_rejected_write_names_the_person(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    crm(tmp_path).add("1", {**ADA, "email": "not an email"}, "1001")
    assert main(["--config", str(cfg), "--log-level", "warning", "once"]) in (0, 1)
    done = syncd("--config", str(cfg), "once", "--json")
    doc = json.loads(done.stdout)
    assert [(r["system"], r["field"]) for r in doc["rejected"]] == [("billing", "email")], doc
    rej = doc["rejected"][0]
    assert rej["name"] == "Ada Lovelace" and rej["ids"] == {"crm": "1001"} and rej["field"] == "email"
    assert "Ada Lovelace" in rej["text"]
    event = next(json.loads(line) for line in done.stderr.splitlines()
                 if '"write_rejected"' in line)
    assert event["who"].startswith("Ada Lovelace")


# -- logs and first steps ----------------------------------------------------------------------


def test_healthy_cycle_logs_one_line_per_system_and_the_summary(tmp_path: Path) -> None:
    cfg = synced(tmp_path)
    done = syncd("--config", str(cfg), "once", "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line)["event"] for line in done.stderr.splitlines() if line.strip()]
    assert sorted(events) == ["cycle_finished", "system_synced", "system_synced"], events


def test_once_without_config_says_where_it_looked_and_how_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SYNCD_CONFIG"}
    done = subprocess.run([sys.executable, "-m", "syncd", "once"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env={**env, "COLUMNS": "80"})
    assert done.returncode == 2
    assert str(tmp_path / "syncd.toml") in done.stderr and "$SYNCD_CONFIG" in done.stderr
    assert "config/syncd.example.toml" in done.stderr
    assert "syncd sandbox --write-config" in done.stderr
    assert "Traceback" not in done.stderr
    via_env = syncd("once", env={"SYNCD_CONFIG": str(tmp_path / "nope.toml")})
    assert via_env.returncode == 2
    assert f"$SYNCD_CONFIG={tmp_path / 'nope.toml'}" in via_env.stderr
