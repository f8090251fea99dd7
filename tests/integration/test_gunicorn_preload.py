"""gunicorn --preload: each forked worker samples its own system metrics, not the master's frozen snapshot."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = pytest.mark.integration

MB = 1024 * 1024
GROWTH = 96 * MB
# Bounds on waiting for the server and for a fresh sample; hang detectors, not speed checks.
DEADLINE = 60.0

# The collector is created at import, in the master (--preload), before gunicorn forks the workers.
APP = textwrap.dedent(
    """
    import json, os, time
    from victor_observability import create_production_collector

    collector = create_production_collector(system_interval=0.1)
    ballast = []

    def app(environ, start_response):
        path, query = environ["PATH_INFO"], environ.get("QUERY_STRING", "")
        if path == "/grow" and query == str(os.getpid()) and not ballast:
            ballast.append(b"x" * GROWTH)  # written, so resident: RSS grows by GROWTH
        if path == "/hold":
            time.sleep(float(query))
        body = collector.export_prometheus().encode() if path == "/metrics" else json.dumps(bool(ballast)).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pid", str(os.getpid()))])
        return [body]
    """
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    (tmp_path / "preload_app.py").write_text(f"GROWTH = {GROWTH}\n" + APP)
    # Bound here and handed over, so there is no race for the port.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "--bind", f"fd://{sock.fileno()}"]
    cmd += ["--chdir", str(tmp_path), "--graceful-timeout", "5", "preload_app:app"]
    with open(tmp_path / "gunicorn.log", "wb") as log:
        proc = subprocess.Popen(cmd, pass_fds=[sock.fileno()], stderr=log)
        sock.close()
        try:
            yield f"http://127.0.0.1:{port}", proc
        finally:
            proc.terminate()
            try:
                proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _get(client: httpx.Client, url: str) -> httpx.Response:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            return client.get(url)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _reported_memory(text: str) -> float:
    match = re.search(r"^victor_memory_usage_bytes (\S+)$", text, re.MULTILINE)
    assert match, "victor_memory_usage_bytes missing from the worker's export"
    return float(match.group(1))


def _other_worker(client: httpx.Client, base: str, busy: str) -> httpx.Response:
    """A response from the worker that is not `busy`: holds that one with a slow request meanwhile."""
    for _ in range(50):
        hold = threading.Thread(target=lambda: httpx.get(f"{base}/hold?1.0", timeout=DEADLINE), daemon=True)
        hold.start()
        time.sleep(0.2)
        r = _get(client, f"{base}/whoami")
        hold.join(DEADLINE)
        if r.headers["X-Pid"] != busy:
            return r
    raise AssertionError("never reached a second worker")


def test_preloaded_workers_report_their_own_memory(server: tuple[str, subprocess.Popen[bytes]]) -> None:
    base, master = server
    with httpx.Client(timeout=DEADLINE, headers={"Connection": "close"}) as client:
        first = _get(client, f"{base}/whoami").headers["X-Pid"]
        second = _other_worker(client, base, first).headers["X-Pid"]
        workers = {int(first), int(second)}
        assert master.pid not in workers
        assert {p.pid for p in psutil.Process(master.pid).children()} == workers

        # Only `grown` allocates; sync workers take whichever request comes, so ask until it is the one.
        grown, other = int(first), int(second)
        for _ in range(500):
            r = _get(client, f"{base}/grow?{grown}")
            if r.headers["X-Pid"] == str(grown) and r.text == "true":
                break
        else:
            raise AssertionError("the chosen worker never took the /grow request")

        # Each worker's own export, once its sampler has seen the ballast (or DEADLINE passes).
        reported: dict[int, float] = {}
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            r = _get(client, f"{base}/metrics")
            reported[int(r.headers["X-Pid"])] = _reported_memory(r.text)
            if len(reported) == 2 and reported[grown] - reported[other] > GROWTH * 0.75:
                break
            time.sleep(0.05)

    assert set(reported) == workers, f"exports came from {set(reported)}, workers are {workers}"
    rss = {pid: psutil.Process(pid).memory_info().rss for pid in workers}
    # The master's sample is the same frozen number in every worker: the two must differ by the ballast.
    assert reported[grown] - reported[other] > GROWTH * 0.75, (reported, rss)
    for pid in workers:
        assert abs(reported[pid] - rss[pid]) < 32 * MB, f"worker {pid} reported {reported[pid]}, its RSS is {rss[pid]}"
