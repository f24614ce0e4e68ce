"""A daily request budget (Zoho's plan cap): what is spent today and what reads may spend now.

Writes go first: they may use the whole budget.  Reads are paced evenly over
the budget day and may use :data:`READ_SHARE` of it, at most one cycle's share
at a time, so a sweep that cannot read everything each cycle goes round-robin.

What earlier processes spent comes from the stored runs (:meth:`DailyBudget.resume`):
syncd may run one cycle per process (a CronJob), and each process counts only
its own requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

__all__ = ["DAY", "READ_SHARE", "DailyBudget"]

READ_SHARE = 0.9
"""ASSUMPTION: reads may pace up to 90 % of the day's budget; the last tenth is the writes'."""
DAY = timedelta(days=1)


@dataclass
class DailyBudget:
    """Requests per budget day: how many are spent and how many reads this cycle may make."""

    limit: int
    reset: time
    interval: timedelta
    start: datetime | None = None
    base: int = 0
    capped_until: datetime | None = None

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """The current budget day: from the last reset to the next."""
        today = datetime.combine(now.astimezone(UTC).date(), self.reset, tzinfo=UTC)
        start = today if now >= today else today - DAY
        return start, start + DAY

    def used(self, now: datetime, requests: int) -> int:
        start, _ = self.window(now)
        if self.start != start:
            self.start, self.base = start, requests
        return requests - self.base

    def spent(self, now: datetime, runs: Iterable[tuple[datetime, int]]) -> int:
        """The requests of the runs (start, requests) that started in the current budget day."""
        start, end = self.window(now)
        return sum(n for at, n in runs if start <= at < end)

    def resume(self, now: datetime, requests: int, runs: Iterable[tuple[datetime, int]],
               capped_until: datetime | None) -> None:
        """Take over what earlier processes spent today and a cap's rest that still holds.

        ``requests`` is this process's own count so far; ``runs`` the earlier runs'
        (start, requests).  From here :meth:`used` counts both.
        """
        start, _ = self.window(now)
        self.start, self.base = start, requests - self.spent(now, runs)
        if capped_until is not None and capped_until > now:
            self.capped_until = max(capped_until, self.capped_until or capped_until)

    def reads_allowed(self, now: datetime, requests: int) -> int:
        """Reads paced over the day (what writes spent comes off), at most one cycle's share."""
        start, _ = self.window(now)
        share = self.limit * READ_SHARE
        paced = math.floor(share * min(1.0, (now - start + self.interval) / DAY))
        per_cycle = max(1, math.floor(share * (self.interval / DAY)))
        return max(0, min(paced - self.used(now, requests), per_cycle))

    def status(self, now: datetime, requests: int) -> dict[str, Any]:
        return {"used": self.used(now, requests), "limit": self.limit,
                "resets_at": self.window(now)[1].isoformat(),
                "capped_until": self.capped_until.isoformat() if self.capped_until else None}
