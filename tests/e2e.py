"""Running the real command line in a subprocess, as an operator would.

``write_config`` writes a configuration of two memory systems (``crm`` and
``billing``, JSON files under the test's directory) that ``crm()`` and
``billing()`` open as the user's side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from syncd.connectors.memory import MemoryConnector

REPO = Path(__file__).resolve().parents[1]


def once_json(config: Path, secrets: dict[str, str]) -> dict[str, Any]:
    """``syncd --config CONFIG once --json`` with secrets from the environment only.

    Fails unless the cycle exits 0 and no secret value shows in its output.
    """
    env = {**os.environ, **secrets}
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(config), "once", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for value in secrets.values():
        assert value not in done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report



# -- a configuration of two memory systems, crm and billing ------------------------------------

def write_config(tmp: Path, extra: str = "", **sync: object) -> Path:
    lines = [f'[store]\nurl = "sqlite:///{tmp / "syncd.db"}"\n', "[sync]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in sync.items()]
    lines.append(f"""
[systems.crm]
kind = "memory"
path = "{tmp / 'crm.json'}"

[systems.billing]
kind = "memory"
path = "{tmp / 'billing.json'}"
incremental = true

[organizations.acme]
crm = "1"
billing = "77"
{extra}""")
    path = tmp / "syncd.toml"
    path.write_text("\n".join(lines))
    return path


def syncd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )


def crm(tmp: Path) -> MemoryConnector:
    return MemoryConnector("crm", path=tmp / "crm.json")


def billing(tmp: Path) -> MemoryConnector:
    return MemoryConnector("billing", path=tmp / "billing.json", incremental=True)


def assert_fits(text: str) -> None:
    """No printed line of a table is wider than 80 columns, and nothing was cut with '…'."""
    for line in text.splitlines():
        if line[:1] in "┏┃┡│└├┗":
            assert len(line) <= 80, line
    assert "…" not in text, text
