"""The one-shot backfill (``syncd backfill``): one cycle that reads everything again.

Resumable because writes are derived, never queued: an interrupted backfill
keeps what it did, and the next one finds it done.  Progress goes to a rich
bar per system on a terminal, to log lines otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from syncd.app import syncer
from syncd.config import Settings
from syncd.daemon import signals
from syncd.engine.cycle import Syncer
from syncd.engine.report import CycleReport
from syncd.errors import ConfigError
from syncd.logs import get_logger

__all__ = ["backfill"]

log = get_logger("syncd.daemon")


def backfill(
    settings: Settings,
    *,
    systems: list[str] | None = None,
    since: datetime | None = None,
    force_delete: bool = False,
) -> CycleReport:
    """Re-read ignoring watermarks, reconcile, push; resumable because writes are derived."""
    unknown = [n for n in systems or [] if n not in settings.systems]
    if unknown:
        raise ConfigError(f"--system: unknown system(s) {', '.join(unknown)}")
    with syncer(settings) as s, signals(s.stop), _progress(s):
        full = set(systems) if systems else set()
        report = s.run_once(full=full if since is None else None, since=since,
                            force_delete=force_delete, kind="backfill")
        if s.stop.is_set():
            report.errors.append("interrupted: run backfill again to finish (done work is kept)")
            report.interrupted = True
        return report


@contextmanager
def _progress(s: Syncer) -> Iterator[None]:
    """A rich progress bar per system on a TTY, plain log lines otherwise."""
    if not sys.stderr.isatty():
        counts: dict[tuple[str, str], int] = {}

        def plain(system: str, what: str, n: int) -> None:
            key = (system, what)
            counts[key] = counts.get(key, 0) + n
            if what != "written" or counts[key] % 500 == 0:
                log.info("backfill_progress", system=system, step=what, count=counts[key])

        s.progress = plain
        yield
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn(), transient=False)
    tasks: dict[tuple[str, str], TaskID] = {}
    planned: dict[str, int] = {}

    def fancy(system: str, what: str, n: int) -> None:
        if what == "planned":
            tasks[(system, "written")] = bar.add_task(f"{system}: writes", total=n)
            planned[system] = n
            return
        if what == "planned_more":  # the next group of a large cycle
            planned[system] = planned.get(system, 0) + n
            bar.update(tasks[(system, "written")], total=planned[system])
            return
        key = (system, what)
        if key not in tasks:
            tasks[key] = bar.add_task(f"{system}: records read", total=None)
        bar.advance(tasks[key], n)

    s.progress = fancy
    with bar:
        yield


