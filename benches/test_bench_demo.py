"""The demo service under its own load generator: throughput and CPU, instrumented beside all instrumentation off.

The service runs in its own process (`python -m victor_observability demo --no-load`), the load generator in this
one, closed loop, so the service's CPU time (psutil) is its own. A last run profiles the service's request thread
with cProfile and attributes its time to the toolkit (middleware, metrics, tracing) or to everything else.
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
# The load generator's lean HTTP/1.1 client: with httpx the client, not the service, would be the bottleneck
# (httpx spends about twice the service's CPU per request).
CLIENT = "raw"
CONCURRENCY = 16
ROUNDS = 2
IDLE = {"<method 'poll' of 'select.epoll' objects>", "<method 'select' of 'select.epoll' objects>"}

compare("demo service CPU per request: instrumented vs all off (1.0 = free)", "demo_on", "demo_off", "report")


# The service variants measured side by side: everything on; everything on but spans not exported (kept in the
# tracer's memory buffer only); everything off (no middleware, no-op recorder and tracer, no /metrics).
MODES: dict[str, list[str]] = {
    "on": [],
    "on_no_export": ["--spans-file", ""],
    "off": ["--no-instrumentation"],
}


def _start(tmp: Path, mode: str, profile: Path | None) -> tuple[subprocess.Popen[str], int]:
    args = [sys.executable, "-u", "-m", "victor_observability", "demo", "--no-load", "--port", "0"]
    args += ["--latency-scale", "0", "--spans-file", str(tmp / "spans.jsonl"), *MODES[mode]]
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
    generator = LoadGenerator(base, rate=0, concurrency=CONCURRENCY, seed=1, client=CLIENT)
    return await generator.run(asyncio.Event(), seconds)


def measure(tmp: Path, mode: str, profile: Path | None = None) -> dict[str, float]:
    proc, port = _start(tmp, mode, profile)
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
        results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for _ in range(ROUNDS):  # interleaved, so drift on a shared machine hits every variant
            for mode in MODES:
                results[mode].append(measure(tmp_path, mode))
        return results

    results = benchmark.pedantic(run, rounds=1, iterations=1)
    med = {
        mode: {k: statistics.median(r[k] for r in runs) for k in ("rps", "cpu_ms_per_request")}
        for mode, runs in results.items()
    }
    cpu = {mode: m["cpu_ms_per_request"] for mode, m in med.items()}
    RESULTS["demo_on"], RESULTS["demo_off"] = cpu["on"], cpu["off"]
    share_cpu = 1.0 - cpu["off"] / cpu["on"]
    share_export = (cpu["on"] - cpu["on_no_export"]) / cpu["on"]

    profile = tmp_path / "service.prof"
    measure(tmp_path, "on", profile=profile)
    shares = toolkit_shares(profile)
    share_profile = sum(shares.values())
    breakdown = ", ".join(f"{k} {v:.1%}" for k, v in shares.items())

    rps = ", ".join(f"{mode} {m['rps']:.0f}" for mode, m in med.items())
    per_request = ", ".join(f"{mode} {m['cpu_ms_per_request']:.3f}" for mode, m in med.items())
    NOTES.append(
        f"demo service, {CONCURRENCY} connections flat out ({CLIENT} client in another process), "
        f"{SECONDS:g} s x {ROUNDS} rounds. req/s: {rps} (on/off {med['on']['rps'] / med['off']['rps']:.2f}x). "
        f"Service CPU ms per request: {per_request}. Middleware + metrics + tracing = {share_cpu:.1%} of the "
        f"instrumented service's CPU (by difference, all threads), of which exporting spans to the JSON-lines file "
        f"{share_export:.1%}; {share_profile:.1%} of its request thread by cProfile ({breakdown})"
    )
    benchmark.extra_info.update(
        rps={mode: m["rps"] for mode, m in med.items()},
        cpu_ms_per_request=cpu,
        cpu_share=share_cpu,
        export_share=share_export,
        profile_share=share_profile,
        profile_breakdown=shares,
    )
    assert all(m["rps"] > 0 for m in med.values())
