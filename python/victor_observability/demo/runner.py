"""Running the demo: the service under uvicorn in a thread, the load generator on the main loop, a clean stop.

>>> DemoOptions(duration=5).port
8000
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import json
import logging
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from victor_observability.demo.backend import GATEWAY_SERVICE, BackendProcess, RemoteModel
from victor_observability.demo.instrumentation import DEMO_SERVICE, Instrumentation, instrument
from victor_observability.demo.load import LoadGenerator, LoadStats
from victor_observability.demo.service import build_app
from victor_observability.demo.traces import trace_summary
from victor_observability.demo.workload import World


@dataclass
class DemoOptions:
    port: int = 8000
    rate: float = 20.0
    duration: float = 0.0  # 0: until Ctrl-C / SIGTERM
    load: bool = True
    concurrency: int = 64
    latency_scale: float = 1.0
    seed: int | None = None
    spans_file: str | None = "victor-demo-spans.jsonl"
    summary_json: str | None = None
    alert_error_rate: float = 5.0
    instrumented: bool = True
    system_interval: float = 5.0
    profile: str | None = None  # write a cProfile of the service thread here (the bench reads it)
    client: str = "httpx"  # the load generator's HTTP client: "httpx" or "raw"
    services: int = 1  # 2: the service calls a model backend running in a second process (demo/backend.py)


class ServiceThread:
    """uvicorn serving ``app`` on 127.0.0.1 from a thread of this process (its signal handling stays ours)."""

    def __init__(self, app: Any, port: int, profile: str | None = None) -> None:
        import uvicorn

        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self._profile = profile
        self._thread = threading.Thread(target=self._serve, name="victor-demo-uvicorn", daemon=True)
        self.port = port

    def _serve(self) -> None:
        if self._profile is None:
            self.server.run()
            return
        profiler = cProfile.Profile()
        try:
            profiler.runcall(self.server.run)
        finally:
            profiler.dump_stats(self._profile)

    def start(self, timeout: float = 15.0) -> int:
        """Starts serving; returns the bound port (useful with port 0). RuntimeError if it does not come up."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the demo service could not start on 127.0.0.1:{self.port} (port in use?)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the demo service did not start within {timeout:g}s")
            time.sleep(0.01)
        self.port = int(self.server.servers[0].sockets[0].getsockname()[1])
        return self.port

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            # Connections that would not close: stop waiting for them.
            self.server.force_exit = True
            self._thread.join(timeout)


def run_demo(options: DemoOptions, out: TextIO | None = None, progress: TextIO | None = None) -> int:
    """Runs the demo to completion (duration over, Ctrl-C or SIGTERM) and returns the exit status."""
    progress = progress if progress is not None else sys.stderr
    _log_to(progress)
    return asyncio.run(_run(options, out or sys.stdout, progress))


