"""Multi-process mode: several real processes record into one directory; every export is their merge."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from victor_observability import multiprocess

# Each helper process imports the package afresh with only the environment variable set.
_PRELUDE = """
import os, sys, threading, random
from victor_observability import Gauge, Registry, create_production_collector, multiprocess
"""


def _env(mp_dir: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != multiprocess.ENV_VAR}
    if mp_dir is not None:
        env[multiprocess.ENV_VAR] = str(mp_dir)
    return env


def _run(code: str, mp_dir: Path | None, *args: str, prelude: str = _PRELUDE) -> str:
    """Runs `code` (after `prelude`) in a fresh interpreter, multi-process mode on `mp_dir`; returns its stdout."""
    out = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *args],
        env=_env(mp_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


class _Live:
    """A process that records, says "ready", and stays alive until told to exit."""

    def __init__(self, code: str, mp_dir: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _PRELUDE + textwrap.dedent(code) + "\nprint('ready', flush=True)\nsys.stdin.read()\n",
                *args,
            ],
            env=_env(mp_dir),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bounded by the test timeout
        if line.strip() != "ready":
            self.stop()
            raise AssertionError(f"helper process failed: {line!r}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


@pytest.fixture
def mp_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "victor-mp"
    yield d


def test_off_by_default() -> None:
    assert not multiprocess.is_enabled()
    assert multiprocess.directory() is None
    out = _run("print(multiprocess.is_enabled(), multiprocess.directory())", None)
    assert out.split() == ["False", "None"]


def test_directory_and_files_are_owner_only(mp_dir: Path) -> None:
    _run("create_production_collector(collect_system_metrics=False).record_request('/a', 'p', True, 1.0)", mp_dir)
    assert stat.S_IMODE(mp_dir.stat().st_mode) == 0o700
    files = [p for p in mp_dir.iterdir() if p.suffix == ".db"]
    assert files
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)


WORKER = """
c = create_production_collector(collect_system_metrics=False)
proc, threads, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def work(t):
    rng = random.Random(proc * 1000 + t)
    for i in range(n):
        c.record_request("/chat", "p%d" % (i % 3), i % 10 != 0, rng.lognormvariate(4.0, 1.0))
ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
[t.start() for t in ts]
[t.join() for t in ts]
"""

READER = """
import json
c = create_production_collector(collect_system_metrics=False)
s = c.get_summary()["requests"]
text = c.export_prometheus()
print(json.dumps({"summary": s, "text": text}))
"""


def _expected_latencies(procs: int, threads: int, n: int) -> np.ndarray:
    import random

    out = []
    for p in range(procs):
        for t in range(threads):
            rng = random.Random(p * 1000 + t)
            out.extend(rng.lognormvariate(4.0, 1.0) for _ in range(n))
    return np.sort(np.array(out))


def test_four_processes_eight_threads_are_exact_with_service_wide_percentiles(mp_dir: Path) -> None:
    import json

    procs, threads, n = 4, 8, 100_000
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _PRELUDE + WORKER, str(p), str(threads), str(n)],
            env=_env(mp_dir),
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(procs)
    ]
    try:
        for w in workers:
            _, err = w.communicate(timeout=300)
            assert w.returncode == 0, err
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(timeout=30)
    got = json.loads(_run(READER, mp_dir))
    total = procs * threads * n
    s = got["summary"]
    assert s["total"] == total
    assert s["errors"] == total // 10
    text = got["text"]
    counts = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("victor_request_latency_ms_count{")
    ]
    assert sum(counts) == total
    totals = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("victor_request_total{")]
    assert sum(totals) == total
    values = _expected_latencies(procs, threads, n)
    for q, key in ((0.5, "latency_p50"), (0.95, "latency_p95"), (0.99, "latency_p99")):
        exact = values[int(np.ceil(q * len(values))) - 1]
        assert abs(s[key] - exact) / exact < 0.001, (key, s[key], exact)


def test_merged_exposition_is_byte_for_byte_the_single_process_one(mp_dir: Path) -> None:
    record = """
c = create_production_collector(collect_system_metrics=False)
lo, hi = int(sys.argv[1]), int(sys.argv[2])
for i in range(lo, hi):
    # Quarter steps: every partial sum is exact, so the merged sums equal the single process's.
    c.record_request("/e%d" % (i % 4), "p", i % 7 != 0, (i % 300) * 0.25, {"model": "m%d" % (i % 2)})
    c.record_tool_execution("t%d" % (i % 3), i % 5 != 0, (i % 40) * 0.5)
    c.record_cache_hit("c")
    c.record_token_usage(i % 13)
