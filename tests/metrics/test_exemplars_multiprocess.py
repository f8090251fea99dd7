"""Exemplars in multi-process mode: real worker processes record under sampled spans into one directory, and any
process's OpenMetrics scrape carries the latest exemplar per bucket from all of them, the dead ones included."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from test_multiprocess import _env
from test_multiprocess import _run as run_in_process

PRELUDE = """
import json, os, sys, time
from victor_observability import (
    ALWAYS_OFF, DistributedTracer, Histogram, InMemorySpanExporter, create_production_collector, multiprocess,
)
"""

# Worker k records request latencies under a sampled span each: OWN[k] in a bucket of its own (le=10, 25, 50, 100)
# and SHARED in the le=5000 bucket every worker writes; plus a histogram observed with explicit exemplar labels.
# It prints the spans its exporter received. argv: k, requests, "on"/"off" (sampled spans or none).
WORKER = """
OWN, SHARED = (5.0, 20.0, 40.0, 80.0, 200.0), 3000.0
k, n, traced = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "on"
exported = InMemorySpanExporter()
sampling = {} if traced else {"sampler": ALWAYS_OFF}
tracer = DistributedTracer("worker%d" % k, exporters=[exported], flush_on_exit=False, **sampling)
c = create_production_collector(collect_system_metrics=False)
jobs = Histogram("jobs_seconds", "Jobs.", ["queue"], buckets=(1.0, 2.0), registry=c.registry)
for i in range(n):
    with tracer.start_span("request"):
        c.record_request("/chat", "p", True, OWN[k])
        c.record_request("/chat", "p", True, SHARED)
    jobs.labels("q").observe(0.5 + k * 0.25 if k < 2 else 1.5, {"job": "k%d-%d" % (k, i)} if traced else {})
tracer.force_flush()
print(json.dumps([[s.trace_id, s.span_id] for s in exported.get_finished_spans()]), flush=True)
"""

# A live worker then answers each line on stdin with one scrape (OpenMetrics or text), as JSON.
SERVE = """
for line in sys.stdin:
    body = c.export_prometheus(openmetrics=line.strip() == "openmetrics")
    print(json.dumps(body), flush=True)
"""


def _run(code: str, mp_dir: Path, *args: str) -> str:
    return run_in_process(code, mp_dir, *args, prelude=PRELUDE)


class Worker:
    """A worker process that records, reports its exported spans, and serves scrapes until stopped."""

    def __init__(self, mp_dir: Path, k: int, n: int, traced: bool = True) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PRELUDE + WORKER + SERVE, str(k), str(n), "on" if traced else "off"],
            env=_env(mp_dir),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.spans: list[list[str]] = json.loads(self._line())

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bounded by the test timeout
        if not line:
            self.stop()
            raise AssertionError(f"worker failed: {self.proc.stderr.read() if self.proc.stderr else ''}")
        return line

    def scrape(self, openmetrics: bool = True) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write("openmetrics\n" if openmetrics else "text\n")
        self.proc.stdin.flush()
        return str(json.loads(self._line()))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


@pytest.fixture
def mp_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "victor-mp"


Exemplars = dict[tuple[str, str], tuple[dict[str, str], float, float]]


def exemplars(openmetrics: str) -> Exemplars:
    """(sample, le) -> (exemplar labels, value, timestamp), as prometheus-client's OpenMetrics parser reads them."""
    found: Exemplars = {}
    for family in om_parse(openmetrics):
        for s in family.samples:
            if s.exemplar is not None:
                key = (s.name, s.labels.get("le", ""))
                assert key not in found, key
                found[key] = (s.exemplar.labels, s.exemplar.value, float(s.exemplar.timestamp))
    return found


def latency(found: Exemplars, le: str) -> tuple[dict[str, str], float, float]:
    return found[("victor_request_latency_ms_bucket", le)]


def span_ids(spans: list[list[str]]) -> dict[str, str]:
    return {"trace_id": spans[-1][0], "span_id": spans[-1][1]}


def test_a_scrape_from_one_worker_carries_every_live_workers_exemplars(mp_dir: Path) -> None:
    workers: list[Worker] = []
    try:
        for k in range(4):
            workers.append(Worker(mp_dir, k, 50))
            time.sleep(0.05)  # exemplar stamps come from a clock ticking every few ms: workers end in order
        assert all(w.proc.poll() is None for w in workers)
        body = workers[0].scrape()
        found = exemplars(body)
    finally:
        for w in workers:
            w.stop()
    exported = {tuple(s) for w in workers for s in w.spans}
    assert len(exported) == 4 * 50
    # Every exemplar's trace is a span some worker exported: ids exactly as the workers' spans had them.
    traced = [labels for (name, _), (labels, _, _) in found.items() if name.startswith("victor_")]
    assert traced and all((e["trace_id"], e["span_id"]) in exported for e in traced)
    # A bucket only worker k writes carries worker k's latest span; the bucket all write, the last worker's.
    for k, le in enumerate(("10.0", "25.0", "50.0", "100.0")):
        assert latency(found, le)[:2] == (span_ids(workers[k].spans), (5.0, 20.0, 40.0, 80.0)[k])
    assert latency(found, "5000.0")[0] == span_ids(workers[3].spans)
    # The counts beside them are the merged ones: 50 requests per worker below le=100, 100 per worker in all.
    counts = {
        s.labels["le"]: s.value
        for f in om_parse(body)
        for s in f.samples
        if s.name == "victor_request_latency_ms_bucket"
    }
    assert (counts["100.0"], counts["+Inf"]) == (200.0, 400.0)
    stamps = [latency(found, le)[2] for le in ("10.0", "25.0", "50.0", "100.0")]
    assert stamps == sorted(stamps) and abs(stamps[-1] - time.time()) < 600
    # Explicit exemplar labels cross processes too: each bucket's latest (job k2 and k3 share le=2.0; k3 is later).
    assert found[("jobs_seconds_bucket", "1.0")][:2] == ({"job": "k1-49"}, 0.75)
    assert found[("jobs_seconds_bucket", "2.0")][:2] == ({"job": "k3-49"}, 1.5)


