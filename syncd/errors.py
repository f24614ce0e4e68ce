"""The exception tree, named by what the caller should do.

::

    SyncdError
    ├── ConfigError            usage or configuration problem          → exit 2
    ├── GuardError             a safety guard stopped the cycle        → exit 3
    │   ├── MassDeleteError    a system lists far fewer records
    │   └── StoreLockedError   another instance holds the store lock
    └── ConnectorError         something went wrong talking to a system
        ├── RetriableError     try again later (429/503/5xx, network, timeout)
        ├── RecordRejected     this one record is refused; the rest go on
        └── SystemError_       this system is unusable this cycle      → exit 4
            └── AuthError      401/403: credentials refused

A connector raises only ``ConnectorError`` subclasses; the engine decides what
each means for the cycle (backoff, quarantine, stop the system).
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "ConnectorError",
    "GuardError",
    "MassDeleteError",
    "NotFound",
    "RecordRejected",
    "RetriableError",
    "StoreLockedError",
    "SyncdError",
    "SystemUnavailable",
]


class SyncdError(Exception):
    exit_code = 1


class ConfigError(SyncdError):
    exit_code = 2


class GuardError(SyncdError):
    exit_code = 3


class MassDeleteError(GuardError):
    def __init__(self, trips: list[tuple[str, int, int]], fraction: float) -> None:
        self.trips = trips
        parts = ", ".join(
            f"{system}: {deleted} of {linked} linked records gone" for system, deleted, linked in trips
        )
        super().__init__(
            f"mass-delete guard: {parts} (max_delete_fraction={fraction}); "
            "nothing was changed. Check the system, then rerun with --force-delete to accept."
        )


class StoreLockedError(GuardError):
    pass


class ConnectorError(SyncdError):
    """Base of every error a connector raises."""

    def __init__(self, message: str, *, system: str = "") -> None:
        self.system = system
        super().__init__(message)


class RetriableError(ConnectorError):
    """Temporary: rate limited, server error, network trouble, timeout."""

    def __init__(self, message: str, *, system: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, system=system)
        self.retry_after = retry_after


class RecordRejected(ConnectorError):
    """The system refused this one record (validation); retrying as-is will not help."""


class NotFound(RecordRejected):
    """The record is not there (404, "Entity not found."): deleted on the other side."""


class SystemUnavailable(ConnectorError):
    """The system cannot be used this cycle (unreachable after retries, misconfigured)."""

    exit_code = 4


class AuthError(SystemUnavailable):
    """Credentials refused (401/403) even after a fresh login."""
