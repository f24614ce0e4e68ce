"""Operations: the daemon under signals, an interrupted backfill, back-off, a lost store lock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd.connectors.memory import MemoryConnector
from syncd.sandbox.common import ServerHandle, serve
from syncd.sandbox.harvest import SANDBOX_PASSWORD, SANDBOX_USER, HarvestSim
from syncd.store import Store

CLIENT = "11072"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


@pytest.fixture
def harvest() -> Iterator[tuple[HarvestSim, ServerHandle]]:
    sim = HarvestSim(clients=[int(CLIENT)])
    handle = serve(sim.app)
    yield sim, handle
    handle.stop()


def config(tmp: Path, url: str, interval: str = "2s") -> Path:
    path = tmp / "syncd.toml"
    path.write_text(f"""
[store]
url = "sqlite:///{tmp / 'syncd.db'}"

[sync]
interval = "{interval}"
max_delete_fraction = 1.0

[systems.crm]
kind = "memory"
path = "{tmp / 'crm.json'}"

[systems.harvest]
kind = "harvest"
base_url = "{url}"
username = "{SANDBOX_USER}"
max_rps = 200

[organizations.acme]
crm = "1"
harvest = "{CLIENT}"
""")
    return path


def start(args: list[str], secret: str = SANDBOX_PASSWORD) -> subprocess.Popen[str]:
    env = {**os.environ, "SYNCD_SYSTEMS__HARVEST__PASSWORD": secret}
    return subprocess.Popen([sys.executable, "-m", "syncd", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def harvest_people(sim: HarvestSim) -> dict[str, dict[str, object]]:
    with sim.lock:
        return {str(r["email"]).lower(): r for r in sim.admin_dump()}


def test_run_daemon_propagates_edits_serves_metrics_and_stops_on_sigterm(
    tmp_path: Path, harvest: tuple[HarvestSim, ServerHandle]
) -> None:
    sim, handle = harvest
    MemoryConnector("crm", path=tmp_path / "crm.json").add(
        "1", {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@acme.example"})
    cfg = config(tmp_path, handle.url)
    port = free_port()
    proc = start(["--config", str(cfg), "run", "--metrics-port", str(port)])
    try:
        wait_for(lambda: "ada@acme.example" in harvest_people(sim))
        with sim.lock:
            sim.admin_update(str(harvest_people(sim)["ada@acme.example"]["id"]),
                             {"job_title": "Countess"})

        def propagated() -> bool:
            crm = MemoryConnector("crm", path=tmp_path / "crm.json")
            return any(r.fields["job_title"] == "Countess" for r in crm.records.values())

        wait_for(propagated)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        names = {f.name for f in text_string_to_metric_families(metrics)}
        assert {"syncd_cycles", "syncd_records_read", "syncd_writes", "syncd_errors",
                "syncd_rate_limit_waits", "syncd_watermark_age_seconds"} <= names
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert SANDBOX_PASSWORD not in out + err
    store = Store(f"sqlite:///{tmp_path / 'syncd.db'}")
    store.acquire()  # the lock was released
    store.release()


def test_sigterm_ends_the_daemon_within_5_s_while_it_sits_out_a_retry_after(
    tmp_path: Path, harvest: tuple[HarvestSim, ServerHandle]
) -> None:
    """Three ``Retry-After: 30`` in a row once kept the daemon 87 s past SIGTERM."""
    sim, handle = harvest
    sim.fault_retry_after = 30
    sim.faults.throttle_next = 3
    proc = start(["--config", str(config(tmp_path, handle.url)), "run"])
    try:
        wait_for(lambda: sim.counters["throttled"] >= 1)
        time.sleep(0.5)  # inside the first 30 s wait
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - stopped < 5, err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert sim.counters["throttled"] == 1  # the wait was cut short, not sat out and retried


def test_interrupted_backfill_resumes_without_duplicates(
    tmp_path: Path, harvest: tuple[HarvestSim, ServerHandle]
) -> None:
    sim, handle = harvest
    crm = MemoryConnector("crm", path=tmp_path / "crm.json")
    for i in range(40):
        crm.add("1", {"first_name": f"P{i}", "last_name": "Doe", "email": f"p{i}@acme.example"})
    cfg = config(tmp_path, handle.url)
    sim.faults.latency = 0.1
    proc = start(["--config", str(cfg), "backfill"])
    wait_for(lambda: sim.counters["POST"] >= 8)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err[-2000:]
    posted = sim.counters["POST"]
    assert 8 <= posted < 40
    sim.faults.latency = 0.0
    second = start(["--config", str(cfg), "backfill", "--json"])
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err[-2000:]
    # Not a TTY: progress comes as plain (JSON) log lines, one per step.
    progress = [json.loads(line) for line in err.splitlines() if "backfill_progress" in line]
    assert {(p["system"], p["step"]) for p in progress} >= {("crm", "read"), ("harvest", "planned")}
    assert json.loads(out)["systems"]["harvest"]["created"] == 40 - posted
    assert len(harvest_people(sim)) == 40
    assert sim.counters["POST"] == 40


def test_a_failing_system_backs_off_capped_and_recovers() -> None:
    from datetime import UTC, datetime, timedelta

    from syncd.daemon import MAX_BACKOFF, Backoff

    backoff, now, every = Backoff(), datetime(2026, 11, 23, tzinfo=UTC), timedelta(minutes=5)
    waits = []
    for _ in range(6):
        backoff.record("harvest", False, every, now)
        waits.append(backoff.until["harvest"] - now)
    assert waits[:4] == [every, every * 2, every * 4, every * 8]
    assert waits[-1] == MAX_BACKOFF
    assert not backoff.allowed("harvest", now + every)
    assert backoff.allowed("logisense", now)  # the others go on
    backoff.record("harvest", True, every, now)
    assert backoff.allowed("harvest", now)


def test_refused_credentials_exit_4_and_the_other_system_still_syncs(
    tmp_path: Path, harvest: tuple[HarvestSim, ServerHandle]
) -> None:
    _, handle = harvest
    crm = MemoryConnector("crm", path=tmp_path / "crm.json")
    crm.add("1", {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@acme.example"})
    cfg = config(tmp_path, handle.url)
    proc = start(["--config", str(cfg), "once", "--json"], secret="wrong-password")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err[-2000:]
    report = json.loads(out)
    assert "401" in report["systems"]["harvest"]["error"]
    assert "wrong-password" not in out + err
    assert report["systems"]["crm"]["read"] == 1  # the other system was still read


def test_daemon_stops_with_exit_3_when_its_store_lock_is_lost(tmp_path: Path, pg_schema: str) -> None:
    """Issue 10.3b: once the lock's connection dies another instance may write: stop cycling."""
    import sqlalchemy as sa

    from tests.conftest import PG_URL
    from tests.test_store import _lock_pids

    url = f"{PG_URL}?options=-csearch_path%3D{pg_schema}"
    Store(url).upgrade()
    MemoryConnector("crm", path=tmp_path / "crm.json").add(
        "1", {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@acme.example"})
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(f"""
[store]
url = "{url}"

[sync]
interval = "1s"

[systems.crm]
kind = "memory"
path = "{tmp_path / 'crm.json'}"

[systems.billing]
kind = "memory"
path = "{tmp_path / 'billing.json'}"

[organizations.acme]
crm = "1"
billing = "77"
""")
    proc = subprocess.Popen([sys.executable, "-m", "syncd", "--config", str(cfg), "run"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watcher = Store(url)
    try:
        wait_for(lambda: proc.poll() is not None or len(_lock_pids(watcher)) == 1)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        (pid,) = _lock_pids(watcher)
        with watcher.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        watcher.close()
    assert proc.returncode == 3, err[-2000:]
    assert "Traceback" not in err
    assert "lost the instance lock" in err.strip().splitlines()[-1]


def test_a_daemon_whose_store_connections_are_cut_logs_one_line_and_goes_on(
    tmp_path: Path, pg_schema: str, harvest: tuple[HarvestSim, ServerHandle],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Postgres drops the pool's sessions (a restart, a proxy) but not the lock's: the next
    cycle says so in one event, and the one after syncs again."""
    import sqlalchemy as sa

    from tests.conftest import PG_URL
    from tests.test_store import _lock_pids

    sim, handle = harvest
    url = f"{PG_URL}?options=-csearch_path%3D{pg_schema}&application_name={pg_schema}"
    Store(url).upgrade()
    monkeypatch.setenv("SYNCD_STORE__URL", url)
    sim.admin_create(CLIENT, {"first_name": "Ada", "last_name": "L", "email": "ada@acme.example"})
    proc = start(["--config", str(config(tmp_path, handle.url, interval="1s")), "run"])
    crm = tmp_path / "crm.json"
    watcher = Store(url)
    try:
        wait_for(lambda: proc.poll() is not None or (crm.exists() and "ada@" in crm.read_text()))
        (lock,) = _lock_pids(watcher)
        with watcher.engine.connect() as conn:
            cut = conn.execute(sa.text(  # the daemon's sessions but the lock's, and no other
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :app AND pid NOT IN (:lock, pg_backend_pid())"),
                {"app": pg_schema, "lock": lock}).scalar()
        assert cut
        sim.admin_create(CLIENT, {"first_name": "Bob", "last_name": "B", "email": "bob@acme.example"})
        wait_for(lambda: proc.poll() is not None or "bob@" in crm.read_text())
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        watcher.close()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    assert '"event": "store_unavailable"' in err and "terminat" in err
