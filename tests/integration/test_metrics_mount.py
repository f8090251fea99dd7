"""The README's /metrics under a real uvicorn: mounted as the quickstart says, scrapes and probes kept out of
the request metrics wherever they are served, /metrics negotiation, HEAD, methods clients make up."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families
from victor_observability import (
    DistributedTracer,
    MonitoringMiddleware,
    create_health_app,
    create_health_router,
    create_monitoring_middleware,
    create_production_collector,
    create_production_health_checker,
    make_metrics_app,
    start_http_server,
)
from victor_observability.tracing import InMemorySpanExporter

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


class Served:
    """Any ASGI app under uvicorn in a thread."""

    def __init__(self, app: object) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off")  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class Quickstart:
    """The README's quickstart app (plus a route of its own) under uvicorn in a thread."""

    def __init__(self) -> None:
        self.collector = create_production_collector(collect_system_metrics=False)
        self.exporter = InMemorySpanExporter()
        self.tracer = DistributedTracer("victor.api", exporters=[self.exporter])
        self.hook_threads: list[threading.Thread] = []
        self.collector.registry.add_collect_hook(lambda: self.hook_threads.append(threading.current_thread()))
        app = FastAPI()
        app.add_middleware(MonitoringMiddleware, metrics_collector=self.collector, tracer=self.tracer)
        app.mount("/metrics", make_metrics_app(self.collector))
        # Served where the default exclusions do not look: only the apps themselves can say what they are.
        app.mount("/internal/prom", make_metrics_app(self.collector))
        checker = create_production_health_checker(service_version="1.0.0", metrics_collector=self.collector)
        app.include_router(create_health_router(checker))
        app.include_router(create_health_router(checker, prefix="/probes"))
        app.mount("/k8s", create_health_app(checker, path_prefix=""))

        @app.get("/items/{item_id}")
        async def item(item_id: int) -> dict[str, int]:
            return {"item": item_id}

        self.served = Served(app)
        self.thread = self.served.thread
        self.url = self.served.url

    def stop(self) -> None:
        self.served.stop()
        self.tracer.shutdown()
        self.collector.close()


@pytest.fixture
def quickstart() -> Iterator[Quickstart]:
    q = Quickstart()
    yield q
    q.stop()


def test_get_metrics_answers_directly(quickstart: Quickstart) -> None:
    for path in ("/metrics", "/metrics/", "/metrics?x=1"):
        r = httpx.get(quickstart.url + path, follow_redirects=False)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    head = httpx.head(quickstart.url + "/metrics", headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) > 0


def test_scrapes_and_probes_are_not_requests(quickstart: Quickstart) -> None:
    url = quickstart.url
    with httpx.Client(base_url=url) as client:
        assert client.get("/items/1").status_code == 200
        # A mount outside exclude_paths is scraped at its own path, "/internal/prom/" (its bare path is a
        # redirect the app makes, a response like any other, unless listed in exclude_paths).
        for path in ("/metrics", "/metrics/", "/internal/prom/"):
            r = client.get(path, follow_redirects=True)
            assert r.status_code == 200, path
            # The scrape does not count itself as in flight.
            assert samples(r.text)[("victor_active_requests", ())] == 0, path
        for path in ("/health/live", "/health/ready", "/probes/live", "/k8s/live", "/k8s/ready"):
            assert client.get(path).status_code in (200, 503), path
    got = samples(quickstart.collector.export_prometheus())
    requests = {labels: v for (n, labels), v in got.items() if n == "victor_request_total"}
    assert requests == {
        (("endpoint", "/items/{item_id}"), ("method", "GET"), ("provider", "http"), ("status", "200")): 1.0
    }
    assert got[("victor_active_requests", ())] == 0


