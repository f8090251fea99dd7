"""Every python block of the guide (../shared/SPEC.md beside the clone) runs as one script, in order, in one
namespace, with only the import line changed (`victor.observability` -> `victor_observability`).

The guide's code refers to the reader's own objects (`db`, `cache`, `models`, `app`, `request`, ...); the namespace
starts with small stand-ins for exactly those, and nothing else. Then the endpoints and the middleware it defines are
called for real.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT.parent / "shared" / "SPEC.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def guide_blocks() -> list[str]:
    if not SPEC.is_file():
        pytest.fail(f"the guide is missing: expected {SPEC} (shared/ beside the clone, as in CI)", pytrace=False)
    blocks = BLOCK.findall(SPEC.read_text())
    assert blocks, f"no python blocks found in {SPEC}"
    return [b.replace("from victor.observability import", "from victor_observability import") for b in blocks]


class _Dependency:
    """A database, cache or model store that is up."""

    def is_connected(self) -> bool:
        return True

    def is_ready(self) -> bool:
        return True

    def is_warmed_up(self) -> bool:
        return True

    def loaded(self) -> bool:
        return True

    def is_loaded(self) -> bool:
        return True

    def ping(self) -> float:
        return 12.0


class _Request:
    headers = {"traceparent": PARENT, "tracestate": "congo=t61rcWkgMzE"}


async def _check_memory_async() -> bool:
    return True


def stand_ins() -> dict[str, Any]:
    dependency = _Dependency()
    return {
        "__name__": "guide",
        "asyncio": asyncio,
        "app": FastAPI(),
        "JSONResponse": JSONResponse,
        "db": dependency,
        "cache": dependency,
        "models": dependency,
        "request": _Request(),
        "check_memory_async": _check_memory_async,
        "get_error_rate": lambda: 0.5,
        "get_p95_latency": lambda: 120.0,
        "user_id": "u-123",
        "request_id": "r-456",
        "model_name": "claude-sonnet-4-5",
        "token_count": 42,
    }


def test_guide_blocks_run_in_order_in_one_namespace() -> None:
    blocks = guide_blocks()
    assert len(blocks) == 11, f"the guide has {len(blocks)} python blocks; this test expects the 11 it was written for"
    ns = stand_ins()
    for number, source in enumerate(blocks, 1):
        try:
            exec(compile(source, f"SPEC.md python block {number}", "exec"), ns)
        except Exception as exc:
            pytest.fail(f"guide block {number} failed: {type(exc).__name__}: {exc}\n{source}")
    try:
        # What the blocks built works: the collector recorded, the trace continued the caller's, the probes answer
        # in the reference's words, the rules are registered.
        assert ns["summary"]["requests"]["total"] == 1
        assert "victor_request_total" in ns["prometheus_text"]
        assert ns["ctx"] is not None and ns["ctx"].trace_id == PARENT.split("-")[1]
        assert ns["headers"] == {}  # injected outside any span: nothing to propagate
        # The guide's "Bad" call (block 8) does not raise into the caller: the sample is dropped and counted.
        assert 'reason="missing_argument"' in ns["collector"].export_prometheus()
        assert sorted(ns["checker"]._checks["liveness"][i].name for i in range(2)) == ["memory", "process"]
        assert sorted(ns["manager"]._rules) == ["high_error_rate"]
        assert ns["rule"].name == "high_latency"
    finally:
        ns["collector"].close()


async def test_guide_middleware_and_health_endpoints_serve_requests() -> None:
    ns = stand_ins()
    for number, source in enumerate(guide_blocks(), 1):
        exec(compile(source, f"SPEC.md python block {number}", "exec"), ns)
    ns["collector"].close()
    middleware_app: FastAPI = ns["app"]

    @middleware_app.get("/chat")
    async def chat() -> dict[str, str]:
        return {"ok": "yes"}

    transport = httpx.ASGITransport(app=middleware_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://guide") as client:
        response = await client.get("/chat", headers={"traceparent": PARENT})
    assert response.status_code == 200 and response.json() == {"ok": "yes"}
    statuses = {name: (await ns[name]()).body for name in ("liveness", "readiness", "startup")}
    assert b'"status":"healthy"' in statuses["liveness"]
    assert b'"status":"ready"' in statuses["readiness"]
    assert b'"status":"started"' in statuses["startup"]
