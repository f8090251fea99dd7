"""Serving /metrics: the ASGI app under a real uvicorn, the threaded server, and the prometheus-client bridge."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import prometheus_client
import pytest
import uvicorn
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from victor_observability import (
    ProductionMetricsCollector,
    create_production_collector,
    make_metrics_app,
    register_with_prometheus_client,
    start_http_server,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def collector() -> Iterator[ProductionMetricsCollector]:
    c = create_production_collector(collect_system_metrics=False)
    c.record_request("/chat", "anthropic", True, 12.0)
    yield c
    c.close()


@pytest.fixture
def served(collector: ProductionMetricsCollector) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_metrics_app(collector), host="127.0.0.1", port=port, log_level="error"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    t.join(10)


def test_asgi_app_serves_text_by_default(served: str) -> None:
    r = httpx.get(f"{served}/metrics", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'victor_request_total{endpoint="/chat",provider="anthropic"} 1.0' in r.text


def test_asgi_app_negotiates_openmetrics_and_gzip(served: str) -> None:
    accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"
    with httpx.Client() as client:
        r = client.get(f"{served}/metrics", headers={"Accept": accept, "Accept-Encoding": "gzip"})
    assert r.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert r.headers["content-encoding"] == "gzip"
    assert r.text.endswith("# EOF\n")  # httpx decompressed it
    names = {f.name for f in om_parse(r.text)}
    assert "victor_request" in names


def test_start_http_server(collector: ProductionMetricsCollector) -> None:
    server, thread = start_http_server(0, registry=collector)
    try:
        raw = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", headers={"Accept-Encoding": "gzip"})
        assert raw.status_code == 200
        assert "victor_request_total" in raw.text
        # and without httpx's transparent decoding
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        assert b"Content-Encoding: gzip" in head
        assert b"victor_request_total" in gzip.decompress(body)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_prometheus_client_bridge_includes_our_metrics(collector: ProductionMetricsCollector) -> None:
    target = prometheus_client.CollectorRegistry()
    register_with_prometheus_client(collector.registry, target)
    text = prometheus_client.generate_latest(target).decode()
    assert 'victor_request_total{endpoint="/chat",provider="anthropic"} 1.0' in text
    assert 'victor_request_latency_ms_bucket{endpoint="/chat",le="25.0",provider="anthropic"} 1.0' in text


def test_bridge_on_the_default_registry_and_make_asgi_app(collector: ProductionMetricsCollector) -> None:
    bridge = register_with_prometheus_client(collector.registry)
    try:
        assert b"victor_request_total" in prometheus_client.generate_latest()
        app = prometheus_client.make_asgi_app()
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        t = threading.Thread(target=server.run, daemon=True)
        t.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        try:
            assert "victor_request_total" in httpx.get(f"http://127.0.0.1:{port}/").text
        finally:
            server.should_exit = True
            t.join(10)
    finally:
        prometheus_client.REGISTRY.unregister(bridge)
