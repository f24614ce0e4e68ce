"""SQLModel tables.  JSON values are stored as text so SQLite and Postgres agree.

Datetimes are stored with their zone and always read back as aware UTC
(SQLite drops the zone; :class:`UTCDateTime` puts it back).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

__all__ = [
    "C",
    "ChangeRow",
    "ConflictRow",
    "F",
    "FailureRow",
    "G",
    "GoldenRow",
    "H",
    "L",
    "LinkRow",
    "R",
    "RevisionRow",
    "RunRow",
    "U",
    "UTCDateTime",
    "UnsettledRow",
    "V",
    "W",
    "WatermarkRow",
    "metadata",
    "read_utc",
]


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; syncd uses aware UTC only")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        return read_utc(value)


def read_utc(value: Any) -> datetime | None:
    """A stored datetime as aware UTC: SQLite gives naive UTC text, Postgres an aware value."""
    if value is None:
        return None
    when: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index))


class GoldenRow(SQLModel, table=True):
    __tablename__ = "golden"

    id: str = Field(primary_key=True, max_length=64)
    org: str = Field(max_length=200, index=True)
    fields_json: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    deleted: bool = False
    updated_at: datetime = _ts()


class LinkRow(SQLModel, table=True):
    __tablename__ = "link"
    __table_args__ = (
        sa.UniqueConstraint("system", "remote_id", name="uq_link_system_remote"),
        sa.UniqueConstraint("golden_id", "system", name="uq_link_golden_system"),
    )

    id: int | None = Field(default=None, primary_key=True)
    system: str = Field(max_length=100)
    remote_id: str | None = Field(default=None, max_length=200)
    # No separate index on golden_id: uq_link_golden_system (golden_id, system) serves it.
    golden_id: str = Field(max_length=64, foreign_key="golden.id")
    org_id: str = Field(max_length=200)
    fields_json: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    hash: str = Field(max_length=64)
    remote_updated_at: datetime | None = _ts(nullable=True)
    extra_json: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    excluded: bool = False
    updated_at: datetime = _ts()


class WatermarkRow(SQLModel, table=True):
    __tablename__ = "watermark"

    system: str = Field(primary_key=True, max_length=100)
    cursor: datetime | None = _ts(nullable=True)
    last_poll_at: datetime | None = _ts(nullable=True)
    last_full_scan_at: datetime | None = _ts(nullable=True)
    last_success_at: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    token: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))


class FailureRow(SQLModel, table=True):
    __tablename__ = "failure"
    __table_args__ = (sa.UniqueConstraint("system", "golden_id", name="uq_failure_system_golden"),)

    id: int | None = Field(default=None, primary_key=True)
    system: str = Field(max_length=100)
    golden_id: str = Field(max_length=64, index=True)
    action: str = Field(max_length=20)
    remote_id: str | None = Field(default=None, max_length=200)
    attempts: int = 0
    last_error: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    desired_hash: str = Field(max_length=64)
    quarantined: bool = False
    outcome_unknown: bool = Field(default=False, sa_column=sa.Column(
        sa.Boolean, nullable=False, server_default=sa.false()))
    next_retry_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ConflictRow(SQLModel, table=True):
    __tablename__ = "conflict"

    id: int | None = Field(default=None, primary_key=True)
    golden_id: str = Field(max_length=64, index=True)
    field: str = Field(max_length=50)
    candidates_json: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    winner: str = Field(max_length=100)
    value: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    policy: str = Field(max_length=20)
    resolved: bool = False
    created_at: datetime = _ts()


class UnsettledRow(SQLModel, table=True):
    """People who may still have writes to receive (see ``Store.unsettled``).

    Written in the plan's transaction before any push and cleared only after a
    push settled the person, so a crash leaves a superset: a fresh process
    derives writes for these people and the ones its poll touched, not for all.
    One row ``#<marker>`` says under which set-up of the systems the set holds.
    """

    __tablename__ = "unsettled"

    golden_id: str = Field(primary_key=True, max_length=64)


class RevisionRow(SQLModel, table=True):
    """One row counting committed write transactions: a cheap "has anything changed?"."""

    __tablename__ = "store_revision"

    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    value: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))


class RunRow(SQLModel, table=True):
    __tablename__ = "run"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)
    started_at: datetime = _ts(index=True)
    finished_at: datetime | None = _ts(nullable=True)
    exit_code: int | None = None
    summary_json: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


class ChangeRow(SQLModel, table=True):
    """The changes one commit made to one golden record (CONTRACT §5), written with it.

    One row per person per commit, its changes (one per field) in ``changes_json``
    as ``[field, old, new, source, conflict]`` lists: a first sync of 10 000 people
    writes 10 000 small rows, not 60 000.  Change ``i`` of row ``id`` has the
    change id ``id * 100 + i`` (``syncd.store.history``), so ids still increase in
    the order the changes were made.  ``run_id`` names the run that committed
    it; no foreign key, because runs are pruned on their own schedule (only
    those no change points to, see ``Store.record_run``).
    """

    __tablename__ = "history"
    # Ids only ever increase, even once the newest rows were pruned (SQLite reuses otherwise).
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    run_id: int = Field(index=True)
    golden_id: str = Field(max_length=64, index=True)
    count: int
    """How many changes ``changes_json`` holds (``syncd runs`` sums it)."""
    changes_json: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


metadata = SQLModel.metadata

# The tables themselves, for SQLAlchemy Core queries.
G: sa.Table = GoldenRow.__table__  # type: ignore[attr-defined]
L: sa.Table = LinkRow.__table__  # type: ignore[attr-defined]
W: sa.Table = WatermarkRow.__table__  # type: ignore[attr-defined]
F: sa.Table = FailureRow.__table__  # type: ignore[attr-defined]
C: sa.Table = ConflictRow.__table__  # type: ignore[attr-defined]
R: sa.Table = RunRow.__table__  # type: ignore[attr-defined]
V: sa.Table = RevisionRow.__table__  # type: ignore[attr-defined]
U: sa.Table = UnsettledRow.__table__  # type: ignore[attr-defined]
H: sa.Table = ChangeRow.__table__  # type: ignore[attr-defined]
