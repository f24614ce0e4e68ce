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
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["HEAD", "head", "stored_revision", "upgrade"]

HEAD = "0006"
"""The newest migration: a store at it needs no Alembic at all (importing Alembic costs
every command a few tenths of a second).  A test holds it equal to :func:`head`."""


def _config() -> Config:
    from alembic.config import Config

    location = resources.files("syncd.migrations")
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    return cfg


def head() -> str | None:
    """The newest migration, as Alembic reads it from the migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def stored_revision(conn: Connection) -> str | None:
    """The migration the store is at (None: not migrated yet)."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

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
