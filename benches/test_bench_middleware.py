"""Middleware overhead per request on the same app, in-process ASGI calls: ours vs two exporters' middlewares."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import prometheus_client
import pytest
from conftest import NOTES
from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator
from starlette_exporter import PrometheusMiddleware as StarletteExporterMiddleware
from victor_observability import DistributedTracer, MonitoringMiddleware, create_production_collector

N = 200  # requests per timed round, in one event loop


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    return app


def ours() -> FastAPI:
    app = make_app()
    collector = create_production_collector(collect_system_metrics=False)
    app.add_middleware(MonitoringMiddleware, metrics_collector=collector, tracer=DistributedTracer("bench"))
    return app


def instrumentator() -> FastAPI:
    app = make_app()
    Instrumentator(registry=prometheus_client.CollectorRegistry()).instrument(app)
    return app


def starlette_exporter() -> FastAPI:
    app = make_app()
    app.add_middleware(StarletteExporterMiddleware, group_paths=True)
    return app


SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/items/42",
    "raw_path": b"/items/42",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}


LOOPS: list[asyncio.AbstractEventLoop] = []


@pytest.fixture(scope="module", autouse=True)
def close_loops() -> Iterator[None]:
    yield
    while LOOPS:
        LOOPS.pop().close()


def driver(app: Any) -> Callable[[], None]:
    loop = asyncio.new_event_loop()
    LOOPS.append(loop)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def many() -> None:
        for _ in range(N):
            await app(dict(SCOPE), receive, send)

    loop.run_until_complete(many())  # builds the middleware stack before timing
    return lambda: loop.run_until_complete(many())


def test_bare_app(bench) -> None:  # type: ignore[no-untyped-def]
    bench("mw_bare", driver(make_app()))


def test_ours(bench) -> None:  # type: ignore[no-untyped-def]
    bench("mw_ours", driver(ours()))


def test_prometheus_fastapi_instrumentator(bench) -> None:  # type: ignore[no-untyped-def]
    bench("mw_instrumentator", driver(instrumentator()))


def test_starlette_exporter(bench) -> None:  # type: ignore[no-untyped-def]
    bench("mw_starlette_exporter", driver(starlette_exporter()))


def interleaved_min_us(runs: dict[str, Callable[[], None]], rounds: int = 25) -> dict[str, float]:
    """Per-request CPU time of each case, the best of rounds taken in turn, so load on a shared
    machine hits every case alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for key, run in runs.items():
            t0 = time.process_time()
            run()
            best[key] = min(best[key], (time.process_time() - t0) / N * 1e6)
    return best


def test_report_added_cost() -> None:
    best = interleaved_min_us(
        {
            "bare": driver(make_app()),
            "ours": driver(ours()),
            "instrumentator": driver(instrumentator()),
            "starlette_exporter": driver(starlette_exporter()),
        }
    )
    added = {k: v - best["bare"] for k, v in best.items() if k != "bare"}
    NOTES.append(
        "middleware added CPU per request (us; bare FastAPI app {:.1f} us; interleaved rounds, best of 25): "
        "ours {:.1f}, prometheus-fastapi-instrumentator {:.1f} (ours is 1/{:.1f} of it), "
        "starlette-exporter {:.1f} (1/{:.1f}); targets: <= 1/5 of each, <= 30 us".format(
            best["bare"],
            added["ours"],
            added["instrumentator"],
            added["instrumentator"] / added["ours"],
            added["starlette_exporter"],
            added["starlette_exporter"] / added["ours"],
        )
    )
    assert added["ours"] > 0
