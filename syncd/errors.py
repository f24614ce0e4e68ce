"""The exception tree, named by what the caller should do.

::

    SyncdError
    ├── ConfigError            usage or configuration problem          → exit 2
    ├── GuardError             a safety guard stopped the cycle        → exit 3
    │   ├── MassDeleteError    a system lists far fewer records
    │   └── StoreLockedError   another instance holds the store lock
    ├── StoreUnavailable       the store cannot be reached, read or written → exit 4
    └── ConnectorError         something went wrong talking to a system
        ├── RetriableError     try again later (429/503/5xx, network, timeout)
        │   ├── NotApplied     the system said the write did not happen: safe to resend
        │   │   └── RateLimited  its throttle signal: not applied, wait and resend
        │   ├── OutcomeUnknown a write may have landed: never resent blindly
        │   └── BadAnswer      an answer we cannot read (wrong shape, cut off, too big)
        ├── RecordRejected     this one record is refused; the rest go on
        │   └── NotFound       404: the record is gone
        ├── Stale              changed there since it was read (412): re-read, plan again
        └── SystemUnavailable  this system is unusable this cycle      → exit 4
            ├── AuthError      401/403: credentials refused
            └── Throttled      told to wait longer than a cycle allows

A connector raises only ``ConnectorError`` subclasses; the engine decides what
each means for the cycle (backoff, quarantine, stop the system).
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BadAnswer",
    "ConfigError",
    "ConnectorError",
    "GuardError",
    "MassDeleteError",
    "NotApplied",
    "NotFound",
    "OutcomeUnknown",
    "RateLimited",
    "RecordRejected",
    "RetriableError",
    "Stale",
    "StoreLockedError",
    "StoreUnavailable",
    "SyncdError",
    "SystemUnavailable",
    "Throttled",
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


class StoreUnavailable(SyncdError):
    """The store cannot be reached, opened, read or written (Postgres down, a
    read-only, damaged or misplaced SQLite file).  Found at start-up, before
    any system is polled, so nothing is read that could not be recorded."""

    exit_code = 4


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


class NotApplied(RetriableError):
    """The system answered that the write did not happen and may be tried later
    (Lightening's bare ``error``, Zoho's non-zero ``code`` that is not about a field).

    Not a rejection of the record: resent with backoff like a 5xx on an idempotent
    write, counted as a failed attempt, quarantined only after ``sync.max_attempts``.
    A create refused this way is known not to exist, so it is not an unknown outcome.
    """


class RateLimited(NotApplied):
    """The system's own throttle signal (429, Harvest's 503 + Retry-After): nothing was applied."""


class OutcomeUnknown(RetriableError):
    """A write whose answer may mean "applied" (5xx, timeout, cut connection, unreadable answer).

    Never resent in the same cycle: the next poll shows whether it landed.
    """


class BadAnswer(RetriableError):
    """An answer that is not what the API promises: not parseable, wrong shape, too large."""


class RecordRejected(ConnectorError):
    """The system refused this one record (validation); retrying as-is will not help."""


class NotFound(RecordRejected):
    """The record is not there (404, "Entity not found."): deleted on the other side."""


class Stale(ConnectorError):
    """The record changed since it was read (a 412 to ``If-Match``): nothing was written.

    Neither a failure nor a reason to overwrite: the next cycle reads the new
    version, plans again and derives the write anew (the person stays unsettled).
    """


class SystemUnavailable(ConnectorError):
    """The system cannot be used this cycle (unreachable after retries, misconfigured)."""

    exit_code = 4


class AuthError(SystemUnavailable):
    """Credentials refused (401/403) even after a fresh login."""


class Throttled(SystemUnavailable):
    """The system asked for a wait longer than a cycle may take; it resumes later."""
