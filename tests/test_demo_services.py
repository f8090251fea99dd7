"""`demo --services 2`: a gateway and a model backend in two processes, one trace across both."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from victor_observability.demo.backend import BACKEND_SERVICE, GATEWAY_SERVICE

SPANS_FILE = "victor-demo-spans.jsonl"
INCOMING_PARENT = "b7ad6b7169203331"


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "victor_observability", "demo", "--services", "2", "--port", "0", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _ports(proc: subprocess.Popen[str], timeout: float = 45.0) -> tuple[int, int]:
    """The gateway's and the backend's ports, from the banner."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    gateway = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if found := re.search(r"serving http://127\.0\.0\.1:(\d+)", line):
            gateway = int(found.group(1))
        if (found := re.search(r"model backend http://127\.0\.0\.1:(\d+)", line)) and gateway is not None:
            return gateway, int(found.group(1))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"demo did not report its ports; stderr: {proc.communicate(timeout=10)[1]}")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _spans(path: Path) -> dict[str, list[dict[str, Any]]]:
    traces: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        span = json.loads(line)
        traces.setdefault(span["trace_id"], []).append(span)
    return traces


def _finish(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def test_every_chat_is_one_trace_across_both_services(tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    args = ["--duration", "4", "--rate", "25", "--latency-scale", "0.05", "--seed", "7", "--system-interval", "1"]
    proc = _start(tmp_path, *args, "--summary-json", "summary.json")
    procs.append(proc)
    gateway, backend = _ports(proc)
    assert gateway != backend
    # Each service answers /metrics and its probes on its own port, while the load runs.
    with httpx.Client(timeout=10, trust_env=False) as client:
        for port in (gateway, backend):
            assert client.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200
            assert "victor_request_total" in client.get(f"http://127.0.0.1:{port}/metrics").text
    out = _finish(proc)

    traces = _spans(tmp_path / SPANS_FILE)
    chats = {t: s for t, s in traces.items() if any(x["name"] == "POST /v1/chat" for x in s)}
    assert chats
    for trace_id, spans in chats.items():
        by_id = {s["span_id"]: s for s in spans}
        assert {s["service_name"] for s in spans} == {GATEWAY_SERVICE, BACKEND_SERVICE}, trace_id
        assert all(s["trace_id"] == trace_id for s in spans)
        (server,) = [s for s in spans if s["service_name"] == BACKEND_SERVICE and s["kind"] == "server"]
        client_span = by_id[server["parent_span_id"]]  # the backend's server span hangs off the gateway's client span
        assert (client_span["service_name"], client_span["kind"], client_span["name"]) == (
            GATEWAY_SERVICE,
            "client",
            "POST",
        )
        assert client_span["attributes"]["url.full"] == f"http://127.0.0.1:{backend}/v1/complete"
        assert (
            client_span["attributes"]["http.response.status_code"] == server["attributes"]["http.response.status_code"]
        )
        assert by_id[client_span["parent_span_id"]]["name"] == "call_llm"
        # One root (the gateway's server span); every other span's parent is in the trace.
        roots = [s for s in spans if s["parent_span_id"] is None]
        assert [(r["service_name"], r["kind"]) for r in roots] == [(GATEWAY_SERVICE, "server")]
        assert all(s["parent_span_id"] in by_id for s in spans if s["parent_span_id"] is not None)
    # Tool calls never reach the backend: their traces stay in the gateway.
    for spans in traces.values():
        if not any(s["name"] == "POST /v1/chat" for s in spans):
            assert {s["service_name"] for s in spans} == {GATEWAY_SERVICE}

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["traces"]["cross_service"] == len(chats)
    assert summary["traces"]["services"] == [BACKEND_SERVICE, GATEWAY_SERVICE]
    assert summary["traces"]["slowest_trace_id"] in chats
    slowest_root = next(s for s in chats[summary["traces"]["slowest_trace_id"]] if s["parent_span_id"] is None)
    assert all(
        next(s for s in spans if s["parent_span_id"] is None)["duration_ms"] <= slowest_root["duration_ms"]
        for spans in chats.values()
    )
    backend_spans = sum(1 for spans in traces.values() for s in spans if s["service_name"] == BACKEND_SERVICE)
    assert summary["backend"]["spans"] == backend_spans
    assert summary["backend"]["recorded"]["http_requests"] == summary["load"]["llm_calls"] == len(chats)
    assert f"{len(chats)} across services" in out and summary["traces"]["slowest_trace_id"] in out


def test_the_backend_honours_the_gateways_sampling_decision(tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    proc = _start(tmp_path, "--no-load", "--latency-scale", "0.01", "--seed", "1")
    procs.append(proc)
    gateway, _ = _ports(proc)
    dropped, kept = "0af7651916cd43dd8448eb211c80319c", "4bf92f3577b34da6a3ce929d0e0e4736"
    body = {"provider": "openai", "model": "gpt-4o-mini", "prompt": "hello"}
    with httpx.Client(timeout=10, trust_env=False) as client:
        for trace_id, flags in ((dropped, "00"), (kept, "01")):
            headers = {"traceparent": f"00-{trace_id}-{INCOMING_PARENT}-{flags}"}
            response = client.post(f"http://127.0.0.1:{gateway}/v1/chat", json=body, headers=headers)
            assert response.status_code in (200, 429, 502, 504)
    proc.send_signal(signal.SIGTERM)
    _finish(proc)

    traces = _spans(tmp_path / SPANS_FILE)
    assert dropped not in traces  # sampled=0: neither the gateway nor the backend recorded a span
    spans = traces[kept]
    assert {s["service_name"] for s in spans} == {GATEWAY_SERVICE, BACKEND_SERVICE}
    (root,) = [s for s in spans if s["kind"] == "server" and s["service_name"] == GATEWAY_SERVICE]
    assert root["parent_span_id"] == INCOMING_PARENT
