"""RSS cost of N labelled histogram series holding data, ours or prometheus-client's (run as a script)."""

from __future__ import annotations

import json
import sys

import psutil


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def main(which: str, n: int) -> None:
    buckets = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
    if which == "ours":
        from victor_observability import Histogram, Registry

        hist = Histogram("latency_ms", "", ["endpoint", "provider"], buckets=buckets, registry=Registry())
    else:
        import prometheus_client as pc

        hist = pc.Histogram(
            "latency_ms", "", ["endpoint", "provider"], buckets=buckets, registry=pc.CollectorRegistry()
        )
    labels = [(f"/api/v1/endpoint/{i}", "anthropic") for i in range(n)]
    before = rss()
    for endpoint, provider in labels:
        hist.labels(endpoint, provider).observe(123.4)
    after = rss()
    print(json.dumps({"which": which, "series": n, "bytes_per_series": (after - before) / n}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
