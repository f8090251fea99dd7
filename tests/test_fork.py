"""Fork safety: a child forked while other threads scrape or export spans never inherits a held lock."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from victor_observability import (
    Counter,
    DistributedTracer,
    InMemorySpanExporter,
    JsonLinesSpanExporter,
    ProductionHealthChecker,
    create_production_collector,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")

FORKS = 30
# A hang detector, not a speed check: a healthy child exits in milliseconds, a deadlocked one never does.
CHILD_DEADLINE = 60.0
# Bounds the background load of each test, whatever happens to the main thread.
MAX_BACKGROUND_ROUNDS = 200_000


def _fork(child: Callable[[], bool]) -> int:
    """Forks; the child runs `child` and exits 0 if it returned True, never returning into pytest."""
    # os.fork() in a multi-threaded process warns (DeprecationWarning, CPython 3.12+) that the child may deadlock:
    # that hazard is exactly what these tests exercise, so the warning is expected here and only here.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning
        )
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if child() else 2
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


def _reap(pids: list[int], deadline_s: float) -> dict[int, int | None]:
    """Each child's exit code; None for a child still running at the deadline, which is then killed and reaped."""
    deadline = time.monotonic() + deadline_s
    codes: dict[int, int | None] = {}
    pending = list(pids)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes[pid] = os.waitstatus_to_exitcode(status)
                pending.remove(pid)
        time.sleep(0.01)
    for pid in pending:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        codes[pid] = None
    return codes


def _check(codes: dict[int, int | None]) -> None:
    hung = [pid for pid, code in codes.items() if code is None]
    failed = {pid: code for pid, code in codes.items() if code not in (0, None)}
    assert not hung, f"{len(hung)} of {len(codes)} forked children hung (killed after {CHILD_DEADLINE:.0f} s)"
    assert not failed, f"forked children failed with exit codes {failed}"
    assert len(codes) == FORKS


class _Background:
    """Runs `work` in a loop on a thread until stopped (or MAX_BACKGROUND_ROUNDS), counting the rounds."""

    def __init__(self, work: Callable[[], object]) -> None:
        self.rounds = 0
        self._work = work
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.rounds < MAX_BACKGROUND_ROUNDS:
            self._work()
            self.rounds += 1

    def __enter__(self) -> _Background:
        self._thread.start()
        while self.rounds == 0 and self._thread.is_alive():
            time.sleep(0.001)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(CHILD_DEADLINE)


def test_forks_taken_during_scrapes_never_hang_a_child_recording_a_new_label_set() -> None:
    collector = create_production_collector("forktest", collect_system_metrics=False)
    # Many series in cheap-to-encode families: the scraping thread spends much of its time copying series out of
    # the families, the moment the old encoder held a family lock with the GIL released.
    calls = [
        Counter(f"fork_calls_{j}_total", "Calls.", ["route", "status"], registry=collector.registry) for j in range(4)
    ]
    for i in range(3000):
        for family in calls:
            family.labels(f"/r{i}", "200").inc()
    for i in range(100):
        collector.record_request(f"/r{i}", "openai", True, 12.0)

    def child(i: int) -> bool:
        # New label sets take each family's write lock and the collector's group lock.
        collector.record_request(f"/child-{i}", "openai", True, 5.0)
        for family in calls:
            family.labels(f"/child-{i}", "201").inc()
        text = collector.export_prometheus()
        return f'endpoint="/child-{i}"' in text and text.count(f'route="/child-{i}",status="201"') == len(calls)

    pids: list[int] = []
    with _Background(collector.export_prometheus) as scraper:
        try:
            for i in range(FORKS):
                pids.append(_fork(partial(child, i)))
                time.sleep(0.001 * (i % 3))  # varies where in a scrape the next fork lands
        finally:
            codes = _reap(pids, CHILD_DEADLINE)
    assert scraper.rounds > 0
    _check(codes)


def test_forks_taken_while_spans_are_exported_never_hang_a_child_exporting_spans(tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    path = tmp_path / "spans.jsonl"
    # A tiny batch and delay keep the dispatcher waking, draining and waiting on the span store all the time.
    tracer = DistributedTracer(
        "fork", exporters=[memory, JsonLinesSpanExporter(path)], schedule_delay=0.001, max_export_batch_size=4
    )

    def spans() -> None:
        for _ in range(4):
            tracer.start_span("parent-work").end()

    def child(i: int) -> bool:
        names = {f"child-{i}-{k}" for k in range(5)}
        for name in names:
            tracer.start_span(name).end()
        if not tracer.force_flush(CHILD_DEADLINE / 2):
            return False
        return names <= {s.name for s in memory.get_finished_spans()}

    pids: list[int] = []
    try:
        with _Background(spans) as maker:
            try:
                for i in range(FORKS):
                    pids.append(_fork(partial(child, i)))
                    time.sleep(0.002 * (i % 5))
            finally:
                codes = _reap(pids, CHILD_DEADLINE)
    finally:
        tracer.shutdown()
    assert maker.rounds > 0
    _check(codes)
    assert memory.get_finished_spans(), "the parent kept exporting"


def test_a_forked_child_runs_sync_health_checks_on_workers_of_its_own() -> None:
    parent = os.getpid()
    release = threading.Event()
    checker = ProductionHealthChecker()
    checker.add_readiness_check("quick", lambda: True, timeout=10.0)
    # Still running on a parent worker when the fork is taken; in the child it returns at once.
    checker.add_liveness_check("slow", lambda: os.getpid() != parent or release.wait(CHILD_DEADLINE), timeout=30.0)
    assert asyncio.run(checker.readiness()).to_dict()["is_healthy"]
    probe = threading.Thread(target=lambda: asyncio.run(checker.liveness()), daemon=True)
    probe.start()
    time.sleep(0.2)  # lets the parent's workers settle: one idle, one inside "slow"

    def child() -> bool:
        # The parent's workers do not exist here: were they still counted, both probes would time out.
        return all(asyncio.run(run()).to_dict()["is_healthy"] for run in (checker.readiness, checker.liveness))

    try:
        codes = _reap([_fork(child)], CHILD_DEADLINE)
    finally:
        release.set()
        probe.join(CHILD_DEADLINE)
    assert list(codes.values()) == [0], codes
