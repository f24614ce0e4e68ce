"""The daemon (``syncd run``), on top of ``Syncer.run_once``.

The daemon schedules one APScheduler job per enabled system at its interval
(jittered) and, for incremental systems, a full-scan sweep at
``full_scan_interval``.  Jobs share one lock, so cycles never plan
concurrently; a job polls its own system and pushes whatever that makes due
everywhere.  A system that keeps failing is skipped for a capped,
exponentially growing time while the others go on.  SIGTERM/SIGINT set the
Syncer's stop flag: the write in hand completes, the rest waits for the next
start, the lock is released and the process exits 0.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler

from syncd.app import syncer
from syncd.config import Settings
from syncd.errors import StoreLockedError, StoreUnavailable
from syncd.logs import get_logger
from syncd.metrics import Metrics, MetricsServer

__all__ = ["Backoff", "run_daemon", "signals"]

log = get_logger("syncd.daemon")
MAX_BACKOFF = timedelta(hours=1)


class Backoff:
    """Per-system capped exponential backoff after failed cycles."""

    def __init__(self, cap: timedelta = MAX_BACKOFF) -> None:
        self.cap = cap
        self.failures: dict[str, int] = {}
        self.until: dict[str, datetime] = {}

    def allowed(self, system: str, now: datetime) -> bool:
        return now >= self.until.get(system, now)

    def record(self, system: str, ok: bool, interval: timedelta, now: datetime) -> None:
        if ok:
            self.failures.pop(system, None)
            self.until.pop(system, None)
            return
        n = self.failures.get(system, 0) + 1
        self.failures[system] = n
        self.until[system] = now + min(self.cap, interval * (2 ** (n - 1)))


@contextmanager
def signals(stop: threading.Event) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_daemon(
    settings: Settings, *, metrics_port: int | None = None, force_delete: bool = False
) -> int:
    """Run until SIGTERM/SIGINT; 0 on a clean stop.

    Before each cycle the daemon checks that it still holds the store's
    instance lock; if the lock went with its connection, it finishes the
    write in hand, stops and raises ``StoreLockedError`` (exit 3).
    """
    interval = min((settings.system_interval(n) for n in settings.enabled_systems()),
                   default=settings.sync.interval)
    metrics = Metrics(interval)
    server = MetricsServer(metrics, metrics_port).start() if metrics_port is not None else None
    backoff = Backoff()
    cycle_lock = threading.Lock()
    lock_lost = threading.Event()
    try:
        with syncer(settings) as s, signals(s.stop):

            def job(system: str, full: bool) -> None:
                if s.stop.is_set():
                    return
                now = datetime.now(UTC)
                if not backoff.allowed(system, now):
                    log.info("backing_off", system=system, until=backoff.until[system].isoformat())
                    return
                with cycle_lock:
                    if s.stop.is_set():
                        return
                    if not s.store.lock_held():
                        # Another instance may hold the store now: no more cycles.
                        log.error("store_lock_lost", system=system)
                        lock_lost.set()
                        s.stop.set()
                        return
                    kind = "sweep" if full else "poll"
                    try:
                        report = s.run_once(only={system}, full={system} if full else None,
                                            force_delete=force_delete, kind=kind)
                    except StoreLockedError:  # lost during the cycle: nothing was written
                        log.error("store_lock_lost", system=system)
                        lock_lost.set()
                        s.stop.set()
                        return
                    except StoreUnavailable as exc:  # the next tick connects again
                        log.error("store_unavailable", system=system, error=str(exc))
                        backoff.record(system, False, settings.system_interval(system),
                                       datetime.now(UTC))
                        return
                    metrics.observe(report, kind, s.store.watermarks())
                ok = report.systems[system].error is None and report.exit_code != 3
                backoff.record(system, ok, settings.system_interval(system), datetime.now(UTC))

            scheduler = BackgroundScheduler(timezone=UTC)
            start = datetime.now(UTC)
            for name in settings.enabled_systems():
                every = settings.system_interval(name)
                scheduler.add_job(
                    job, "interval", args=[name, False], id=f"poll:{name}",
                    seconds=every.total_seconds(), jitter=max(1, int(every.total_seconds() / 10)),
                    next_run_time=start, max_instances=1, coalesce=True,
                    misfire_grace_time=int(every.total_seconds()),
                )
                if s.connectors[name].capabilities.incremental:
                    sweep = settings.sync.full_scan_interval
                    scheduler.add_job(
                        job, "interval", args=[name, True], id=f"sweep:{name}",
                        seconds=sweep.total_seconds(), max_instances=1, coalesce=True,
                        misfire_grace_time=int(sweep.total_seconds()),
                    )
            scheduler.start()
            log.info("daemon_started", systems=settings.enabled_systems(),
                     metrics_port=server.port if server else None)
            s.stop.wait()
            scheduler.shutdown(wait=True)
            log.info("daemon_stopped")
    finally:
        if server is not None:
            server.stop()
    if lock_lost.is_set():
        raise StoreLockedError(
            "lost the instance lock on the store (its connection died); stopped cycling so "
            "that only one instance writes: restart syncd when the store is reachable"
        )
    return 0
