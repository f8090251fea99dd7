"""MonitoringMiddleware under a real uvicorn: exact counts per route, status and method; traces; both forms."""

from __future__ import annotations

import asyncio
import gc
import random
import socket
import threading
import time
import weakref
from collections import Counter as Tally
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families
from victor_observability import (
    InMemorySpanExporter,
    MonitoringMiddleware,
    ProductionMetricsCollector,
    create_monitoring_middleware,
    create_production_collector,
)
from victor_observability._asgi import UNMONITORED_KEY
from victor_observability.tracing import DistributedTracer, current_span


class Boom(Exception):
    pass


def build_app(form: str, collector: ProductionMetricsCollector, tracer: DistributedTracer) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, object]:
        span = current_span()
        return {"item": item_id, "trace": span.trace_id if span else None}

    @app.post("/items")
    async def create() -> JSONResponse:
        return JSONResponse({"ok": True}, status_code=201)

    @app.get("/fail")
    async def fail() -> None:
        raise HTTPException(status_code=503, detail="down")

    @app.get("/boom")
    async def boom() -> None:
        raise Boom("unhandled")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(5):
                await asyncio.sleep(0.002)
                yield f"chunk{i}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(0.05)
        return {"slow": True}

    @app.get("/forever")
    async def forever() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(2000):
                yield b"x" * 1024
                await asyncio.sleep(0.01)

        return StreamingResponse(chunks())

    @app.get("/metrics")
    async def metrics() -> str:
        return "excluded"

    if form == "asgi":
        app.add_middleware(MonitoringMiddleware, metrics_collector=collector, tracer=tracer)
    else:
        middleware = create_monitoring_middleware(metrics_collector=collector, tracer=tracer)

        @app.middleware("http")
        async def monitoring_middleware(request, call_next):  # type: ignore[no-untyped-def]
            return await middleware.handle_request(request, call_next)

    return app


class Served:
    def __init__(self, form: str) -> None:
        self.collector = create_production_collector(collect_system_metrics=False)
        self.tracer = DistributedTracer("test-service")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        app = build_app(form, self.collector, self.tracer)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="critical", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.tracer.shutdown()

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(self.collector.export_prometheus())
            for s in f.samples
        }