def _log_to(stream: TextIO) -> None:
    """Log lines (the alert notifications among them) on ``stream``, clearing the live progress line first."""
    root = logging.getLogger()
    if root.handlers:  # the embedding program configured logging already
        return
    handler = logging.StreamHandler(stream)
    clear = "\r\033[K" if stream.isatty() else ""
    handler.setFormatter(logging.Formatter(clear + "%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Per-request access lines would drown the demo's own output.
    logging.getLogger("httpx").setLevel(logging.WARNING)


async def _run(options: DemoOptions, out: TextIO, progress: TextIO) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _on_signal, stop, loop, sig)
    instr = instrument(
        options.instrumented,
        spans_path=Path(options.spans_file).resolve() if options.spans_file and options.instrumented else None,
        alert_error_rate=options.alert_error_rate,
        system_interval=options.system_interval,
        service_name=GATEWAY_SERVICE if options.services > 1 else DEMO_SERVICE,
    )
    spans_offset = instr.spans_path.stat().st_size if instr.spans_path and instr.spans_path.exists() else 0
    backend = BackendProcess(
        0 if options.port == 0 else options.port + 1,
        seed=options.seed,
        latency_scale=options.latency_scale,
        spans_file=instr.spans_path,
        system_interval=options.system_interval,
        instrumented=options.instrumented,
    )
    try:
        model = RemoteModel(await backend.start(), instr.distributed_tracer) if options.services > 1 else None
        app = build_app(instr, World(options.seed, options.latency_scale), model=model)
        service = ServiceThread(app, options.port, options.profile)
        port = await asyncio.to_thread(service.start)
    except RuntimeError as exc:
        await backend.stop()
        instr.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    base = f"http://127.0.0.1:{port}"
    print(_banner(base, instr, options), file=out, flush=True)
    if backend.url is not None:
        print(
            f"  model backend {backend.url} (POST /v1/complete, /metrics, /health/*), a process of its own",
            file=out,
            flush=True,
        )
    stats: LoadStats | None = None
    try:
        if options.load:
            generator = LoadGenerator(
                base,
                rate=options.rate,
                concurrency=options.concurrency,
                seed=options.seed,
                progress=progress,
                client=options.client,
            )
            stats = await generator.run(stop, options.duration or None)
        else:
            timeout = options.duration if options.duration > 0 else None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
        scrape = await _scrape(base) if instr.collector is not None else None
    finally:
        await asyncio.to_thread(service.stop)
        instr.close()
        backend_summary = await backend.stop()
    summary = build_summary(stats, instr, scrape, port)
    if options.services > 1:
        summary["backend"] = backend_summary
        if instr.spans_path is not None and instr.spans_path.exists():
            summary["traces"] = trace_summary(instr.spans_path, spans_offset)
    print(format_summary(summary), file=out, flush=True)
    if options.summary_json:
        Path(options.summary_json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


def _on_signal(stop: asyncio.Event, loop: asyncio.AbstractEventLoop, sig: signal.Signals) -> None:
    if stop.is_set():
        # A second Ctrl-C means "now": leave without the summary.
        raise SystemExit(130)
    stop.set()


def _banner(base: str, instr: Instrumentation, options: DemoOptions) -> str:
    parts = [f"victor-observability demo serving {base}", "  POST /v1/chat, POST /v1/tools/{tool}"]
    if instr.collector is not None:
        health = ", /health/live, /health/ready, /health/startup" if instr.health is not None else ""
        parts.append(f"  GET {base}/metrics (Prometheus){health}")
    if instr.spans_path is not None:
        parts.append(f"  spans -> {instr.spans_path}")
    load = f"{options.rate:g} requests/s" if options.rate > 0 else f"{options.concurrency} workers flat out"
    parts.append(f"  load: {load}" if options.load else "  load: off (--no-load)")
    until = f"for {options.duration:g}s" if options.duration > 0 else "until Ctrl-C"
    parts.append(f"  running {until}")
    return "\n".join(parts)


async def _scrape(base: str) -> str | None:
    """The exposition as a scraper sees it over HTTP, just before the service stops."""
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10.0, trust_env=False) as client:
            response = await client.get("/metrics")
            response.raise_for_status()
            return response.text
    except httpx.HTTPError as exc:
        print(f"warning: final /metrics scrape failed: {exc}", file=sys.stderr)
        return None


def build_summary(stats: LoadStats | None, instr: Instrumentation, scrape: str | None, port: int) -> dict[str, Any]:
    """The final summary: what the client sent and saw, and what the service recorded."""
    summary: dict[str, Any] = {"port": port}
    if stats is not None:
        elapsed = stats.elapsed or math.nan
        summary["load"] = {
            "requests": stats.requests,
            "elapsed_s": round(stats.elapsed, 3),
            "requests_per_s": round(stats.requests / elapsed, 2) if stats.elapsed else 0.0,
            "errors": stats.errors,
            "error_rate": round(stats.error_rate(), 3),
            "transport_errors": stats.transport_errors,
            "latency_ms": {f"p{q}": _round(stats.percentile(q)) for q in (50, 95, 99)},
            "responses": {f"{route} {status}": n for (route, status), n in sorted(stats.responses.items())},
            "llm_calls": sum(stats.llm_calls.values()),
            "llm_errors": sum(n for (_, _, ok), n in stats.llm_calls.items() if not ok),
            "tool_executions": sum(stats.tool_runs.values()),
            "tool_errors": sum(n for (_, ok), n in stats.tool_runs.items() if not ok),
            "cache_hits": stats.cache_hits,
            "cache_misses": stats.cache_misses,
            "tokens": stats.tokens,
            "cost_usd": round(stats.cost_usd, 6),
        }
    if instr.collector is not None:
        summary["service"] = instr.collector.get_summary()
        summary["recorded"] = instr.recorded_requests()
    summary["spans"] = instr.spans_finished()
    summary["spans_file"] = str(instr.spans_path) if instr.spans_path is not None else None
    # Read from the final scrape when there is one: the alert loop runs until the service stops, so a count taken
    # after the scrape could include an alert that fired in between.
    fired = _scraped_total(scrape, f"{instr.collector.prefix}_alerts_fired_total") if instr.collector else None
    summary["alerts_fired"] = instr.alerts_fired() if fired is None else fired
    summary["final_scrape"] = scrape
    return summary


def _scraped_total(scrape: str | None, sample: str) -> int | None:
    """The sum of a sample's series in a text exposition, or None without a scrape."""
    if scrape is None:
        return None
    total = 0.0
    for line in scrape.splitlines():
        if line.startswith(sample) and line[len(sample) : len(sample) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def format_summary(summary: dict[str, Any]) -> str:
    """The summary a person reads at the end of the demo."""
    lines = ["", "summary"]
    load = summary.get("load")
    if load is not None:
        lat = load["latency_ms"]
        lines += [
            f"  requests      {load['requests']} in {load['elapsed_s']:.1f}s ({load['requests_per_s']:.1f}/s)",
            f"  errors        {load['errors']} ({load['error_rate']:.2f}%)",
            f"  latency       p50 {_ms(lat['p50'])}  p95 {_ms(lat['p95'])}  p99 {_ms(lat['p99'])}",
            f"  llm calls     {load['llm_calls']} ({load['llm_errors']} failed), {load['tokens']} tokens, "
            f"${load['cost_usd']:.4f}",
            f"  tools         {load['tool_executions']} runs ({load['tool_errors']} failed), cache "
            f"{load['cache_hits']} hits / {load['cache_misses']} misses",
        ]
    recorded = summary.get("recorded")
    if recorded is not None:
        lines.append(
            f"  recorded      {recorded['http_requests']:.0f} HTTP requests ({recorded['http_errors']:.0f} 5xx), "
            f"{recorded['llm_calls']:.0f} LLM calls ({recorded['llm_errors']:.0f} failed)"
        )
    lines.append(
        f"  spans         {summary['spans']}" + (f" -> {summary['spans_file']}" if summary["spans_file"] else "")
    )
    lines.append(f"  alerts fired  {summary['alerts_fired']}")
    lines += _services_lines(summary)
    return "\n".join(lines)


def _services_lines(summary: dict[str, Any]) -> list[str]:
    """With a model backend: what it recorded, and the traces that crossed from one service to the other."""
    lines = []
    backend = summary.get("backend")
    if backend is not None:
        rec = backend["recorded"]
        lines.append(
            f"  backend       {rec['http_requests']:.0f} HTTP requests ({rec['http_errors']:.0f} 5xx), "
            f"{backend['spans']} spans"
        )
    traces = summary.get("traces")
    if traces is not None:
        slowest = (
            f"; slowest {traces['slowest_ms']:.0f} ms: trace {traces['slowest_trace_id']}"
            if traces["slowest_trace_id"]
            else ""
        )
        lines.append(f"  traces        {traces['traces']}, {traces['cross_service']} across services{slowest}")
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"
