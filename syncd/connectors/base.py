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
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from syncd.config import SystemConfig
from syncd.contact import Fields
from syncd.errors import ConfigError, RecordRejected
from syncd.model import (
    Capabilities,
    FieldLimit,
    Page,
    RemoteRecord,
    WriteResult,
    check_limits,
)

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


@runtime_checkable
class Connector(Protocol):
    name: str
    capabilities: Capabilities

    def open(self) -> None:
        """Log in and discover what the server offers; may narrow ``capabilities``.

        Called before every cycle's reads (cheap once done); the planner takes
        its snapshot of capabilities after it.
        """
        ...

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

    def open(self) -> None:
        return None

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