"""
    families = (
        "victor_request",
        "victor_tool_calls",
        "victor_tool_errors",
        "victor_tool_duration",
        "victor_cache_hits",
    )
    dump = record + "\nprint(c.export_prometheus())\n"

    def keep(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if any(f in line for f in families))

    single = _run(dump, None, "0", "3600")
    # The merged view lists this process's series first: it starts where the single one did (mod 12).
    _run(record, mp_dir, "0", "1200")
    _run(record, mp_dir, "1200", "2400")
    merged = _run(dump, mp_dir, "2400", "3600")
    assert keep(merged) == keep(single)
    assert "victor_request_total" in keep(single)


GAUGES = """
reg = Registry("t")
val = float(sys.argv[1])
for mode in multiprocess.GAUGE_MODES:
    Gauge("g_" + mode, "A gauge.", registry=reg, multiprocess_mode=mode).set(val)
"""

READ_GAUGES = (
    GAUGES
    + """
import json
rows = {}
for name, kind, help_text, samples in reg.samples():
    for sample, labels, value in samples:
        if sample.startswith("g_"):
            rows.setdefault(sample, []).append([labels.get("pid"), value])
print(json.dumps(rows))
"""
)


def test_gauge_modes_with_live_and_dead_processes(mp_dir: Path) -> None:
    import json

    _run(GAUGES, mp_dir, "100")  # a process that has exited: dead
    live = [_Live(GAUGES, mp_dir, v) for v in ("1", "5")]
    try:
        pids = sorted(str(p.proc.pid) for p in live)
        rows = json.loads(_run(READ_GAUGES, mp_dir, "3"))
    finally:
        for p in live:
            p.stop()

    def values(mode: str) -> list[float]:
        return sorted(v for _, v in rows["g_" + mode])

    # The reader (3) is live; 1 and 5 are live; 100 is dead.
    assert values("sum") == [109.0]
    assert values("livesum") == [9.0]
    assert values("max") == [100.0]
    assert values("livemax") == [5.0]
    assert values("min") == [1.0]
    assert values("livemin") == [1.0]
    assert values("mostrecent") == [3.0]
    assert values("livemostrecent") == [3.0]
    # The reader's scrape folded the dead process into the archive: its per-pid series went with it.
    assert values("all") == [1.0, 3.0, 5.0]
    assert values("liveall") == [1.0, 3.0, 5.0]
    live_pids = {pid for pid, _ in rows["g_liveall"]}
    assert set(pids) <= live_pids and len(live_pids) == 3


def test_bad_gauge_mode_names_the_metric() -> None:
    from victor_observability import Gauge, Registry

    with pytest.raises(ValueError, match="queue_depth"):
        Gauge("queue_depth", "Jobs.", registry=Registry(), multiprocess_mode="average")


def test_enable_refuses_a_second_directory(mp_dir: Path, tmp_path: Path) -> None:
    out = _run(
        """
try:
    multiprocess.enable(sys.argv[1])
except OSError as e:
    print("refused", "already on" in str(e))
multiprocess.enable(multiprocess.directory())
print(multiprocess.is_enabled())
""",
        mp_dir,
        str(tmp_path / "other"),
    )
    assert out.split() == ["refused", "True", "True"]


def test_programmatic_enable(tmp_path: Path) -> None:
    d = tmp_path / "prog"
    code = """
multiprocess.enable(sys.argv[1])
c = create_production_collector(collect_system_metrics=False)
c.record_request("/a", "p", True, 1.0)
print(multiprocess.store_path() is not None)
"""
    assert _run(code, None, str(d)).split() == ["True"]
    assert _run(code, None, str(d)).split() == ["True"]
    out = _run(
        """
multiprocess.enable(sys.argv[1])
c = create_production_collector(collect_system_metrics=False)
print(c.get_summary()["requests"]["total"])
""",
        None,
        str(d),
    )
    assert out.split() == ["2"]


def test_dead_processes_fold_into_a_bounded_archive(mp_dir: Path) -> None:
    code = """
c = create_production_collector(collect_system_metrics=False)
for i in range(100):
    c.record_request("/a", "p", i % 4 != 0, float(i))
c.begin_request()
"""
    read = """
