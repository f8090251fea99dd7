"""The model backend: a second service, in a process of its own, that the demo's gateway calls over traced HTTP.

``demo --services 2`` runs it: the gateway (the chat and tool service) sends each LLM call to the backend's
``POST /v1/complete`` with an instrumented httpx client, so one request's trace holds spans of both services.

>>> from victor_observability.demo.instrumentation import instrument
>>> app = build_backend_app(instrument(enabled=False))
>>> sorted(r.path for r in app.routes if r.path.startswith("/v1"))
['/v1/complete']
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from victor_observability.demo.instrumentation import Instrumentation, instrument
from victor_observability.demo.service import _fail, add_metrics_route
from victor_observability.demo.workload import PROVIDERS, LlmCall, World
from victor_observability.tracing.httpx import instrument_httpx
from victor_observability.tracing.tracer import DistributedTracer

__all__ = ["BACKEND_SERVICE", "GATEWAY_SERVICE", "BackendProcess", "RemoteModel", "build_backend_app", "main"]

GATEWAY_SERVICE = "victor-demo-gateway"
BACKEND_SERVICE = "victor-demo-backend"
_READY = "backend serving http://127.0.0.1:"
# Not `-m victor_observability.demo.backend`: the demo package imports this module first, and runpy warns.
_ENTRY = "import sys; from victor_observability.demo.backend import main; sys.exit(main(sys.argv[1:]))"


class CompleteRequest(BaseModel):
    provider: str
    model: str
    prompt_tokens: int


def build_backend_app(instr: Instrumentation, world: World | None = None) -> FastAPI:
    """POST /v1/complete (one simulated LLM call), and (when instrumented) /metrics and /health/*."""
    world = world or World()
    tracer = instr.tracer
    app = FastAPI(
        title="victor-observability demo backend",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=instr.lifespan,
    )

    @app.post("/v1/complete")
    async def complete(body: CompleteRequest) -> Response:
        provider = PROVIDERS.get(body.provider)
        if provider is None or not any(m.name == body.model for m in provider.models) or body.prompt_tokens < 1:
            return JSONResponse({"error": "unknown provider or model"}, status_code=400)
        with tracer.start_span("generate", attributes={"llm.provider": body.provider, "llm.model": body.model}) as span:
            call = world.llm_call(body.provider, body.model, body.prompt_tokens)
            await asyncio.sleep(call.latency_ms / 1000.0)
            if call.failure is None:
                span.set_attribute("llm.tokens", body.prompt_tokens + call.completion_tokens)
            else:
                _fail(span, call.failure)
        payload = {
            "error": call.failure,
            "completion_tokens": call.completion_tokens,
            "cost_usd": call.cost_usd,
            "latency_ms": call.latency_ms,
        }
        return JSONResponse(payload, status_code=call.status)

    add_metrics_route(app, instr)
    instr.wire(app)
    return app


class RemoteModel:
    """The gateway's side: each LLM call is a POST to the backend through an httpx client traced by ``tracer``."""

    span_kind = "internal"  # the traced client's own CLIENT span sits inside `call_llm`

    def __init__(self, base_url: str, tracer: DistributedTracer | None, *, timeout: float = 30.0) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits, trust_env=False)
        if tracer is not None:
            instrument_httpx(self._client, tracer)

    async def complete(self, provider: str, model: str, prompt_tokens: int) -> LlmCall:
        body = {"provider": provider, "model": model, "prompt_tokens": prompt_tokens}
        try:
            response = await self._client.post("/v1/complete", json=body)
            answer = response.json()
            return LlmCall(
                float(answer["latency_ms"]),
                answer["error"],
                response.status_code,
                int(answer["completion_tokens"]),
                float(answer["cost_usd"]),
            )
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            # No usable answer: the call failed as a provider outage would.
            return LlmCall(0.0, "backend_unavailable", 502, 0, 0.0)

    async def aclose(self) -> None:
        await self._client.aclose()


class BackendProcess:
    """Starts the backend process (`main`) and stops it, every wait bounded."""

    def __init__(
        self,
        port: int = 0,
        *,
        seed: int | None = None,
        latency_scale: float = 1.0,
        spans_file: Path | None = None,
        system_interval: float = 5.0,
        instrumented: bool = True,
    ) -> None:
        self.args = ["--port", str(port), "--latency-scale", str(latency_scale)]
        self.args += ["--system-interval", str(system_interval), "--spans-file", str(spans_file or "")]
        if seed is not None:
            self.args += ["--seed", str(seed)]
        if not instrumented:
            self.args.append("--no-instrumentation")
        self.url: str | None = None
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 30.0) -> str:
        """Starts it and returns its base URL; RuntimeError if it does not report one within ``timeout`` seconds."""
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _ENTRY, *self.args, stdout=asyncio.subprocess.PIPE
        )
        try:
            line = await asyncio.wait_for(_line(self._proc, _READY), timeout)
        except asyncio.TimeoutError as exc:
            await self.stop()
            raise RuntimeError(f"the model backend did not start within {timeout:g}s") from exc
        except EOFError as exc:  # it exited; its own error message went to our stderr
            await self.stop()
            raise RuntimeError(f"the model backend exited before serving ({' '.join(self.args)})") from exc
        self.url = "http://127.0.0.1:" + line.rsplit(":", 1)[1].strip()
        return self.url

    async def stop(self, timeout: float = 15.0) -> dict[str, Any] | None:
        """Stops it (SIGTERM, then SIGKILL after ``timeout`` seconds); returns the summary it printed, if any."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        summary: dict[str, Any] | None = None
        try:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(asyncio.TimeoutError, EOFError, ValueError):
                summary = json.loads(await asyncio.wait_for(_line(proc, "{"), timeout))
            await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.wait_for(proc.wait(), timeout)
        return summary


async def _line(proc: asyncio.subprocess.Process, prefix: str) -> str:
    """The next line of ``proc``'s output that starts with ``prefix``; EOFError if the output ends first."""
    assert proc.stdout is not None
    while True:
        raw = await proc.stdout.readline()
        if not raw:
            raise EOFError
        line = raw.decode("utf-8", "replace")
        if line.startswith(prefix):
            return line


def main(argv: list[str] | None = None) -> int:
    """The backend process: serves until SIGTERM / SIGINT (or its parent goes), then prints a JSON summary line."""
    from victor_observability.demo.runner import ServiceThread

    parser = argparse.ArgumentParser(prog="victor-observability demo backend")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--latency-scale", type=float, default=1.0)
    parser.add_argument("--spans-file", default="")
    parser.add_argument("--system-interval", type=float, default=5.0)
    parser.add_argument("--no-instrumentation", dest="instrumented", action="store_false")
    args = parser.parse_args(argv)
    instr = instrument(
        args.instrumented,
        spans_path=Path(args.spans_file) if args.spans_file else None,
        system_interval=args.system_interval,
        service_name=BACKEND_SERVICE,
    )
    world = World(None if args.seed is None else args.seed + 1, args.latency_scale)
    service = ServiceThread(build_backend_app(instr, world), args.port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    parent = os.getppid()
    try:
        port = service.start()
    except RuntimeError as exc:
        instr.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{_READY}{port}", flush=True)
    # An orphan (the demo killed outright) stops by itself rather than serving forever.
    while not stop.wait(0.5) and os.getppid() == parent:
        pass
    service.stop()
    summary = {"port": port, "spans": instr.spans_finished(), "recorded": instr.recorded_requests()}
    instr.close()
    print(json.dumps(summary), flush=True)
    return 0
