"""Fixtures every test module may use: an empty store of each backend (SQLite, Postgres),
the Postgres schema of one test, and the log levels (quiet by default, ``debug_logs``).

Shared helpers that are not fixtures live in modules of their own: ``tests.world``
(memory systems around a store), ``tests.e2e`` (the command line), ``tests.contract``
(the connector contract), ``tests.dav``, ``tests.history`` and ``tests.policies``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import freezegun
import pytest
import sqlalchemy as sa

from syncd.sandbox.common import stop_all
from syncd.store import Store
from tests.contract import STOPPING, served_sim

__all__ = ["served_sim"]


@pytest.fixture(scope="session", autouse=True)
def servers_stopped() -> Iterator[None]:
    """Wait, once the session is over, for every simulator a test told to stop."""
    yield
    stop_all(STOPPING)


# A simulator served in a thread runs an asyncio loop.  freeze_time(real_asyncio=True) gives
# loops the real clock only after it has frozen time.monotonic; a loop that reads the clock
# in between schedules its next tick at the frozen epoch, years ahead, and its server then
# never stops (ServerHandle.stop waits 10 s).  Frames of asyncio always see the real clock.
freezegun.configure(extend_ignore_list=["asyncio"])

PG_URL = os.environ.get("SYNCD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> str | None:
    try:
        engine = sa.create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return str(exc)


@pytest.fixture(scope="session")
def pg_available() -> bool:
    problem = _pg_reachable()
    if problem is None:
        return True
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Postgres at {PG_URL} is required in CI and unreachable: {problem}")
    pytest.skip(f"Postgres unreachable: {problem}")


@pytest.fixture
def pg_schema(pg_available: bool) -> Iterator[str]:
    """A fresh Postgres schema for one test, dropped afterwards."""
    name = "t_" + uuid.uuid4().hex[:12]
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    yield name
    engine.dispose()  # a fresh connection: a test may have cut every session
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """(url, schema) for an empty store of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'syncd.db'}", None
    else:
        schema = request.getfixturevalue("pg_schema")
        yield PG_URL, schema


@pytest.fixture
def store(store_url: tuple[str, str | None]) -> Iterator[Store]:
    url, schema = store_url
    s = Store(url, schema=schema)
    s.upgrade()
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'syncd.db'}")
    s.upgrade()
    yield s
    s.close()


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs() -> None:
    from syncd.logs import configure_logging

    configure_logging("error", json=True)


@pytest.fixture
def debug_logs() -> Iterator[None]:
    """Every level reaches ``capture_logs`` (the session filters below "error")."""
    import logging

    import structlog

    wrapper = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(wrapper_class=wrapper)
