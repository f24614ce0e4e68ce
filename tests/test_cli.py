"""The command line as operators and scripts use it: exit codes, --json, config errors, ages.

What an operator reads of one person (show, dry-run values, 80-column tables) is in
``test_operator``; the helpers that write a configuration are in ``tests/e2e.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.cli import _ago, main
from syncd.store import Store
from tests.e2e import billing, crm, syncd, write_config


def test_once_json_syncs_and_second_run_is_quiet(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    crm(tmp_path).add("1", {"first_name": "Ada", "last_name": "L", "email": "ada@x.io"})
    first = syncd("--config", str(cfg), "once", "--json")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["systems"]["billing"]["created"] == 1
    assert [r.fields["email"] for r in billing(tmp_path).records.values()] == ["ada@x.io"]
    second = json.loads(syncd("--config", str(cfg), "once", "--json").stdout)
    assert sum(s["created"] + s["updated"] + s["deleted"]
               for s in second["systems"].values()) == 0


def test_once_migrates_an_empty_sqlite_store(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    assert main(["--config", str(cfg), "once"]) == 0
    assert not Store(f"sqlite:///{tmp_path / 'syncd.db'}").is_empty()


def test_dry_run_prints_plan_and_changes_nothing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    crm(tmp_path).add("1", {"first_name": "Ada", "last_name": "L", "email": "ada@x.io"})
    result = syncd("--config", str(cfg), "once", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["dry_run"] and any(p["action"] == "create" and p["system"] == "billing"
                                  for p in doc["planned"])
    assert billing(tmp_path).records == {}
    store = Store(f"sqlite:///{tmp_path / 'syncd.db'}")
    assert store.load_state().goldens == {} and store.watermarks() == {}


@pytest.mark.parametrize(
    ("extra_toml", "sync", "expected"),
    [
        ("\n[systems.crm2]\nkind = \"memory\"\nbogus = 1\n", {}, "systems.crm2.bogus: unknown key"),
        ("", {"interval": "5 parsecs"}, "sync.interval: bad duration"),
        ("", {"priority": ["nope"]}, "unknown system 'nope'"),
        ("\n[organizations.other]\nghost = \"1\"\n", {}, "organizations.other names unknown system"),
    ],
)
def test_config_errors_exit_2_naming_file_and_key(
    tmp_path: Path, extra_toml: str, sync: dict[str, object], expected: str
) -> None:
    cfg = write_config(tmp_path, extra_toml, **sync)
    result = syncd("--config", str(cfg), "once")
    assert result.returncode == 2
    assert str(cfg) in result.stderr and expected in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_exits_2(tmp_path: Path) -> None:
    result = syncd("--config", str(tmp_path / "absent.toml"), "status")
    assert result.returncode == 2 and "not found" in result.stderr


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    other = tmp_path / "other.db"
    result = syncd("--config", str(cfg), "once", env={"SYNCD_STORE__URL": f"sqlite:///{other}"})
    assert result.returncode == 0, result.stderr
    assert other.exists() and not (tmp_path / "syncd.db").exists()


def test_second_instance_exits_3(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    assert main(["--config", str(cfg), "once"]) == 0
    holder = Store(f"sqlite:///{tmp_path / 'syncd.db'}")
    holder.acquire()
    try:
        result = syncd("--config", str(cfg), "once")
    finally:
        holder.release()
    assert result.returncode == 3
    assert "locked by another syncd instance" in result.stderr


def test_mass_delete_exits_3_and_force_delete_proceeds(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    source = crm(tmp_path)
    ids = [source.add("1", {"first_name": f"P{i}", "last_name": "L", "email": f"p{i}@x.io"})
           for i in range(5)]
    assert main(["--config", str(cfg), "once"]) == 0
    source = crm(tmp_path)
    for rid in ids[:3]:
        source.remove(rid)
    assert syncd("--config", str(cfg), "once").returncode == 3
    assert len(billing(tmp_path).records) == 5
    assert syncd("--config", str(cfg), "once", "--force-delete").returncode == 0
    assert len(billing(tmp_path).records) == 2


def test_status_conflicts_and_quarantine_json(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    crm(tmp_path).add("1", {"first_name": "Ada", "last_name": "L", "email": "ada@x.io"})
    assert main(["--config", str(cfg), "once"]) == 0
    status = json.loads(syncd("--config", str(cfg), "status", "--json").stdout)
    assert status["systems"]["crm"]["linked"] == 1 and status["systems"]["billing"]["linked"] == 1
    assert status["systems"]["billing"]["pending_writes"] == 0
    assert status["systems"]["billing"]["watermark"] is not None
    assert status["last_run"]["kind"] == "once" and status["last_run"]["exit_code"] == 0
    assert json.loads(syncd("--config", str(cfg), "conflicts", "--json").stdout) == {"conflicts": []}
    quarantined = json.loads(syncd("--config", str(cfg), "quarantine", "list", "--json").stdout)
    assert quarantined == {"quarantined": []}


def test_quarantine_retry_and_drop(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from syncd.store.repo import Failure

    cfg = write_config(tmp_path)
    crm(tmp_path).add("1", {"first_name": "Ada", "last_name": "L", "email": "ada@x.io"})
    assert main(["--config", str(cfg), "once"]) == 0
    store = Store(f"sqlite:///{tmp_path / 'syncd.db'}")
    gid = next(iter(store.load_state().goldens))
    with store.write() as conn:
        store.record_failure(conn, Failure("billing", gid, "update", "1", 5, "HTTP 422 nope", "h",
                                           True, None, datetime.now(UTC)))
    listed = json.loads(syncd("--config", str(cfg), "quarantine", "--json").stdout)
    assert listed["quarantined"][0]["error"] == "HTTP 422 nope"
    assert json.loads(syncd("--config", str(cfg), "quarantine", "retry", "--json").stdout) == {
        "retried": 1}
    with store.write() as conn:
        store.record_failure(conn, Failure("billing", gid, "update", "1", 5, "HTTP 422 nope", "h",
                                           True, None, datetime.now(UTC)))
    assert json.loads(syncd("--config", str(cfg), "quarantine", "drop", "--json").stdout) == {
        "dropped": 1}
    assert store.load_state().links[(gid, "billing")].excluded


def test_secrets_never_reach_status_or_errors(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '\n[systems.h]\nkind = "harvest"\nbase_url = "http://127.0.0.1:9"\n'
                                 'username = "u"\nenabled = false\n')
    secret = "hunter2-very-secret"
    result = syncd("--config", str(cfg), "status", "--json",
                   env={"SYNCD_SYSTEMS__H__PASSWORD": secret})
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout and secret not in result.stderr


_KILLED_MID_MIGRATION = """
import os, signal, sys
from alembic.operations import Operations
from syncd.cli import main

