"""Persistence: SQLModel tables, queries, migrations and the instance lock."""

from __future__ import annotations

from syncd.store.repo import Store

__all__ = ["Store"]
