"""The daemon's metrics and health endpoint (``syncd.metrics``): the Prometheus series a
cycle report becomes, and ``/healthz`` turning unhealthy without a successful cycle."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def test_metrics_series_parse() -> None:
    from datetime import timedelta

    from syncd.engine.cycle import CycleReport, SystemReport
    from syncd.metrics import Metrics
    from syncd.store.repo import Watermark
    from tests.world import Clock

    metrics = Metrics(timedelta(seconds=60))
    report = CycleReport(started_at=Clock().now)
    report.systems["a"] = SystemReport(read=5, created=2, failed=1, rate_limited=3)
    metrics.observe(report, "poll", {"a": Watermark("a", cursor=Clock().now)})
    from prometheus_client import generate_latest

    families = {f.name: f for f in text_string_to_metric_families(generate_latest(
        metrics.registry).decode())}
    writes = [s for s in families["syncd_writes"].samples if s.name == "syncd_writes_total"]
    assert writes[0].labels == {"system": "a", "kind": "create"} and writes[0].value == 2
    waits = [s for s in families["syncd_rate_limit_waits"].samples if s.name.endswith("_total")]
    assert waits[0].value == 3
    assert metrics.healthy()


def test_healthz_turns_unhealthy_without_a_successful_cycle() -> None:
    from datetime import timedelta

    from syncd.metrics import Metrics, MetricsServer

    metrics = Metrics(timedelta(seconds=10))
    server = MetricsServer(metrics, 0, host="127.0.0.1").start()
    try:
        url = f"http://127.0.0.1:{server.port}/healthz"
        assert httpx.get(url, timeout=5).status_code == 200  # still in its first intervals
        metrics.started -= timedelta(seconds=31)
        assert httpx.get(url, timeout=5).status_code == 503
        metrics.last_success = metrics.started + timedelta(seconds=25)
        assert httpx.get(url, timeout=5).status_code == 200
    finally:
        server.stop()
