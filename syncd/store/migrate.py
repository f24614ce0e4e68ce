"""Run the Alembic migrations programmatically (``syncd db upgrade``, first ``once``).

Every upgrade is one transaction, on Postgres and on SQLite alike: a process
killed half-way (SIGKILL, OOM, a pulled plug) leaves the store exactly as it
was, and the next run simply migrates again.  SQLite supports transactional
DDL, but Python's ``sqlite3`` driver does not use it: in its legacy mode it
opens a transaction only before INSERT/UPDATE/DELETE, so each CREATE TABLE
commits on its own and a kill between two of them left a store that every
later run refused ("table golden already exists").  On SQLite the migration
connection therefore switches the driver to autocommit and issues its own
``BEGIN IMMEDIATE`` (SQLAlchemy's documented recipe), which also takes the
write lock before the first statement.
"""

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
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        return
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        legacy = driver.isolation_level  # type: ignore[union-attr]
        driver.isolation_level = None  # type: ignore[union-attr]
        try:
            # SQLAlchemy's transaction wraps ours: its commit() and rollback()
            # reach sqlite3, which ends the BEGIN we issued.
            with conn.begin():
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        finally:
            driver.isolation_level = legacy  # type: ignore[union-attr]
