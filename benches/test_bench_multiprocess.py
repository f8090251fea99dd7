"""Multi-process mode beside single-process mode and prometheus-client's multiprocess mode, same run.

The mode is process-wide, so every case runs in a fresh child process (the same script for us and
for the peer); the parent collects the medians and prints the ratios with the other benches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import NOTES, RESULTS, compare

N = 20_000  # calls per timed round
ROUNDS = 7
SERIES = 1000
PROCS = 4

compare("inc(): multi-process vs single-process mode (>= 0.67 means within 1.5x)", "mp_inc", "sp_inc", ">= 0.67")
compare("observe(): multi-process vs single-process (>= 0.67 means within 1.5x)", "mp_observe", "sp_observe", ">= 0.67")
compare("record_request: multi-process vs single-process (>= 0.67: within 1.5x)", "mp_rr", "sp_rr", ">= 0.67")
compare("inc(): ours multi-process vs prometheus-client multiprocess", "mp_inc", "pcmp_inc", ">= 10x")
compare("observe(): ours multi-process vs prometheus-client multiprocess", "mp_observe", "pcmp_observe", ">= 10x")
compare("record_request vs prometheus-client multiprocess (3 labelled updates)", "mp_rr", "pcmp_rr", ">= 10x")
compare("merged scrape 4 procs x 1,000 histogram series vs MultiProcessCollector", "mp_scrape", "pcmp_scrape", ">= 50x")

TIMING = """
import json, os, sys, timeit
side, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
LAT = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
out = {}
def med(fn):
    return sorted(timeit.repeat(fn, number=1, repeat=rounds))[rounds // 2]
if side == "ours":
    from victor_observability import Counter, Histogram, Registry, create_production_collector
    reg = Registry()
    c = Counter("jobs_total", "Jobs.", ["q"], registry=reg).labels("a")
    h = Histogram("lat_ms", "Latency.", ["q"], buckets=LAT, registry=reg).labels("a")
    col = create_production_collector(collect_system_metrics=False)
    rr = col.record_request
    labels = {"model": "m"}
    inc, observe = c.inc, h.observe
    out["inc"] = med(lambda: [inc(1.0) for _ in range(n)])
    out["observe"] = med(lambda: [observe(123.4) for _ in range(n)])
    out["rr"] = med(lambda: [rr("/chat", "anthropic", True, 123.4, labels) for _ in range(n)])
else:
    import prometheus_client as pc
    reg = pc.CollectorRegistry()
    c = pc.Counter("jobs_total", "Jobs.", ["q"], registry=reg).labels("a")
    h = pc.Histogram("lat_ms", "Latency.", ["q"], buckets=LAT, registry=reg).labels("a")
    names = ["endpoint", "provider", "model"]
    total = pc.Counter("victor_request_total", "", names, registry=reg)
    success = pc.Counter("victor_request_success_total", "", names, registry=reg)
    latency = pc.Histogram("victor_request_latency_ms", "", names, buckets=LAT, registry=reg)
    def rr():
        lv = ("/chat", "anthropic", "m")
        total.labels(*lv).inc()
        success.labels(*lv).inc()
        latency.labels(*lv).observe(123.4)
    inc, observe = c.inc, h.observe
    out["inc"] = med(lambda: [inc(1.0) for _ in range(n)])
    out["observe"] = med(lambda: [observe(123.4) for _ in range(n)])
    out["rr"] = med(lambda: [rr() for _ in range(n)])
print(json.dumps(out))
"""

WRITER = """
import sys
side, first = sys.argv[1], int(sys.argv[2])
LAT = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
if side == "ours":
    from victor_observability import Histogram, Registry
    h = Histogram("lat_ms", "Latency.", ["ep"], buckets=LAT, registry=Registry())
else:
    import prometheus_client as pc
    h = pc.Histogram("lat_ms", "Latency.", ["ep"], buckets=LAT, registry=pc.CollectorRegistry())
for i in range(int(sys.argv[3])):
    h.labels("/e%d" % i).observe(float(first + i))
"""

SCRAPER = """
import json, sys, timeit
side, rounds = sys.argv[1], int(sys.argv[2])
LAT = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
if side == "ours":
    from victor_observability import Histogram, Registry
    reg = Registry()
    Histogram("lat_ms", "Latency.", ["ep"], buckets=LAT, registry=reg)
    scrape = reg.export
else:
    import prometheus_client as pc
    from prometheus_client import multiprocess
    reg = pc.CollectorRegistry()
    multiprocess.MultiProcessCollector(reg)
    scrape = lambda: pc.generate_latest(reg)
body = scrape()
t = sorted(timeit.repeat(scrape, number=1, repeat=rounds))[rounds // 2]
print(json.dumps({"scrape": t, "bytes": len(body), "count": body.count(b"lat_ms_count")}))
"""


def _child(code: str, env_dir: tuple[str, Path] | None, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("VICTOR_MULTIPROC_DIR", "PROMETHEUS_MULTIPROC_DIR")}
    if env_dir is not None:
        env[env_dir[0]] = str(env_dir[1])
        env_dir[1].mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return out.stdout


def _dir_size(d: Path) -> tuple[int, int, int]:
    files = [p for p in d.iterdir() if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files), sum(p.stat().st_blocks * 512 for p in files)


def test_record_paths_in_each_mode(tmp_path: Path) -> None:
    runs = {
        "sp": _child(TIMING, None, "ours", str(N), str(ROUNDS)),
        "mp": _child(TIMING, ("VICTOR_MULTIPROC_DIR", tmp_path / "ours"), "ours", str(N), str(ROUNDS)),
        "pc": _child(TIMING, None, "pc", str(N), str(ROUNDS)),
        "pcmp": _child(TIMING, ("PROMETHEUS_MULTIPROC_DIR", tmp_path / "pc"), "pc", str(N), str(ROUNDS)),
    }
    for side, out in runs.items():
        for case, t in json.loads(out).items():
            RESULTS[f"{side}_{case}"] = t
    NOTES.append(
        "prometheus-client multiprocess vs its single-process mode, inc(): "
        f"{RESULTS['pcmp_inc'] / RESULTS['pc_inc']:.2f}x the time; ours: {RESULTS['mp_inc'] / RESULTS['sp_inc']:.2f}x"
    )


def test_merged_scrape_of_four_processes(tmp_path: Path) -> None:
    for side, var in (("ours", "VICTOR_MULTIPROC_DIR"), ("pc", "PROMETHEUS_MULTIPROC_DIR")):
        d = tmp_path / side
        procs = []
        for p in range(PROCS):
            env = {k: v for k, v in os.environ.items() if k not in ("VICTOR_MULTIPROC_DIR", "PROMETHEUS_MULTIPROC_DIR")}
            env[var] = str(d)
            d.mkdir(parents=True, exist_ok=True)
            procs.append(
                subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), side, str(p), str(SERIES)], env=env)
            )
        for proc in procs:
            assert proc.wait(timeout=600) == 0
        got = json.loads(_child(SCRAPER, (var, d), side, "5"))
        assert got["count"] == SERIES
        RESULTS[f"{'mp' if side == 'ours' else 'pcmp'}_scrape"] = got["scrape"]


def test_directory_after_twenty_recycled_workers(tmp_path: Path) -> None:
    sizes = {}
    for side, var in (("ours", "VICTOR_MULTIPROC_DIR"), ("pc", "PROMETHEUS_MULTIPROC_DIR")):
        d = tmp_path / side
        for w in range(20):
            _child(WRITER, (var, d), side, str(w), "100")
        # A scrape (ours folds the dead workers into the archive as it reads).
        _child(SCRAPER, (var, d), side, "1")
        sizes[side] = _dir_size(d)
    for side, (files, apparent, allocated) in sizes.items():
        NOTES.append(
            f"directory after 20 recycled workers x 100 histogram series, {side:>4}: {files} files, "
            f"{apparent / 1024:.0f} KiB apparent, {allocated / 1024:.0f} KiB on disk"
        )
    assert sizes["ours"][0] <= 4