def test_exposition_is_built_off_the_event_loop(quickstart: Quickstart) -> None:
    for i in range(2_000):
        quickstart.collector.record_tool_execution(f"tool-{i}", True, float(i))
    r = httpx.get(quickstart.url + "/metrics", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert "tool-1999" in r.text
    assert quickstart.hook_threads, "the collect hooks did not run"
    assert quickstart.thread not in quickstart.hook_threads, "the exposition was encoded on uvicorn's event loop"


@pytest.mark.parametrize("via", ["asgi", "threaded"])
def test_negotiation_weighs_q_values(quickstart: Quickstart, via: str) -> None:
    if via == "asgi":
        url = quickstart.url + "/metrics"
        server = None
    else:
        server, _ = start_http_server(0, registry=quickstart.collector)
        url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:

        def get(accept: str = "", encoding: str = "") -> httpx.Response:
            # httpx would add its own Accept-Encoding; send exactly what the case says.
            headers = {"Accept": accept, "Accept-Encoding": encoding}
            return httpx.get(url, headers=headers)

        for encoding in ("gzip;q=0", "identity", "", "deflate", "gzip;q=0.5, identity", "*;q=0"):
            r = get(encoding=encoding)
            assert "content-encoding" not in r.headers, encoding
            assert "# TYPE victor_request_total counter" in r.text
        for encoding in ("gzip", "GZIP;Q=1", "*", "br, gzip;q=0.8"):
            r = get(encoding=encoding)
            assert r.headers["content-encoding"] == "gzip", encoding
        for accept in ("application/openmetrics-text;q=0", "application/openmetrics-text;q=0, text/plain", "*/*"):
            assert get(accept).headers["content-type"].startswith("text/plain"), accept
        for accept in (
            "APPLICATION/OPENMETRICS-TEXT",
            "application/openmetrics-text; version=1.0.0; q=0.5, text/plain;q=0.3",
        ):
            r = get(accept)
            assert r.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0"), accept
            assert list(om_parse(r.text))
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def test_threaded_server_answers_head_like_get(quickstart: Quickstart) -> None:
    server, _ = start_http_server(0, registry=quickstart.collector)
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        get = httpx.get(url, headers={"Accept-Encoding": "gzip"})
        head = httpx.head(url, headers={"Accept-Encoding": "gzip"})
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.headers["content-encoding"] == "gzip"
        assert int(head.headers["content-length"]) > 0
    finally:
        server.shutdown()
        server.server_close()


def test_made_up_methods_are_one_label_value(quickstart: Quickstart) -> None:
    # (httpx upper-cases methods, so no lower-case one here; the conventions would make "get" _OTHER too.)
    methods = [f"X{i:04d}" for i in range(300)] + ["PROPFIND", "Z" * 8_000]
    with httpx.Client(base_url=quickstart.url) as client:
        for m in methods:
            client.request(m, "/items/7")
        client.request("DELETE", "/items/7")
    got = samples(quickstart.collector.export_prometheus())
    seen = {dict(labels)["method"] for (n, labels) in got if n == "victor_request_total"}
    assert seen == {"_OTHER", "DELETE"}
    other = sum(
        v for (n, labels), v in got.items() if n == "victor_request_total" and dict(labels)["method"] == "_OTHER"
    )
    assert other == len(methods)
    quickstart.tracer.force_flush()
    spans = [s for s in quickstart.exporter.get_finished_spans() if s.kind == "server"]
    originals = {s.attributes.get("http.request.method_original") for s in spans}
    assert "PROPFIND" in originals
    assert "Z" * 64 in originals, "a long method is kept, cut short"
    other_spans = [s for s in spans if s.attributes["http.request.method"] == "_OTHER"]
    assert len(other_spans) == len(methods)
    assert {s.name for s in other_spans} == {"HTTP /items/{item_id}"}


def test_decorator_form_and_known_methods_override(monkeypatch: pytest.MonkeyPatch) -> None:
    collector = create_production_collector(collect_system_metrics=False)
    tracer = DistributedTracer("victor.api")
    app = FastAPI()
    # The conventions' override: a full replacement of the list, read when the middleware is made.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", "GET,PROPFIND")
    middleware = create_monitoring_middleware(metrics_collector=collector, tracer=tracer)

    @app.middleware("http")
    async def monitoring(request, call_next):  # type: ignore[no-untyped-def]
        return await middleware.handle_request(request, call_next)

    @app.api_route("/dav", methods=["GET", "PROPFIND", "POST", "FROB"])
    async def dav() -> dict[str, bool]:
        return {"ok": True}

    served = Served(app)
    try:
        with httpx.Client(base_url=served.url) as client:
            for method in ("GET", "PROPFIND", "POST", "FROB"):
                assert client.request(method, "/dav").status_code == 200, method
    finally:
        served.stop()
        tracer.shutdown()
    got = samples(collector.export_prometheus())
    methods = {dict(labels)["method"]: v for (n, labels), v in got.items() if n == "victor_request_total"}
    assert methods == {"GET": 1, "PROPFIND": 1, "_OTHER": 2}
