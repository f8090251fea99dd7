"""A prometheus-client Collector, so `generate_latest()` and `make_asgi_app()` include these metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from victor_observability.metrics.instruments import Registry


class PrometheusClientBridge:
    """Yields a registry's families as prometheus-client ``Metric`` objects.

    >>> import prometheus_client
    >>> from victor_observability import create_production_collector
    >>> bridge = PrometheusClientBridge(create_production_collector(collect_system_metrics=False).registry)
    >>> prometheus_client.CollectorRegistry().register(bridge)
    """

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Any]:
        from prometheus_client.metrics_core import Metric

        for name, kind, help_text, samples in self._registry.samples():
            metric = Metric(name, help_text, kind)
            for sample_name, labels, value in samples:
                metric.add_sample(sample_name, labels, value)
            yield metric


def register_with_prometheus_client(registry: Registry, target: Any = None) -> PrometheusClientBridge:
    """Registers a bridge on ``target`` (default ``prometheus_client.REGISTRY``) and returns it."""
    import prometheus_client

    bridge = PrometheusClientBridge(registry)
    (target if target is not None else prometheus_client.REGISTRY).register(bridge)
    return bridge