c = create_production_collector(collect_system_metrics=False)
s = c.get_summary()["requests"]
print(s["total"], s["errors"], s["active"], s["latency_p50"], multiprocess.mark_process_dead(0))
"""
    sizes = []
    for n in range(1, 21):
        _run(code, mp_dir)
        out = _run(read, mp_dir).split()
        assert out[:3] == [str(100 * n), str(25 * n), "0"]
        assert float(out[3]) == pytest.approx(49.0, rel=1e-3)
        sizes.append(len(list(mp_dir.iterdir())))
    # The archive, the directory lock and the last reader's own (dead, not yet folded) file.
    assert max(sizes[3:]) <= sizes[3] <= 3
    assert multiprocess.ENV_VAR == "VICTOR_MULTIPROC_DIR"


ALERTING = """
import asyncio
from victor_observability import AlertManager, AlertRule, WebhookNotifier

async def main() -> None:
    manager = AlertManager()
    manager.add_notifier("hook", WebhookNotifier(sys.argv[1], timeout=10.0))
    manager.add_rule(
        AlertRule(name="always", description="Always fires.", condition=lambda: True, notification_channels=["hook"])
    )
    for _ in range(3):
        await manager.check_and_alert()
        await manager.flush(timeout=30.0)

asyncio.run(main())
"""


def test_alerting_in_four_workers_notifies_once(mp_dir: Path) -> None:
    import http.server
    import threading

    posts: list[bytes] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(self.rfile.read(int(self.headers.get("content-length", "0"))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    live: list[_Live] = []
    try:
        live = [_Live(ALERTING, mp_dir, url) for _ in range(4)]
        assert len(posts) == 1
        assert b"always" in posts[0]
    finally:
        for p in live:
            p.stop()
        server.shutdown()
        server.server_close()


def test_multiprocessing_fork_children_count_exactly(mp_dir: Path) -> None:
    code = """
import multiprocessing as mp
c = create_production_collector(collect_system_metrics=False)
c.record_request("/before", "p", True, 5.0)  # a series the children inherit, mapped from this file

def child(k):
    for i in range(1000):
        c.record_request("/before", "p", True, 5.0)
        c.record_request("/after-%d" % (k % 2), "p", i % 2 == 0, 7.0)  # new series: the child's own file

ctx = mp.get_context("fork")
ps = [ctx.Process(target=child, args=(k,)) for k in range(4)]
[p.start() for p in ps]
[p.join(120) for p in ps]
assert all(p.exitcode == 0 for p in ps)
s = c.get_summary()["requests"]
text = c.export_prometheus()
lines = [l for l in text.splitlines() if l.startswith("victor_request_total{")]
print(s["total"], s["errors"], sorted(l.split("endpoint=")[1].split(",")[0] + " " + l.rsplit(" ", 1)[1] for l in lines))
"""
    out = _run(code, mp_dir)
    total, errors, rest = out.split(" ", 2)
    assert (total, errors) == ("8001", "2000")
    assert rest.strip() == "['\"/after-0\" 2000.0', '\"/after-1\" 2000.0', '\"/before\" 4001.0']"


def test_forks_taken_during_merged_scrapes_never_hang_a_child(mp_dir: Path) -> None:
    # Fork safety holds for the merged view too: the scrape copies the families' series under the GIL and merges
    # the directory with the GIL released and no family lock held, so a child forked mid-scrape can take them.
    code = """
import time, warnings
from victor_observability import Counter
c = create_production_collector("forkmp", collect_system_metrics=False)
calls = [Counter("forkmp_calls_%d_total" % j, "Calls.", ["route"], registry=c.registry) for j in range(4)]
for i in range(3000):
    for f in calls:
        f.labels("/r%d" % i).inc()
rounds = [0]
stop = threading.Event()

def scrape():
    while not stop.is_set() and rounds[0] < 200000:
        c.export_prometheus()
        rounds[0] += 1

t = threading.Thread(target=scrape, daemon=True)
t.start()
while rounds[0] == 0:
    time.sleep(0.001)
pids = []
for i in range(30):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for f in calls:  # new label sets take each family's write lock
                f.labels("/child-%d" % i).inc()
            code = 0 if 'route="/child-%d"' % i in c.export_prometheus() else 2
        finally:
            os._exit(code)
    pids.append(pid)
    time.sleep(0.001 * (i % 3))
stop.set()
t.join(60)
deadline = time.monotonic() + 60
codes = {}
while len(codes) < len(pids) and time.monotonic() < deadline:
    for pid in pids:
        if pid not in codes:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes[pid] = os.waitstatus_to_exitcode(status)
    time.sleep(0.01)
for pid in pids:
    if pid not in codes:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        codes[pid] = None
print(sorted(codes.values(), key=str))
"""
    out = _run(code, mp_dir)
    assert out.strip() == str([0] * 30), out
