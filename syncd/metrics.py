"""Prometheus metrics and the health endpoint of the daemon.

``/metrics`` is the Prometheus text format; ``/healthz`` answers 200 while a
cycle succeeded within three poll intervals (or the daemon is still in its
first three intervals), else 503.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from syncd.engine.report import CycleReport

__all__ = ["Metrics", "MetricsServer"]


class Metrics:
    def __init__(self, interval: timedelta) -> None:
        self.registry = CollectorRegistry()
        self.interval = interval
        self.started = datetime.now(UTC)
        self.last_success: datetime | None = None
        r = self.registry
        self.cycles = Counter("syncd_cycles", "Sync cycles run", ["kind", "result"], registry=r)
        self.records = Counter("syncd_records_read", "Records read", ["system"], registry=r)
        self.writes = Counter("syncd_writes", "Writes done", ["system", "kind"], registry=r)
        self.errors = Counter("syncd_errors", "Failed writes and polls", ["system"], registry=r)
        self.rate_limited = Counter(
            "syncd_rate_limit_waits", "Throttle answers waited out", ["system"], registry=r
        )
        self.watermark_age = Gauge(
            "syncd_watermark_age_seconds", "Age of each system's watermark", ["system"], registry=r
        )
        self.last_success_ts = Gauge(
            "syncd_last_success_timestamp_seconds", "When a cycle last succeeded", registry=r
        )

    def observe(self, report: CycleReport, kind: str, watermarks: dict[str, Any]) -> None:
        result = "ok" if report.exit_code in (0, 1) else "error"
        self.cycles.labels(kind=kind, result=result).inc()
        for name, s in report.systems.items():
            self.records.labels(system=name).inc(s.read)
            for label, n in (("create", s.created), ("update", s.updated), ("delete", s.deleted)):
                if n:
                    self.writes.labels(system=name, kind=label).inc(n)
            if s.rate_limited:
                self.rate_limited.labels(system=name).inc(s.rate_limited)
            failures = s.failed + s.rejected + (1 if s.error else 0)
            if failures:
                self.errors.labels(system=name).inc(failures)
        now = datetime.now(UTC)
        for name, mark in watermarks.items():
            if mark.cursor is not None:
                self.watermark_age.labels(system=name).set((now - mark.cursor).total_seconds())
        if result == "ok":
            self.last_success = now
            self.last_success_ts.set(now.timestamp())

    def healthy(self) -> bool:
        now = datetime.now(UTC)
        window = self.interval * 3
        if self.last_success is None:
            return now - self.started < window
        return now - self.last_success < window


class MetricsServer:
    """A small threaded HTTP server for /metrics and /healthz."""

    def __init__(self, metrics: Metrics, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104
        handler = _handler(metrics)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                body = generate_latest(metrics.registry)
                self._send(200, body, CONTENT_TYPE_LATEST)
            elif self.path.startswith("/healthz"):
                ok = metrics.healthy()
                self._send(200 if ok else 503, b"ok\n" if ok else b"no successful cycle\n",
                           "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
