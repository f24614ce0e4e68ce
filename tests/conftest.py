from __future__ import annotations

from tests.contract import served_sim

__all__ = ["served_sim"]
