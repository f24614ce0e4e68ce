"""Running the real command line in a subprocess, as an operator would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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
