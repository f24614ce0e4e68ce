"""Import boundaries: the planner stays pure, the store never depends on the engine.

Each check imports one module in a fresh interpreter and looks at what came
with it, so an indirect import (A → B → pydantic) is caught as well.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _loaded(module: str) -> set[str]:
    code = (
        f"import json, sys, {module}; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("module", ["syncd.engine.plan", "syncd.engine.writes", "syncd.model"])
def test_planner_imports_no_io_library(module: str) -> None:
    heavy = {m.split(".")[0] for m in _loaded(module)} & {"pydantic", "sqlalchemy", "httpx"}
    assert not heavy, f"{module} pulls in {sorted(heavy)}"


def test_model_imports_nothing_of_ours_but_contact() -> None:
    ours = {m for m in _loaded("syncd.model") if m.startswith("syncd.")}
    assert ours <= {"syncd.model", "syncd.contact"}, sorted(ours)


def test_store_does_not_import_the_engine() -> None:
    engine = {m for m in _loaded("syncd.store") if m.startswith("syncd.engine")}
    assert not engine, sorted(engine)
