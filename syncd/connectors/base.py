"""The connector protocol, the REST base every HTTP connector builds on, and the registry.

A connector is mapping + endpoints.  It lists records (all of them, or those
changed since a moment) as pages of :class:`RemoteRecord` already mapped to
canonical fields, and performs create / update / delete with its API's own
semantics.  It never decides *what* to write: the engine does.

What a connector tells the engine about itself is :class:`Capabilities`:
whether it can list incrementally, whether it can delete, which canonical
fields it holds, and their limits (so an over-long value is rejected before
it is sent).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from syncd.config import SystemConfig
from syncd.contact import Fields
from syncd.errors import ConfigError, RecordRejected

__all__ = [
    "KINDS",
    "Capabilities",
    "Connector",
    "FieldLimit",
    "Page",
    "RemoteRecord",
    "RestConnector",
    "WriteResult",
    "build_connector",
    "check_limits",
]


@dataclass(frozen=True, slots=True)
class FieldLimit:
    max_length: int | None = None
    required_on_create: bool = False
    required: bool = False


@dataclass(frozen=True, slots=True)
class Capabilities:
    fields: frozenset[str]
    incremental: bool = False
    can_delete: bool = True
    timestamps: bool = False
    """The system stamps records with its own update time (used by ``newest``)."""
    limits: Mapping[str, FieldLimit] = field(default_factory=dict)
    overlap: timedelta = timedelta(0)
    """How far before the watermark an incremental read starts (the API's granularity)."""


@dataclass(frozen=True, slots=True)
class RemoteRecord:
    """One remote record, mapped to canonical fields."""

    remote_id: str
    org_id: str
    """Its organization's parent id in this system (client-id, account id, ...)."""
    fields: Fields
    updated_at: datetime | None = None
    deleted: bool = False
    """An explicit tombstone from a change feed."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Connector-private data kept in the link (e.g. child ids)."""


@dataclass(frozen=True, slots=True)
class Page:
    records: Sequence[RemoteRecord]


@dataclass(frozen=True, slots=True)
class WriteResult:
    remote_id: str
    fields: Fields | None = None
    """What the system holds now, when its answer says so (else the desired fields)."""
    updated_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Connector(Protocol):
    name: str
    capabilities: Capabilities

    def list_records(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Page]:
        """Pages of records under the given organizations; ``since=None`` is a full scan.

        Incremental pages come in ascending ``updated_at`` order so that a
        failure mid-way still leaves a safe watermark.
        """
        ...

    def create(self, org_id: str, fields: Fields) -> WriteResult: ...

    def update(
        self,
        remote_id: str,
        org_id: str,
        changed: Fields,
        desired: Fields,
        extra: Mapping[str, Any],
    ) -> WriteResult:
        """Apply ``changed`` (PATCH-style APIs) or ``desired`` (PUT-style APIs)."""
        ...

    def delete(self, remote_id: str, org_id: str, extra: Mapping[str, Any]) -> None: ...

    def request_count(self) -> int: ...

    def throttled_count(self) -> int:
        """How many times the system answered with its rate-limit signal so far."""
        ...

    def close(self) -> None: ...


def check_limits(caps: Capabilities, fields: Fields, *, creating: bool) -> tuple[str, str] | None:
    """The first (field, reason) that breaks this system's limits, or None."""
    for name, limit in caps.limits.items():
        value = fields.get(name, "")
        if limit.max_length is not None and len(value) > limit.max_length:
            return name, f"{len(value)} characters, the limit is {limit.max_length}"
        if (limit.required or (creating and limit.required_on_create)) and not value.strip():
            return name, "required, but empty"
    return None


class RestConnector:
    """Shared plumbing for HTTP connectors: an ``HttpClient``, names, request counting.

    Subclasses set ``capabilities`` and implement the four operations with
    ``self.http.request(...)``; they raise ``RecordRejected`` with the system's
    own message when a record is refused.
    """

    capabilities: Capabilities

    def __init__(self, name: str, http: Any) -> None:
        self.name = name
        self.http = http

    def request_count(self) -> int:
        return int(self.http.stats.requests)

    def throttled_count(self) -> int:
        return int(self.http.stats.rate_limited)

    def close(self) -> None:
        self.http.close()

    def reject(self, what: str, message: str) -> RecordRejected:
        return RecordRejected(f"{self.name}: {what}: {message}", system=self.name)


KINDS: dict[str, str] = {
    "memory": "syncd.connectors.memory",
    "lightening": "syncd.connectors.lightening",
    "harvest": "syncd.connectors.harvest",
    "zoho_books": "syncd.connectors.zoho_books",
    "logisense": "syncd.connectors.logisense",
    "valomnia": "syncd.connectors.valomnia",
}


def build_connector(name: str, cfg: SystemConfig, **options: Any) -> Connector:
    """Instantiate the connector for one configured system.

    Each connector module exposes ``from_config(name, cfg, **options)``.
    """
    module_name = KINDS[cfg.kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigError(
                f"systems.{name}: kind {cfg.kind!r} has no connector in this build yet"
            ) from None
        raise
    connector: Connector = module.from_config(name, cfg, **options)
    return connector
