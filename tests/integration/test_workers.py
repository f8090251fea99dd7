"""The quickstart app under real gunicorn and `uvicorn --workers`, with only VICTOR_MULTIPROC_DIR set."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

# The README's quickstart, plus a route that answers with this worker's get_summary().
APP = """
import os
from fastapi import FastAPI
from victor_observability import (DistributedTracer, MonitoringMiddleware, create_production_collector,
                                  create_production_health_checker, create_health_router, make_metrics_app)

collector = create_production_collector()
tracer = DistributedTracer("victor.api")
app = FastAPI()
app.add_middleware(MonitoringMiddleware, metrics_collector=collector, tracer=tracer,
                   exclude_paths=("/metrics", "/metrics/*", "/health/*", "/summary"))
app.mount("/metrics", make_metrics_app(collector))
checker = create_production_health_checker(startup_timeout=60.0, service_version="1.0.0", metrics_collector=collector)
app.include_router(create_health_router(checker))


@app.get("/work")
async def work() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/summary")
async def summary() -> dict[str, object]:
    return {"pid": os.getpid(), "requests": collector.get_summary()["requests"]}
"""

WORKERS = 4


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serve(kind: str, tmp_path: Path, mp_dir: Path, *extra: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    (tmp_path / "svc.py").write_text(textwrap.dedent(APP))
    port = _free_port()
    if kind == "gunicorn":
        cmd = [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-k", "uvicorn.workers.UvicornWorker"]
        cmd += ["-b", f"127.0.0.1:{port}", "--chdir", str(tmp_path), "--graceful-timeout", "5", *extra, "svc:app"]
    else:
        cmd = [sys.executable, "-m", "uvicorn", "svc:app", "--workers", str(WORKERS), "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--app-dir", str(tmp_path), "--log-level", "warning", *extra]
    env = dict(os.environ, VICTOR_MULTIPROC_DIR=str(mp_dir))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # up to a minute for the workers to import the app
            if proc.poll() is not None:
                raise AssertionError(f"{kind} exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                if httpx.get(f"{base}/health/live", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"{kind} did not answer on {base}")
        yield base, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
        if proc.stderr is not None:
            proc.stderr.close()


def _requests(base: str, n: int) -> tuple[int, set[int]]:
    """n requests, each on a fresh connection; returns how many were answered and by which pids."""
    answered, pids = 0, set()
    for _ in range(n):
        try:
            r = httpx.get(f"{base}/work", timeout=10.0)
        except httpx.TransportError:
            continue  # not answered (a worker killed under it): not counted by the service either
        if r.status_code == 200:
            answered += 1
            pids.add(int(r.json()["pid"]))
    return answered, pids


_SAMPLE = re.compile(r"^(victor_request_total|victor_request_latency_ms_count)\{([^}]*)\} (\S+)$")


def _scrape_counts(base: str) -> tuple[float, float]:
    text = httpx.get(f"{base}/metrics", timeout=10.0, follow_redirects=True).text
    totals = {"victor_request_total": 0.0, "victor_request_latency_ms_count": 0.0}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and 'endpoint="/work"' in m.group(2):
            totals[m.group(1)] += float(m.group(3))
    return totals["victor_request_total"], totals["victor_request_latency_ms_count"]


def _assert_exact(base: str, answered: int) -> None:
    for _ in range(10):
        assert _scrape_counts(base) == (answered, answered)
    seen = set()
    for _ in range(12):
        s = httpx.get(f"{base}/summary", timeout=10.0).json()
        seen.add(s["pid"])
        assert s["requests"]["total"] == answered
        assert s["requests"]["latency_p50"] is not None
    assert seen, "no worker answered /summary"


@pytest.fixture
def mp_dir(tmp_path: Path) -> Path:
    return tmp_path / "mp"


@pytest.mark.parametrize("extra", [(), ("--preload",)], ids=["fork", "preload"])
def test_gunicorn_four_workers_count_exactly(tmp_path: Path, mp_dir: Path, extra: tuple[str, ...]) -> None:
    with _serve("gunicorn", tmp_path, mp_dir, *extra) as (base, _):
        answered, _pids = _requests(base, 400)
        assert answered == 400
        _assert_exact(base, answered)


def test_gunicorn_recycled_workers_keep_their_counts(tmp_path: Path, mp_dir: Path) -> None:
    with _serve("gunicorn", tmp_path, mp_dir, "--max-requests", "40", "--max-requests-jitter", "0") as (base, _):
        answered = 0
        for _ in range(4):
            got, _pids = _requests(base, 100)
            answered += got
        _assert_exact(base, answered)


def test_uvicorn_four_workers_count_exactly(tmp_path: Path, mp_dir: Path) -> None:
    with _serve("uvicorn", tmp_path, mp_dir) as (base, _):
        answered, _pids = _requests(base, 400)
        assert answered == 400
        _assert_exact(base, answered)


def test_a_worker_killed_with_sigkill_keeps_its_counts(tmp_path: Path, mp_dir: Path) -> None:
    with _serve("gunicorn", tmp_path, mp_dir) as (base, _):
        answered, pids = _requests(base, 200)
        victim = sorted(pids)[0]
        os.kill(victim, signal.SIGKILL)
        got, _pids = _requests(base, 200)
        answered += got
        _assert_exact(base, answered)
        # The scrapes found the victim's file unlocked and folded it into the archive.
        assert not any(p.name.startswith(f"{victim}-") for p in mp_dir.iterdir())
        assert (mp_dir / "archive.db").exists()


def test_twenty_recycled_workers_leave_a_bounded_directory(tmp_path: Path, mp_dir: Path) -> None:
    extra = ("--max-requests", "10", "--max-requests-jitter", "0")
    with _serve("gunicorn", tmp_path, mp_dir, *extra) as (base, _):
        answered, pids, sizes = 0, set(), []
        for _ in range(100):  # bounded: 20 recycles take about 25 batches
            got, seen = _requests(base, 20)
            answered += got
            pids |= seen
            _scrape_counts(base)
            sizes.append((len(pids), len(list(mp_dir.iterdir()))))
            if len(pids) >= WORKERS + 20:
                break
        assert len(pids) >= WORKERS + 20
        _assert_exact(base, answered)
        after_first = max(n for p, n in sizes if p <= 2 * WORKERS)
        # Live workers (one more while a replacement starts), the archive and the directory lock.
        assert max(n for _, n in sizes) <= WORKERS + 3
        assert sizes[-1][1] <= max(after_first, WORKERS + 2)


def test_demo_with_workers_summary_equals_the_load(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "victor_observability", "demo", "--workers", "3", "--duration", "5"]
    cmd += ["--rate", "30", "--port", "0", "--spans-file", "", "--summary-json", str(out), "--seed", "7"]
    env = {k: v for k, v in os.environ.items() if k != "VICTOR_MULTIPROC_DIR"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())
    load, recorded = summary["load"], summary["recorded"]
    assert load["requests"] > 0
    assert recorded["http_requests"] == load["requests"]
    assert recorded["llm_calls"] == load["llm_calls"]
    assert summary["service"]["requests"]["total"] == load["requests"] + load["llm_calls"]
    assert f"recorded      {load['requests']} HTTP requests" in proc.stdout