create_table = Operations.create_table


def dying_create_table(self, name, *columns, **kw):
    if name == "watermark":  # golden and link already exist by now
        os.kill(os.getpid(), signal.SIGKILL)
    return create_table(self, name, *columns, **kw)


Operations.create_table = dying_create_table
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_during_the_first_migration_leaves_a_usable_store(tmp_path: Path) -> None:
    """Issue 10.4: the automatic SQLite migration is one transaction, so a kill undoes it all."""
    cfg = write_config(tmp_path)
    crm(tmp_path).add("1", {"first_name": "Ada", "last_name": "L", "email": "ada@x.io"})
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_MIGRATION, "--config", str(cfg), "once"],
        capture_output=True, text=True, timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    assert Store(f"sqlite:///{tmp_path / 'syncd.db'}").is_empty()
    again = syncd("--config", str(cfg), "once", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["systems"]["billing"]["created"] == 1
    assert syncd("--config", str(cfg), "db", "upgrade").returncode == 0


def _synced_store(tmp: Path) -> Path:
    """A store that one cycle filled, closed (checkpointed) and ready to be damaged."""
    cfg = write_config(tmp)
    crm(tmp).add("1", {"first_name": "Ada", "last_name": "L", "email": "ada@x.io"})
    assert main(["--config", str(cfg), "once"]) == 0
    return tmp / "syncd.db"


def _read_only_uri(tmp: Path) -> dict[str, str]:
    db = _synced_store(tmp)
    return {"SYNCD_STORE__URL": f"sqlite:///file:{db}?mode=ro&uri=true"}


def _under_a_file(tmp: Path) -> dict[str, str]:
    (tmp / "not-a-dir").write_text("")
    return {"SYNCD_STORE__URL": f"sqlite:///{tmp / 'not-a-dir' / 'syncd.db'}"}


def _garbage(tmp: Path) -> dict[str, str]:
    (tmp / "syncd.db").write_bytes(b"this is no database\n" * 500)
    return {}


def _truncated(tmp: Path) -> dict[str, str]:
    db = _synced_store(tmp)
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    return {}


def _postgres_down(tmp: Path) -> dict[str, str]:
    return {"SYNCD_STORE__URL": "postgresql+psycopg://syncd:s3cret-pw@127.0.0.1:9/tenant"}


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (_read_only_uri, "syncd.db"),
        (_under_a_file, "not-a-dir"),
        (_garbage, "syncd.db"),
        (_truncated, "syncd.db"),
        (_postgres_down, "postgresql+psycopg://syncd:***@127.0.0.1:9/tenant"),
    ],
    ids=["read-only", "directory-is-a-file", "not-a-database", "truncated", "postgres-down"],
)
def test_an_unusable_store_is_one_line_and_exit_4_before_any_poll(
    tmp_path: Path, damage: Any, named: str
) -> None:
    """Issue 10.5: the store is probed (opened, checked, written) before any system is polled."""
    cfg = write_config(tmp_path)
    env = damage(tmp_path)
    result = syncd("--config", str(cfg), "once", env=env)
    assert result.returncode == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # no cycle ran: a cycle logs cycle_finished
    assert lines[0].startswith("syncd: store ") and named in lines[0]
    assert "Traceback" not in result.stderr and "s3cret-pw" not in result.stderr


def test_an_immutable_store_file_is_one_line_and_exit_4(tmp_path: Path) -> None:
    """Read-only for root too: ``chattr +i`` (skipped where the filesystem refuses it)."""
    db = _synced_store(tmp_path)
    cfg = write_config(tmp_path)
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        result = syncd("--config", str(cfg), "once")
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    assert result.returncode == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(db) in lines[0] and "read-only" in lines[0], result.stderr


def test_a_config_path_that_is_a_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    folder = tmp_path / "syncd.toml"
    folder.mkdir()
    result = syncd("--config", str(folder), "once")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(folder) in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "now"), (42, "42s ago"), (59.9, "59s ago"), (60, "1m ago"), (3599, "59m ago"),
    (7200, "2h ago"), (86400 * 12 + 5, "12d ago"), (-90, "in 1m"),
])
def test_status_times_are_ages_in_one_unit(seconds: float, shown: str) -> None:
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert _ago((now - timedelta(seconds=seconds)).isoformat(), now) == shown
    assert _ago(None, now) == "-"
    assert _ago((now - timedelta(seconds=seconds)).replace(tzinfo=None).isoformat(), now) == shown