@pytest.fixture(params=["asgi", "decorator"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    s = Served(request.param)
    yield s
    s.stop()


PLAN = [
    ("GET", "/items/{n}", "/items/{item_id}"),
    ("POST", "/items", "/items"),
    ("GET", "/nope/{n}", "__unmatched__"),
    ("GET", "/fail", "/fail"),
    ("GET", "/boom", "/boom"),
    ("GET", "/stream", "/stream"),
    ("GET", "/slow", "/slow"),
]


async def hammer(url: str, n: int = 1000, concurrency: int = 50) -> Tally[tuple[str, str, str]]:
    rng = random.Random(42)
    jobs = [rng.choice(PLAN) for _ in range(n)]
    seen: Tally[tuple[str, str, str]] = Tally()
    queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
    for j in jobs:
        queue.put_nowait(j)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while True:
                try:
                    method, path, template = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                # uvicorn closes the connection after an unhandled exception; do not race it for reuse.
                headers = {"Connection": "close"} if path == "/boom" else None
                r = await client.request(method, path.replace("{n}", str(rng.randint(1, 10_000))), headers=headers)
                if path == "/stream":
                    assert r.text.count("chunk") == 5
                seen[(method, template, str(r.status_code))] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return seen


def request_counts(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str
) -> dict[tuple[str, str, str], float]:
    out = {}
    for (sample, labels), value in samples.items():
        if sample == name and value:
            d = dict(labels)
            assert d["provider"] == "http"
            out[(d["method"], d["endpoint"], d["status"])] = value
    return out


async def test_counts_match_what_the_client_saw(served: Served) -> None:
    seen = await hammer(served.url)
    assert sum(seen.values()) == 1000
    assert {status for (_, _, status) in seen} >= {"200", "201", "404", "503", "500"}
    samples = served.samples()
    assert request_counts(samples, "victor_request_total") == {k: float(v) for k, v in seen.items()}
    assert request_counts(samples, "victor_request_latency_ms_count") == {k: float(v) for k, v in seen.items()}
    errors = {k: float(v) for k, v in seen.items() if int(k[2]) >= 500}
    assert request_counts(samples, "victor_request_errors_total") == errors
    assert samples[("victor_active_requests", ())] == 0.0
    # the slow endpoint's latency lands at or above 50 ms; the excluded /metrics is not counted
    slow = {
        k: v for k, v in samples.items() if k[0] == "victor_request_latency_ms_bucket" and ("endpoint", "/slow") in k[1]
    }
    assert slow and all(v == 0 for k, v in slow.items() if ("le", "25.0") in k[1])
    httpx.get(f"{served.url}/metrics")
    assert all("/metrics" not in dict(k[1]).get("endpoint", "") for k in served.samples())


async def test_streaming_response_is_timed_to_its_last_chunk(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        assert (await client.get("/stream")).status_code == 200
    lat = served.samples()[
        (
            "victor_request_latency_ms_sum",
            (("endpoint", "/stream"), ("method", "GET"), ("provider", "http"), ("status", "200")),
        )
    ]
    assert lat >= 10.0  # five chunks 2 ms apart


def test_client_disconnect_mid_response_is_recorded() -> None:
    # The pure ASGI form sees the disconnect; Starlette's BaseHTTPMiddleware (the decorator form) ends
    # the streamed body cleanly on its side, so there the request is recorded as completed.
    served = Served("asgi")
    try:
        _disconnect(served)
    finally:
        served.stop()


def _disconnect(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as s:
        s.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096)
    deadline = time.monotonic() + 10
    key = (
        "victor_request_total",
        (("endpoint", "/forever"), ("method", "GET"), ("provider", "http"), ("status", "499")),
    )
    while served.samples().get(key) != 1.0:
        assert time.monotonic() < deadline, served.collector.export_prometheus()
        time.sleep(0.05)
    assert served.samples()[("victor_active_requests", ())] == 0.0


def test_traceparent_is_continued_and_request_id_echoed(served: Served) -> None:
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    r = httpx.get(
        f"{served.url}/items/7",
        headers={"traceparent": f"00-{trace_id}-{parent}-01", "X-Request-ID": "req-123"},
    )
    assert r.headers["x-trace-id"] == trace_id
    assert r.headers["x-request-id"] == "req-123"
    assert r.json()["trace"] == trace_id  # the span is current inside the handler
    spans = served.tracer.get_trace(trace_id)
    server_spans = [s for s in spans if s.kind == "server"]
    assert len(server_spans) == 1
    span = server_spans[0]
    assert span.parent_span_id == parent
    assert span.name == "GET /items/{item_id}"
    assert span.attributes["http.route"] == "/items/{item_id}"
    assert span.attributes["http.response.status_code"] == 200


def test_new_trace_without_traceparent_and_bad_headers_are_survived(served: Served) -> None:
    r1 = httpx.get(f"{served.url}/items/1")
    r2 = httpx.get(f"{served.url}/items/1", headers={"traceparent": "garbage", "X-Request-ID": "x" * 5000})
    for r in (r1, r2):
        assert r.status_code == 200
        assert len(r.headers["x-trace-id"]) == 32 and int(r.headers["x-trace-id"], 16)
        assert len(r.headers["x-request-id"]) == 16  # the server span's id
    assert r1.headers["x-trace-id"] != r2.headers["x-trace-id"]
    assert r1.headers["x-request-id"] != r2.headers["x-request-id"]
    huge = httpx.get(f"{served.url}/items/2", headers={f"x-h{i}": "v" * 1000 for i in range(40)})
    assert huge.status_code == 200


def test_latency_exemplar_is_the_server_span_exported_for_that_request(served: Served) -> None:
    exported = InMemorySpanExporter()
    served.tracer.add_exporter(exported)
    # /slow lands alone in its bucket (50 ms <= latency <= 100 ms, far above the others), so its exemplar is its own.
    slow = httpx.get(f"{served.url}/slow", headers={"User-Agent": "exemplar-test"})
    fast = [httpx.get(f"{served.url}/items/{i}") for i in range(5)]
    assert served.tracer.force_flush()
    om = served.collector.export_prometheus(openmetrics=True)
    found = {
        s.labels["endpoint"]: s.exemplar
        for f in om_parse(om)
        if f.name == "victor_request_latency_ms"
        for s in f.samples
        if s.exemplar is not None
    }
    assert set(found) == {"/slow", "/items/{item_id}"}
    servers = {(s.trace_id, s.span_id): s for s in exported.get_finished_spans() if s.kind == "server"}
    ex = found["/slow"]
    assert ex.labels["trace_id"] == slow.headers["x-trace-id"]
    span = servers[(ex.labels["trace_id"], ex.labels["span_id"])]
    assert span.name == "GET /slow"
    assert ex.value >= 50.0
    ex = found["/items/{item_id}"]
    assert ex.labels["trace_id"] in {r.headers["x-trace-id"] for r in fast}
    assert servers[(ex.labels["trace_id"], ex.labels["span_id"])].name == "GET /items/{item_id}"
    # The text format 0.0.4 has no exemplars.
    assert " # {" not in served.collector.export_prometheus()


def test_errors_mark_the_span(served: Served) -> None:
    trace_id = "1af7651916cd43dd8448eb211c80319c"
    r = httpx.get(f"{served.url}/boom", headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})
    assert r.status_code == 500
    (span,) = served.tracer.get_trace(trace_id)
    assert span.status == "error"


async def test_both_forms_give_the_same_metrics() -> None:
    results = []
    for form in ("asgi", "decorator"):
        s = Served(form)
        try:
            await hammer(s.url, n=300, concurrency=20)
            samples = s.samples()
            results.append(
                {
                    k: v
                    for k, v in samples.items()
                    if k[0]
                    in (
                        "victor_request_total",
                        "victor_request_errors_total",
                        "victor_request_latency_ms_count",
                        "victor_active_requests",
                    )
                }
            )
        finally:
            s.stop()
    assert results[0] == results[1]


async def test_lifespan_and_websocket_pass_through() -> None:
    seen = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        seen.append(scope["type"])

    collector = create_production_collector(collect_system_metrics=False)
    mw = MonitoringMiddleware(app, metrics_collector=collector, tracer=DistributedTracer("x"))
    await mw({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await mw({"type": "websocket", "path": "/ws"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket"]
    assert collector.get_summary()["requests"]["total"] == 0


async def test_status_class_and_bad_option() -> None:
    with pytest.raises(ValueError, match="status_label"):
        MonitoringMiddleware(None, status_label="nope")  # type: ignore[arg-type]
    collector = create_production_collector(collect_system_metrics=False)
    with pytest.raises(TypeError, match="tracer must be a DistributedTracer"):
        MonitoringMiddleware(None, collector, tracer=object())  # type: ignore[arg-type]

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": int(scope["path"][1:]), "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message):  # type: ignore[no-untyped-def]
        pass

    mw = MonitoringMiddleware(app, collector, DistributedTracer("x"), status_label="class")
    for path in ("/503", "/504", "/201"):
        await mw({"type": "http", "method": "GET", "path": path, "headers": []}, None, send)  # type: ignore[arg-type]
    statuses = {
        dict(s.labels)["status"]: s.value
        for f in text_string_to_metric_families(collector.export_prometheus())
        if f.name == "victor_request"
        for s in f.samples
        if s.name == "victor_request_total"
    }
    assert statuses == {"5xx": 2.0, "2xx": 1.0}


async def test_a_failure_to_record_never_breaks_the_response(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def begin_request(self) -> None:
            pass

        def end_request(self, *args: object) -> None:
            raise RuntimeError("metrics backend exploded")

    sent: list[dict[str, object]] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    mw = MonitoringMiddleware(app, metrics_collector=Broken(), tracer=DistributedTracer("x"))  # type: ignore[arg-type]
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    for _ in range(2):
        await mw(scope, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"] * 2
    assert mw.record_failures == 2
    assert sum("could not record" in r.message for r in caplog.records) == 1


async def test_a_scope_that_is_a_mapping_and_headers_as_a_tuple() -> None:
    # ASGI says dict and list, but a hand-made scope or an app may hand any mapping and any sequence of pairs.
    from collections import UserDict

    collector = create_production_collector(collect_system_metrics=False)
    sent: list[dict[str, Any]] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        assert UNMONITORED_KEY in scope  # the /metrics and health apps find the request here
        await send({"type": "http.response.start", "status": 201, "headers": ((b"x-app", b"1"),)})
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    mw = MonitoringMiddleware(app, metrics_collector=collector, tracer=DistributedTracer("x"))
    scope = UserDict({"type": "http", "method": "POST", "path": "/x", "headers": ((b"x-request-id", b"abc"),)})
    await mw(scope, None, send)  # type: ignore[arg-type]
    assert UNMONITORED_KEY not in scope
    assert sent[0]["headers"][:2] == [(b"x-app", b"1"), (b"x-request-id", b"abc")]
    assert [name for name, _ in sent[0]["headers"]] == [b"x-app", b"x-request-id", b"x-trace-id"]
    summary = collector.get_summary()["requests"]
    assert (summary["total"], summary["active"]) == (1, 0)


async def test_a_request_the_core_cannot_start_is_served_unrecorded(caplog: pytest.LogCaptureFixture) -> None:
    from collections import UserDict

    class Unreadable(UserDict):  # type: ignore[type-arg]
        def get(self, key: str, default: object = None) -> object:
            if key == "headers":
                raise RuntimeError("a scope that cannot be read")
            return super().get(key, default)

    collector = create_production_collector(collect_system_metrics=False)
    sent: list[dict[str, Any]] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    mw = MonitoringMiddleware(app, metrics_collector=collector, tracer=DistributedTracer("x"))
    await mw(Unreadable({"type": "http", "method": "GET", "path": "/\ud800", "headers": []}), None, send)  # type: ignore[arg-type]
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert mw.record_failures == 1
    assert "could not record" in caplog.text
    summary = collector.get_summary()["requests"]
    assert (summary["total"], summary["active"]) == (0, 0)
    # A path and a method that are not UTF-8 are served, recorded and traced like any other.
    await mw({"type": "http", "method": "G\udc80T", "path": "/\ud800", "headers": []}, None, send)  # type: ignore[arg-type]
    assert collector.get_summary()["requests"]["total"] == 1
    assert mw.record_failures == 1
    (span,) = mw.tracer.finished_spans()
    assert (span.name, span.attributes["http.request.method"]) == ("HTTP", "_OTHER")


async def test_a_response_is_recorded_when_its_declared_length_is_sent() -> None:
    collector = create_production_collector(collect_system_metrics=False)
    counted_before_last_chunk: list[float] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        declared = [(b"content-length", b"4")] if scope["path"] == "/declared" else []
        await send({"type": "http.response.start", "status": 200, "headers": declared})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cd", "more_body": True})
        counted_before_last_chunk.append(collector.get_summary()["requests"]["total"])
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):  # type: ignore[no-untyped-def]
        pass

    mw = MonitoringMiddleware(app, metrics_collector=collector, tracer=DistributedTracer("x"))
    for path in ("/declared", "/undeclared", "/declared"):
        await mw({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send)
    # The client holding its 4 declared bytes finds the request counted before the empty final chunk; without a
    # declared length only the last chunk completes it.
    assert counted_before_last_chunk == [1, 1, 3]
    assert collector.get_summary()["requests"]["total"] == 3


async def test_a_request_is_in_flight_while_the_app_runs() -> None:
    collector = create_production_collector(collect_system_metrics=False)
    during: list[float] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        during.append(collector.get_summary()["requests"]["active"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):  # type: ignore[no-untyped-def]
        pass

    mw = MonitoringMiddleware(app, metrics_collector=collector, tracer=DistributedTracer("x"))
    # A known method (the core marks it in flight as it starts the span) and one OpenTelemetry does not know.
    for method in ("GET", "BREW"):
        await mw({"type": "http", "method": method, "path": "/x", "headers": []}, receive, send)
    assert during == [1, 1]
    assert collector.get_summary()["requests"]["active"] == 0


async def test_a_served_request_is_freed_by_refcount() -> None:
    """The exchange the middleware leaves in the scope holds the server's send and receive, which (as uvicorn's
    request cycle does) hold the scope: unlinked once the response is served, so no request waits for the GC."""
    collector = create_production_collector(collect_system_metrics=False)

    class ServerCycle:  # uvicorn's RequestResponseCycle, in the part that matters: it keeps the scope
        def __init__(self, method: str) -> None:
            self.scope = {
                "type": "http", "method": method, "path": "/x", "raw_path": b"/x", "headers": [], "query_string": b"",
                "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "root_path": "",
            }  # fmt: skip

        async def receive(self) -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(self, message: dict[str, object]) -> None:
            pass

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def fastapi_app(middleware: Any) -> FastAPI:
        guide_form = FastAPI()
        guide_form.get("/x")(lambda: {"ok": True})
        guide_form.middleware("http")(middleware)
        return guide_form

    async def passthrough(request: Any, call_next: Any) -> Any:
        return await call_next(request)

    middleware = create_monitoring_middleware(collector, DistributedTracer("x"))
    guide_form = fastapi_app(middleware.handle_request)
    asgi_form = MonitoringMiddleware(app, metrics_collector=collector, tracer=DistributedTracer("x"))

    async def freed_after_serving(served: Any, method: str) -> bool:
        cycle = ServerCycle(method)
        await served(cycle.scope, cycle.receive, cycle.send)
        # Nothing of ours is left in the scope once the response went out (the link the cycle went through).
        assert UNMONITORED_KEY not in cycle.scope, (served, method)
        freed = weakref.ref(cycle)
        del cycle
        return freed() is None

    gc.collect()
    gc.disable()
    try:
        # The ASGI form with the core's start of a request and the other one.
        for method in ("GET", "BREW"):
            assert await freed_after_serving(asgi_form, method), method
        # The guide's @app.middleware form: freed whenever Starlette's own middleware, with a pass-through function,
        # frees the request (on 3.10 its task group leaves a cycle of its own, with or without ours).
        if await freed_after_serving(fastapi_app(passthrough), "GET"):
            assert await freed_after_serving(guide_form, "GET")
        else:
            await freed_after_serving(guide_form, "GET")
    finally:
        gc.enable()
    assert collector.get_summary()["requests"]["total"] == 3
