"""The demo service under its own load generator: throughput and CPU, instrumented beside all instrumentation off.

The service runs in its own process (`python -m victor_observability demo --no-load`), the load generator in this
one, closed loop, so the service's CPU time (psutil) is its own. A third run profiles the service thread with
cProfile and attributes its time to the toolkit (middleware, metrics, tracing) or to everything else.
"""

from __future__ import annotations

import asyncio
import pstats
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from conftest import NOTES, RESULTS, compare
from victor_observability.demo.load import LoadGenerator, LoadStats

SECONDS = 5.0
WARMUP = 1.0
# httpx costs the client more CPU per request than the service spends: a few connections give the most requests
# per second on a small machine (more connections only slow httpx's pool down).
CONCURRENCY = 4
ROUNDS = 2
IDLE = {"<method 'poll' of 'select.epoll' objects>", "<method 'select' of 'select.epoll' objects>"}

compare("demo service CPU per request: instrumented vs all off (1.0 = free)", "demo_on", "demo_off", "report")


def _start(tmp: Path, instrumented: bool, profile: Path | None) -> tuple[subprocess.Popen[str], int]:
    args = [sys.executable, "-u", "-m", "victor_observability", "demo", "--no-load", "--port", "0"]
    args += ["--latency-scale", "0", "--spans-file", str(tmp / "spans.jsonl")]
    if not instrumented:
        args.append("--no-instrumentation")
    if profile is not None:
        args += ["--profile", str(profile)]
    proc = subprocess.Popen(args, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"serving http://127\.0\.0\.1:(\d+)", proc.stdout.readline())
        if found:
            return proc, int(found.group(1))
    proc.kill()
    raise AssertionError(f"demo did not start: {proc.communicate(timeout=10)[1]}")


async def _drive(base: str, seconds: float) -> LoadStats:
    return await LoadGenerator(base, rate=0, concurrency=CONCURRENCY, seed=1).run(asyncio.Event(), seconds)


def measure(tmp: Path, instrumented: bool, profile: Path | None = None) -> dict[str, float]:
    proc, port = _start(tmp, instrumented, profile)
    try:
        base = f"http://127.0.0.1:{port}"
        asyncio.run(_drive(base, WARMUP))
        service = psutil.Process(proc.pid)
        before = service.cpu_times()
        stats = asyncio.run(_drive(base, SECONDS))
        after = service.cpu_times()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert stats.transport_errors == 0 and stats.requests > 0
    cpu = (after.user - before.user) + (after.system - before.system)
    return {"rps": stats.requests / stats.elapsed, "cpu_ms_per_request": 1000.0 * cpu / stats.requests}


def _component(filename: str, func: str) -> str | None:
    """Which part of the toolkit a profiled function belongs to (None: not the toolkit)."""
    if "victor_observability._core" in func:
        core = func.split("victor_observability._core.", 1)[1]
        if core.startswith(("Collector", "Registry", "Family", "Counter", "Gauge", "Histogram")):
            return "metrics"
        return "tracing"  # TracerCore, Span, SpanContext, context-variable helpers
    if "victor_observability/" not in filename or "/demo/" in filename:
        return None
    module = filename.rsplit("/", 1)[1]
    if module == "middleware.py":
        return "middleware"
    if module in ("collector.py", "metrics.py", "http.py", "system.py"):
        return "metrics"
    if module in ("tracing.py", "exporters.py", "_export_worker.py", "_tracing_metrics.py"):
        return "tracing"
    return "other"  # health checks, alerting


def toolkit_shares(profile: Path) -> dict[str, float]:
    """Shares of the service thread's busy time (waiting in epoll excluded) spent in each part of the toolkit:
    its Python modules and Rust methods, the demo's own code excluded."""
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]
    total = 0.0
    parts: dict[str, float] = dict.fromkeys(("middleware", "metrics", "tracing", "other"), 0.0)
    for (filename, _line, func), (_cc, _nc, tottime, *_rest) in raw.items():
        if func in IDLE:
            continue
        total += tottime
        part = _component(filename, func)
        if part is not None:
            parts[part] += tottime
    return {k: v / total for k, v in parts.items()}


def test_demo_service_throughput_and_instrumentation_cost(benchmark: Any, tmp_path: Path) -> None:
    def run() -> dict[str, list[dict[str, float]]]:
        results: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
        for _ in range(ROUNDS):  # interleaved, so drift on a shared machine hits both sides
            results["off"].append(measure(tmp_path, instrumented=False))
            results["on"].append(measure(tmp_path, instrumented=True))
        return results

    results = benchmark.pedantic(run, rounds=1, iterations=1)
    med = {
        mode: {k: statistics.median(r[k] for r in runs) for k in ("rps", "cpu_ms_per_request")}
        for mode, runs in results.items()
    }
    RESULTS["demo_on"] = med["on"]["cpu_ms_per_request"]
    RESULTS["demo_off"] = med["off"]["cpu_ms_per_request"]
    share_cpu = 1.0 - med["off"]["cpu_ms_per_request"] / med["on"]["cpu_ms_per_request"]

    profile = tmp_path / "service.prof"
    measure(tmp_path, instrumented=True, profile=profile)
    shares = toolkit_shares(profile)
    share_profile = sum(shares.values())
    breakdown = ", ".join(f"{k} {v:.1%}" for k, v in shares.items())

    NOTES.append(
        f"demo service, {CONCURRENCY} connections flat out (the httpx client is the bottleneck on 2 cores), "
        f"{SECONDS:g} s x {ROUNDS} rounds: "
        f"instrumented {med['on']['rps']:.0f} req/s vs off {med['off']['rps']:.0f} req/s "
        f"({med['on']['rps'] / med['off']['rps']:.2f}x); service CPU per request {med['on']['cpu_ms_per_request']:.3f} "
        f"vs {med['off']['cpu_ms_per_request']:.3f} ms: middleware + metrics + tracing = {share_cpu:.1%} of the "
        f"instrumented service's CPU (by difference, all threads), {share_profile:.1%} of its request thread "
        f"(cProfile: {breakdown}; span export to the JSON-lines file runs on another thread)"
    )
    benchmark.extra_info.update(
        rps_on=med["on"]["rps"],
        rps_off=med["off"]["rps"],
        cpu_share=share_cpu,
        profile_share=share_profile,
        profile_breakdown=shares,
    )
    assert med["on"]["rps"] > 0 and med["off"]["rps"] > 0
