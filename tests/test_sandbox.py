"""`syncd sandbox` and `syncd demo` as a newcomer meets them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

from syncd.config import load_settings
from syncd.contact import normalise
from syncd.sandbox.demo import run_demo
from syncd.sandbox.serve import PORT_OFFSETS, build_sandbox


def free_base() -> int:
    """A base port with the five ports after it free (best effort)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = int(sock.getsockname()[1]) - 5
        if base < 20000:
            continue
        try:
            for offset in range(5):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port range")


def test_seed_spans_two_organizations_and_repeats_people_across_systems() -> None:
    box = build_sandbox(12)
    assert set(box.sims) <= set(PORT_OFFSETS)
    for sim in box.sims.values():
        assert len({str(r["org"]) for r in sim.admin_dump()}) == 2
    emails = [normalise("email", r["email"]) for sim in box.sims.values() for r in sim.admin_dump()]
    assert len(emails) > len(set(emails))  # some people are in several systems
    assert len(box.seeded) == 12


def test_sandbox_command_serves_on_consecutive_ports_with_a_ready_config(tmp_path: Path) -> None:
    base = free_base()
    cfg = tmp_path / "sandbox.toml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd", "sandbox", "--port", str(base), "--contacts", "8",
         "--write-config", str(cfg)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 30
        while not cfg.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        settings = load_settings(cfg)
        for name, system in settings.systems.items():
            root = f"http://127.0.0.1:{base + PORT_OFFSETS[name]}"
            # The API may live under a path of its port (Zoho: /books/v3); admin is at the root.
            assert system.base_url == root or system.base_url.startswith(root + "/")
            state = httpx.get(f"{root}/_admin/state", timeout=5).json()
            assert state["records"]
        once = subprocess.run([sys.executable, "-m", "syncd", "--config", str(cfg), "once", "--json"],
                              capture_output=True, text=True, timeout=120)
        assert once.returncode == 0, once.stderr[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_demo_ends_with_every_system_agreeing() -> None:
    console = Console(record=True, width=120)
    assert run_demo(console) == 0
    text = console.export_text()
    assert "all systems agree" in text and "second sync" in text
