"""Health routes served by a real uvicorn server on 127.0.0.1, probed concurrently with httpx."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from victor_observability import (
    CheckResult,
    ProductionHealthChecker,
    create_health_app,
    create_health_router,
    create_production_health_checker,
)

pytestmark = pytest.mark.integration


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` under uvicorn in a thread on a pre-bound loopback socket (no port race); stop it afterwards."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-health", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 15 s")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop within 15 s"


@pytest.fixture
def state() -> dict[str, Any]:
    return {"db": False, "disk": "pass"}


@pytest.fixture
def checker(state: dict[str, Any]) -> ProductionHealthChecker:
    checker = create_production_health_checker(startup_timeout=60.0, service_version="1.2.3")
    checker.add_liveness_check("process", lambda: True)
    checker.add_readiness_check("database", lambda: state["db"])
    checker.add_readiness_check("disk", lambda: CheckResult(state["disk"], observed_value=80, output="disk filling"))
    return checker


async def test_routes_answer_200_and_503_with_json_while_probed_concurrently(
    checker: ProductionHealthChecker, state: dict[str, Any]
) -> None:
    with serve(create_health_app(checker, detail="full")) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            paths = ["/health/live", "/health/ready", "/health/startup"] * 10
            responses = await asyncio.gather(*(client.get(p) for p in paths))
            for path, r in zip(paths, responses, strict=True):
                assert r.headers["content-type"] == "application/health+json"
                assert r.headers["cache-control"] == "no-store"
                body = r.json()
                if path == "/health/ready":
                    assert r.status_code == 503 and body["status"] == "fail"
                    assert body["checks"]["database"][0]["status"] == "fail"
                    assert body["checks"]["database"][0]["output"] == "check returned False"
                else:
                    assert r.status_code == 200 and body["status"] == "pass"
                    assert body["version"] == "1.2.3"

            state["db"] = True
            state["disk"] = "warn"
            responses = await asyncio.gather(*(client.get("/health/ready") for _ in range(20)))
            for r in responses:
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["status"] == "warn"
                assert body["checks"]["disk"][0] == {
                    "status": "warn",
                    "componentType": "component",
                    "time": body["checks"]["disk"][0]["time"],
                    "observedValue": 80,
                    "output": "disk filling",
                }


async def test_default_detail_hides_internals_and_other_requests_are_answered(
    checker: ProductionHealthChecker,
) -> None:
    with serve(create_health_app(checker)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            ready, live, head, missing, post = await asyncio.gather(
                client.get("/health/ready"),
                client.get("/health/live/"),
                client.head("/health/ready"),
                client.get("/nope"),
                client.post("/health/live"),
            )
    assert (ready.status_code, ready.json()) == (503, {"status": "fail"})
    assert (live.status_code, live.json()) == (200, {"status": "pass"})
    assert head.status_code == 503 and head.content == b""
    assert missing.status_code == 404
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"


async def test_blocking_readiness_check_does_not_delay_liveness() -> None:
    checker = ProductionHealthChecker()
    entered = threading.Event()
    release = threading.Event()

    def blocking_db() -> bool:
        entered.set()
        return release.wait(30)  # a dependency call that blocks its thread

    checker.add_liveness_check("process", lambda: True)
    checker.add_readiness_check("database", blocking_db, timeout=60)
    with serve(create_health_app(checker)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=20) as client:
            ready = asyncio.create_task(client.get("/health/ready"))
            try:
                assert await asyncio.to_thread(entered.wait, 10), "readiness check never started"
                lives = await asyncio.gather(*(client.get("/health/live") for _ in range(10)))
                assert all(r.status_code == 200 and r.json() == {"status": "pass"} for r in lives)
                assert not ready.done(), "readiness answered before its blocking check was released"
            finally:
                release.set()
            answer = await ready
    assert answer.status_code == 200 and answer.json() == {"status": "pass"}


async def test_guide_fastapi_endpoint_example_works_as_written() -> None:
    # Stand-ins for the guide's dependencies.
    class _Dep:
        def is_connected(self) -> bool:
            return True

        def is_ready(self) -> bool:
            return True

        def loaded(self) -> bool:
            return True

        def is_warmed_up(self) -> bool:
            return True

    db = cache = models = _Dep()

    async def check_memory_async() -> bool:
        return True

    app = FastAPI()

    # --- the guide, section 3, with only the import line changed ---
    checker = create_production_health_checker(startup_timeout=60.0, service_version="1.0.0")

    checker.add_liveness_check("process", lambda: True)
    checker.add_async_liveness_check("memory", check_memory_async)

    checker.add_readiness_check("database", lambda: db.is_connected())
    checker.add_readiness_check("cache", lambda: cache.is_ready())

    checker.add_startup_check("models", lambda: models.loaded())
    checker.add_startup_check("warmup", lambda: cache.is_warmed_up())

    @app.get("/health/live")
    async def liveness() -> JSONResponse:
        response = await checker.liveness()
        return JSONResponse(response.to_dict())

    @app.get("/health/ready")
    async def readiness() -> JSONResponse:
        response = await checker.readiness()
        return JSONResponse(response.to_dict())

    @app.get("/health/startup")
    async def startup() -> JSONResponse:
        response = await checker.startup()
        return JSONResponse(response.to_dict())

    # --- end of the guide's code ---

    with serve(app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            live, ready, start = await asyncio.gather(
                client.get("/health/live"), client.get("/health/ready"), client.get("/health/startup")
            )
    probes = ((live, {"process", "memory"}, "healthy"), (ready, {"database", "cache"}, "ready"))
    for r, names, word in (*probes, (start, {"models", "warmup"}, "started")):
        assert r.status_code == 200
        body = r.json()
        assert {"status", "checks", "timestamp", "uptime_seconds", "version", "is_healthy"} <= set(body)
        assert body["status"] == word and body["version"] == "1.0.0" and body["is_healthy"] is True, body
        assert set(body["checks"]) == names


async def test_fastapi_router_and_wrapped_app(checker: ProductionHealthChecker, state: dict[str, Any]) -> None:
    api = FastAPI()

    @api.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    api.include_router(create_health_router(checker, detail="checks", prefix="/probes"))
    wrapped = create_health_app(checker, body_format="dict", app=api)
    with serve(wrapped) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            router_ready, router_live, plain_ready, hello_r = await asyncio.gather(
                client.get("/probes/ready"),
                client.get("/probes/live"),
                client.get("/health/ready"),
                client.get("/hello"),
            )
    assert router_ready.status_code == 503
    assert router_ready.headers["content-type"] == "application/health+json"
    assert router_ready.json()["checks"]["database"] == [{"status": "fail", "componentType": "component"}]
    assert router_live.status_code == 200 and router_live.json()["status"] == "pass"
    assert plain_ready.status_code == 503 and plain_ready.headers["content-type"] == "application/json"
    assert plain_ready.json() == {"status": "not_ready", "is_healthy": False}
    assert hello_r.json() == {"hello": "world"}
