"""Run the Alembic migrations programmatically (``syncd db upgrade``, first ``once``)."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

__all__ = ["upgrade"]


def _config() -> Config:
    location = resources.files("syncd.migrations")
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