def test_exemplars_of_exited_workers_are_served_from_the_archive_latest_wins(mp_dir: Path) -> None:
    dead = [Worker(mp_dir, 0, 20), Worker(mp_dir, 1, 20)]
    for w in dead:
        w.stop()
    time.sleep(0.05)
    reader = Worker(mp_dir, 2, 1)
    try:
        found = exemplars(reader.scrape())
        # The scrape folded the dead workers into the archive (their files are gone) and served their exemplars.
        assert (mp_dir / "archive.db").exists()
        files = sorted(p.name for p in mp_dir.glob("*.db"))
        assert len(files) == 2 and "archive.db" in files, files
        assert latency(found, "10.0")[:2] == (span_ids(dead[0].spans), 5.0)
        assert latency(found, "25.0")[:2] == (span_ids(dead[1].spans), 20.0)
        assert latency(found, "5000.0")[0] == span_ids(reader.spans)  # live, and the latest
        # A later dead worker's exemplar replaces the archive's in a bucket they share; the others stay.
        time.sleep(0.05)
        later = Worker(mp_dir, 0, 3)
        later.stop()
        found = exemplars(reader.scrape())
        assert latency(found, "10.0")[:2] == (span_ids(later.spans), 5.0)
        assert latency(found, "25.0")[:2] == (span_ids(dead[1].spans), 20.0)
        assert latency(found, "5000.0")[0] == span_ids(later.spans)
        assert found[("jobs_seconds_bucket", "1.0")][0] == {"job": "k0-2"}
    finally:
        reader.stop()


STRIP = re.compile(r" # \{[^}]*\} \S+ \S+$", re.M)
# The one sample that depends on when the scrape ran, not on what was recorded.
UPTIME = re.compile(r"^(victor_uptime_seconds) \S+$", re.M)


def test_text_format_is_byte_for_byte_the_one_without_exemplars(tmp_path: Path) -> None:
    """The same requests recorded with sampled spans and without: text 0.0.4 is identical, OpenMetrics only adds
    the exemplars."""
    bodies = {}
    for traced in (True, False):
        d = tmp_path / ("on" if traced else "off")
        for k in range(3):
            Worker(d, k, 10, traced).stop()
        reader = Worker(d, 3, 10, traced)
        try:
            bodies[traced] = tuple(UPTIME.sub(r"\1 0.0", reader.scrape(om)) for om in (False, True))
        finally:
            reader.stop()
    (text_on, om_on), (text_off, om_off) = bodies[True], bodies[False]
    assert "victor_request_latency_ms_bucket" in text_on
    assert text_on.encode() == text_off.encode()
    assert " # {" not in text_on
    assert len(exemplars(om_on)) == 4 + 1 + 2 and exemplars(om_off) == {}
    assert STRIP.sub("", om_on) == om_off


FORKED = """
import multiprocessing as mp
OUT = sys.argv[1]
c = create_production_collector(collect_system_metrics=False)
tracer = DistributedTracer("parent", flush_on_exit=False)
with tracer.start_span("preload"):
    c.record_request("/before", "p", True, 5.0)  # an inherited series whose exemplar region is in this file
c.record_request("/plain", "p", True, 5.0)  # an inherited series with no exemplar region yet

def child(k):
    exported = InMemorySpanExporter()
    t = DistributedTracer("child%d" % k, exporters=[exported], flush_on_exit=False)
    for i in range(20):
        with t.start_span("request"):
            c.record_request("/before", "p", True, (5.0, 20.0)[k])
            c.record_request("/plain", "p", True, (5.0, 20.0)[k])
            c.record_request("/after", "p", True, (5.0, 20.0)[k])  # a series of the child's own
    t.force_flush()
    with open("%s.%d" % (OUT, k), "w") as f:
        json.dump([[s.trace_id, s.span_id] for s in exported.get_finished_spans()], f)

ctx = mp.get_context("fork")
for k in range(2):
    p = ctx.Process(target=child, args=(k,))
    p.start()
    p.join(120)
    assert p.exitcode == 0
    time.sleep(0.05)
print(json.dumps(c.export_prometheus(openmetrics=True)))
"""


def test_fork_children_of_a_preloaded_parent_record_exemplars_of_inherited_series(mp_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "spans"
    found: dict[tuple[str, str], dict[str, str]] = {}
    for family in om_parse(json.loads(_run(FORKED, mp_dir, str(out)))):
        for s in family.samples:
            if s.exemplar is not None and s.name == "victor_request_latency_ms_bucket":
                found[(s.labels["endpoint"], s.labels["le"])] = s.exemplar.labels
    children = [json.loads(Path(f"{out}.{k}").read_text()) for k in range(2)]
    # Whether the slots were made before the fork (in the parent's file, shared), by the child for an inherited
    # series (in its own file, joined by name and labels), or for its own series: each child's latest span shows.
    for endpoint in ("/before", "/plain", "/after"):
        assert found[(endpoint, "10.0")] == span_ids(children[0]), endpoint
        assert found[(endpoint, "25.0")] == span_ids(children[1]), endpoint
    assert len(found) == 6
