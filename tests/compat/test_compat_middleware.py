"""The pure-Python MonitoringMiddleware's keyword options that ours keeps (only the import line differs)."""

from __future__ import annotations

from victor_observability import MonitoringMiddleware, create_production_collector


def test_collect_system_metrics_reaches_the_collector_it_makes() -> None:
    middleware = MonitoringMiddleware(collect_system_metrics=False, request_id_header="X-Req")
    assert middleware.metrics_collector.system_metrics_enabled is False
    given = create_production_collector(collect_system_metrics=False)
    assert MonitoringMiddleware(metrics_collector=given).metrics_collector is given
