"""Daily request budgets across processes: the stored runs tell a new connector what was spent.

syncd may run one cycle per process (a Kubernetes CronJob).  A connector with a
daily budget (:class:`~syncd.connectors.base.Budgeted`) counts only its own
requests, so before the first cycle it is handed, from the runs of the last
day, each run's requests and the latest daily-cap rest; every run stores the
rests in its summary (``capped_until``).  No table of its own: the runs
already hold the spend (``syncd status`` sums it too) and a rest never
outlasts the day it was imposed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from syncd.connectors.base import Budgeted
from syncd.store.repo import Store

__all__ = ["LOOKBACK", "caps", "resume_budgets", "resume_from"]

LOOKBACK = timedelta(days=1)
"""A budget day is a day long: an older run spent nothing of it, an older rest is over."""


def resume_budgets(store: Store, connectors: Mapping[str, object], now: datetime) -> None:
    """Hand each budgeted connector what the runs since ``now - LOOKBACK`` say (no query
    when there is none)."""
    if any(isinstance(c, Budgeted) for c in connectors.values()):
        resume_from(store.runs_since(now - LOOKBACK), connectors)


def resume_from(runs: Sequence[Mapping[str, Any]], connectors: Mapping[str, object]) -> None:
    """Hand each budgeted connector its system's requests per run and its latest rest."""
    for name, connector in connectors.items():
        if not isinstance(connector, Budgeted):
            continue
        spent = [(run["started_at"], int(system.get("requests", 0))) for run in runs
                 if (system := run["summary"].get("systems", {}).get(name)) is not None]
        rests = [datetime.fromisoformat(until) for run in runs
                 if (until := run["summary"].get("capped_until", {}).get(name))]
        connector.resume(spent, max(rests, default=None))


def caps(connectors: Mapping[str, object], now: datetime) -> dict[str, str]:
    """The budgeted systems resting after a daily cap at ``now``, and until when (the run
    summary's ``capped_until``)."""
    return {name: until.isoformat() for name, c in sorted(connectors.items())
            if isinstance(c, Budgeted) and (until := c.capped_until()) is not None
            and until > now}
