"""The main job: `python -m victor_observability demo` runs, stops cleanly, and its summary matches /metrics."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from victor_observability.__main__ import main
from victor_observability.demo.instrumentation import instrument
from victor_observability.demo.load import LoadGenerator
from victor_observability.demo.service import build_app
from victor_observability.demo.workload import LruCache, World

SPANS_FILE = "victor-demo-spans.jsonl"


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "victor_observability", "demo", "--port", "0", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _port_of(proc: subprocess.Popen[str], timeout: float = 30.0) -> int:
    """Reads the banner's first line ("... serving http://127.0.0.1:PORT")."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "serving http://127.0.0.1:" in line:
            return int(line.rsplit(":", 1)[1])
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"demo did not report its port; stderr: {proc.communicate(timeout=10)[1]}")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def _total(samples: list[tuple[str, dict[str, str], float]], name: str, **match: Any) -> float:
    """Sum of `name` over series whose labels satisfy `match` (a value, or a callable predicate)."""

    def ok(labels: dict[str, str]) -> bool:
        return all(m(labels.get(k)) if callable(m) else labels.get(k) == m for k, m in match.items())

    return sum(v for n, labels, v in samples if n == name and ok(labels))


@pytest.mark.parametrize("client", ["httpx", "raw"])
def test_demo_runs_for_its_duration_and_its_summary_matches_metrics(tmp_path: Path, client: str) -> None:
    summary_path = tmp_path / "summary.json"
    args = ["--port", "0", "--duration", "5", "--rate", "60", "--latency-scale", "0.05", "--seed", "11"]
    args += ["--client", client]
    args += ["--alert-error-rate", "0"]  # any failed request makes the in-process high_error_rate alert fire
    proc = subprocess.run(
        [sys.executable, "-m", "victor_observability", "demo", *args, "--summary-json", str(summary_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(summary_path.read_text())
    load = summary["load"]
    assert load["requests"] > 50
    assert load["transport_errors"] == 0
    # The printed summary is the same one.
    assert f"requests      {load['requests']} in" in proc.stdout
    assert f"alerts fired  {summary['alerts_fired']}" in proc.stdout

    # What the client saw (from the responses) equals what /metrics served at the end, over HTTP.
    s = _samples(summary["final_scrape"])
    llm = {"provider": lambda p: p != "http"}
    assert _total(s, "victor_request_total", endpoint="/v1/chat", **llm) == load["llm_calls"] > 0
    assert _total(s, "victor_request_errors_total", endpoint="/v1/chat", **llm) == load["llm_errors"]
    assert _total(s, "victor_request_latency_ms_count", endpoint="/v1/chat", **llm) == load["llm_calls"]
    assert _total(s, "victor_coordinator_invocations_total", coordinator="chat") == load["llm_calls"]
    assert _total(s, "victor_tasks_completed_total") == load["llm_calls"] - load["llm_errors"]
    assert _total(s, "victor_tasks_failed_total") == load["llm_errors"]
    assert _total(s, "victor_tokens_used_total") == load["tokens"] > 0
    assert _total(s, "victor_total_cost_usd") == pytest.approx(load["cost_usd"], abs=1e-5)
    assert _total(s, "victor_tool_calls_total") == load["tool_executions"] > 0
    assert _total(s, "victor_tool_errors_total") == load["tool_errors"]
    assert _total(s, "victor_cache_hits_total", cache="tool_cache") == load["cache_hits"] > 0
    assert _total(s, "victor_cache_misses_total", cache="tool_cache") == load["cache_misses"] > 0
    models = {labels["model"] for n, labels, _ in s if n == "victor_request_total" and "model" in labels}
    assert len(models) >= 4
    # Every request the client made went through the middleware, labelled with its route template.
    for key, count in load["responses"].items():
        route, status = key.rsplit(" ", 1)
        http = {"endpoint": route, "provider": "http", "status": status}
        assert _total(s, "victor_request_total", **http) == count, key
    assert _total(s, "victor_active_requests") == 0
    assert summary["recorded"]["http_requests"] == load["requests"]
    assert summary["recorded"]["llm_calls"] == load["llm_calls"]
    assert f"recorded      {load['requests']} HTTP requests" in proc.stdout

    # The alert fired, was logged by the log notifier, and counted in the exposition.
    assert summary["alerts_fired"] >= 1
    assert _total(s, "victor_alerts_fired_total", rule="high_error_rate") >= 1
    assert _total(s, "victor_alerts_fired_total") == summary["alerts_fired"]
    assert "[FIRING] high_error_rate" in proc.stderr

    # The service's own summary agrees with its exposition.
    service = summary["service"]
    assert service["tools"]["calls"] == load["tool_executions"]
    assert service["cache"]["hits"] == load["cache_hits"]
    assert service["business"]["tokens_used"] == load["tokens"]

    # Spans went to the JSON-lines file in the working folder, one line each.
    lines = (tmp_path / SPANS_FILE).read_text().splitlines()
    assert summary["spans"] == len(lines) > load["requests"]
    names = {json.loads(line)["name"] for line in lines}
    assert {"chat", "call_llm", "execute_tool"} <= names


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_stops_cleanly_on_signal(tmp_path: Path, procs: list[subprocess.Popen[str]], sig: signal.Signals) -> None:
    proc = _start(tmp_path, "--rate", "40", "--latency-scale", "0.05")
    procs.append(proc)
    port = _port_of(proc)
    # Wait (bounded) until traffic has been recorded, then interrupt.
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=5) as client:
        while "victor_tool_calls_total{" not in client.get("/metrics").text:
            assert time.monotonic() < deadline, "no traffic recorded within 30 s"
            time.sleep(0.1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "summary" in out and "alerts fired" in out
    assert "Traceback" not in err
    assert (tmp_path / SPANS_FILE).stat().st_size > 0


def test_demo_without_load_serves_requests_from_outside(tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    proc = _start(tmp_path, "--no-load", "--latency-scale", "0")
    procs.append(proc)
    port = _port_of(proc)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=5) as client:
        chat = client.post("/v1/chat", json={"provider": "openai", "model": "gpt-4o-mini", "prompt": "hi"})
        assert chat.status_code in (200, 429, 502, 504)
        assert client.post("/v1/tools/read_file", json={"arg": "README.md"}).status_code in (200, 500)
        assert client.post("/v1/tools/rm_rf", json={"arg": "/"}).status_code == 404
        probes = {kind: client.get(f"/health/{kind}") for kind in ("live", "ready", "startup")}
        metrics = client.get("/metrics")
    for kind, probe in probes.items():
        assert probe.status_code == 200, (kind, probe.text)
        assert probe.json()["status"] == "pass", kind
    assert metrics.status_code == 200
    s = _samples(metrics.text)
    assert _total(s, "victor_request_total", endpoint="/v1/chat", provider="openai") == 1
    assert _total(s, "victor_cache_misses_total", cache="tool_cache") == 1
    # Scrapes and probes are not traffic; the unknown tool is, under its route template.
    assert _total(s, "victor_request_total", provider="http", endpoint="/metrics") == 0
    assert _total(s, "victor_request_total", provider="http", endpoint="/v1/tools/{tool}", status="404") == 1
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "requests      " not in out  # no load, so no client section in the summary
    assert "alerts fired" in out


async def test_instrumentation_off_records_nothing_and_serves_no_metrics() -> None:
    instr = instrument(enabled=False)
    app = build_app(instr, World(seed=1, latency_scale=0.0))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        chat = await client.post("/v1/chat", json={"provider": "anthropic", "model": "claude-haiku-4-5", "prompt": "x"})
        assert chat.status_code in (200, 429, 502, 504)
        assert (await client.get("/metrics")).status_code == 404
    assert instr.collector is None and instr.spans_finished() == 0 and instr.alerts_fired() == 0


async def test_service_rejects_unknown_providers_and_tools() -> None:
    instr = instrument(enabled=True, collect_system_metrics=False)
    try:
        app = build_app(instr, World(seed=1, latency_scale=0.0))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            bad = await client.post("/v1/chat", json={"provider": "nope", "model": "m", "prompt": "x"})
            assert bad.status_code == 400
            bad_tool = await client.post(
                "/v1/chat", json={"provider": "openai", "model": "gpt-4o", "prompt": "x", "tool": "nope"}
            )
            assert bad_tool.status_code == 400
            bad_model = await client.post("/v1/chat", json={"provider": "openai", "model": "gpt-99", "prompt": "x"})
            assert bad_model.status_code == 400
        assert instr.collector is not None
        s = _samples(instr.collector.export_prometheus())
        # The middleware saw three requests answered 400; no provider was called.
        assert _total(s, "victor_request_total", endpoint="/v1/chat", provider="http", status="400") == 3
        assert _total(s, "victor_request_total", provider=lambda p: p != "http") == 0
    finally:
        instr.close()


def test_definition_mistakes_raise_value_error() -> None:
    with pytest.raises(ValueError, match="rate"):
        LoadGenerator("http://127.0.0.1:1", rate=-1)
    with pytest.raises(ValueError, match="concurrency"):
        LoadGenerator("http://127.0.0.1:1", concurrency=0)
    with pytest.raises(ValueError, match="client"):
        LoadGenerator("http://127.0.0.1:1", client="curl")
    with pytest.raises(ValueError, match="latency_scale"):
        World(latency_scale=-0.5)
    with pytest.raises(ValueError, match="capacity"):
        LruCache(0)
    with pytest.raises(SystemExit):
        main(["demo", "--duration", "-1"])


def test_lru_cache_evicts_least_recently_used() -> None:
    cache = LruCache(2)
    assert not cache.put("a", "1") and not cache.put("b", "2")
    assert cache.get("a") == "1"
    assert cache.put("c", "3")  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("a") == "1" and len(cache) == 2


@pytest.mark.parametrize("client", ["httpx", "raw"])
async def test_load_generator_counts_requests_that_get_no_response(client: str) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    generator = LoadGenerator(f"http://127.0.0.1:{port}", rate=0, concurrency=2, client=client)
    stats = await generator.run(asyncio.Event(), 0.3)
    assert stats.requests == 0
    assert stats.transport_errors > 0
    assert stats.error_rate() == 100.0
