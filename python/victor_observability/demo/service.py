"""The demo service: a FastAPI app of chat and tool endpoints over the simulated world, instrumented with everything.

>>> from victor_observability.demo.service import build_app, instrument
>>> instr = instrument(enabled=False)
>>> app = build_app(instr)
>>> sorted(r.path for r in app.routes if r.path.startswith("/v1"))
['/v1/chat', '/v1/tools/{tool}']
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from victor_observability.demo.instrumentation import Instrumentation, instrument
from victor_observability.demo.workload import PROVIDERS, TOOLS, LlmCall, LruCache, World
from victor_observability.metrics.http import render

__all__ = [
    "CACHE_NAME",
    "ChatRequest",
    "Instrumentation",
    "LocalModel",
    "Model",
    "ToolRequest",
    "build_app",
    "instrument",
]

CACHE_NAME = "tool_cache"


class SpanLike(Protocol):
    def set_attribute(self, key: str, value: Any) -> None: ...
    def set_status(self, status: Any, description: str | None = None) -> None: ...


class Model(Protocol):
    """Where the service's LLM calls go: simulated in this process, or a model backend over HTTP (backend.py)."""

    #: The kind of the service's `call_llm` span: "client" when the call leaves no other trace of itself.
    span_kind: str

    async def complete(self, provider: str, model: str, prompt_tokens: int) -> LlmCall: ...
    async def aclose(self) -> None: ...


class LocalModel:
    """The provider call simulated in process: the world's outcome, after its latency."""

    span_kind = "client"

    def __init__(self, world: World) -> None:
        self.world = world

    async def complete(self, provider: str, model: str, prompt_tokens: int) -> LlmCall:
        call = self.world.llm_call(provider, model, prompt_tokens)
        await asyncio.sleep(call.latency_ms / 1000.0)
        return call

    async def aclose(self) -> None:
        pass


class ChatRequest(BaseModel):
    provider: str
    model: str
    prompt: str
    # A tool the agent runs before asking the model (None: answer directly).
    tool: str | None = None
    tool_arg: str = ""


class ToolRequest(BaseModel):
    arg: str


def build_app(
    instr: Instrumentation, world: World | None = None, cache_capacity: int = 64, model: Model | None = None
) -> FastAPI:
    """The service: POST /v1/chat, POST /v1/tools/{tool}, and (when instrumented) /metrics and /health/*. LLM calls
    go to ``model`` (default: simulated here); the app closes it on shutdown."""
    world = world or World()
    llm = model if model is not None else LocalModel(world)
    rec = instr.recorder
    tracer = instr.tracer
    cache = LruCache(cache_capacity)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with instr.lifespan(app):
            try:
                yield
            finally:
                await llm.aclose()  # in the serving loop, where its connections live

    app = FastAPI(title="victor-observability demo", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    async def run_tool(tool: str, arg: str) -> dict[str, Any]:
        """A cached tool execution: a hit answers from the cache, a miss runs the tool and stores a success."""
        key = f"{tool}:{arg}"
        with tracer.start_span("execute_tool", attributes={"tool.name": tool}) as span:
            if cache.get(key) is not None:
                rec.record_cache_hit(CACHE_NAME)
                span.set_attribute("cache.hit", True)
                return {"tool": tool, "cached": True, "ok": True}
            rec.record_cache_miss(CACHE_NAME)
            span.set_attribute("cache.hit", False)
            run = world.tool_run(tool)
            rec.increment_tool_active()
            started = time.perf_counter()
            try:
                await asyncio.sleep(run.latency_ms / 1000.0)
            finally:
                rec.decrement_tool_active()
            rec.record_tool_execution(tool, run.ok, (time.perf_counter() - started) * 1000.0)
            if run.ok:
                if cache.put(key, "result"):
                    rec.record_cache_eviction(CACHE_NAME)
                rec.set_cache_size(CACHE_NAME, len(cache))
            else:
                _fail(span, "tool_error")
                rec.record_error("tool_error", f"{tool} failed")
            return {"tool": tool, "cached": False, "ok": run.ok}

    @app.post("/v1/chat")
    async def chat(body: ChatRequest) -> Response:
        provider = PROVIDERS.get(body.provider)
        # Provider, model and tool become label values: only known ones, or any client could add series at will.
        known_model = provider is not None and any(m.name == body.model for m in provider.models)
        if not known_model or (body.tool is not None and body.tool not in TOOLS):
            return JSONResponse({"error": "unknown provider, model or tool"}, status_code=400)
        started = time.perf_counter()
        attributes = {"llm.provider": body.provider, "llm.model": body.model}
        with tracer.start_span("chat", attributes=attributes) as span:
            tools = [await run_tool(body.tool, body.tool_arg)] if body.tool is not None else []
            prompt_tokens = max(1, len(body.prompt) // 4)
            with tracer.start_span("call_llm", kind=llm.span_kind, attributes=attributes) as llm_span:
                llm_started = time.perf_counter()
                call = await llm.complete(body.provider, body.model, prompt_tokens)
                llm_ms = (time.perf_counter() - llm_started) * 1000.0
                ok = call.failure is None
                if ok:
                    llm_span.set_attribute("llm.tokens", prompt_tokens + call.completion_tokens)
                else:
                    _fail(llm_span, call.failure or "error")
            # The provider call is a request of its own, labelled with the model (the guide's record_request).
            rec.record_request("/v1/chat", body.provider, ok, llm_ms, labels={"model": body.model})
            if ok:
                rec.record_token_usage(prompt_tokens + call.completion_tokens)
                rec.record_task_completion(True, call.cost_usd)
            else:
                rec.record_task_completion(False)
                rec.record_error(call.failure or "error", f"{body.provider} {body.model}")
                _fail(span, call.failure or "error")
            rec.record_coordinator_execution("chat", ok, (time.perf_counter() - started) * 1000.0)
        payload = {
            "ok": ok,
            "provider": body.provider,
            "model": body.model,
            "error": call.failure,
            "tokens": prompt_tokens + call.completion_tokens if ok else 0,
            "cost_usd": call.cost_usd,
            "tools": tools,
        }
        return JSONResponse(payload, status_code=call.status)

    @app.post("/v1/tools/{tool}")
    async def tool_endpoint(tool: str, body: ToolRequest) -> Response:
        if tool not in TOOLS:
            return JSONResponse({"error": f"unknown tool {tool!r}"}, status_code=404)
        result = await run_tool(tool, body.arg)
        return JSONResponse(result, status_code=200 if result["ok"] else 500)

    add_metrics_route(app, instr)
    instr.wire(app)
    return app


def add_metrics_route(app: FastAPI, instr: Instrumentation) -> None:
    """GET /metrics, when the service is instrumented."""
    if instr.collector is None:
        return
    registry = instr.collector.registry

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        body, headers = render(registry, request.headers.get("accept", ""), request.headers.get("accept-encoding", ""))
        return Response(body, headers=dict(headers))


def _fail(span: SpanLike, reason: str) -> None:
    span.set_attribute("error.type", reason)
    span.set_status("error", reason)
