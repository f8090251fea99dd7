"""Instructions per call of `Histogram.observe()` and `record_request` with and without an exemplar (a sampled span
current), in single-process and multi-process mode, counted by valgrind's callgrind.

Instruction counts repeat to a fraction of one per call whatever else the machine is doing, unlike times on a shared
2-core box. Run: `python benches/exemplar_callgrind.py` (needs valgrind). Each case runs in a fresh process with 5,000
and 20,000 calls; the difference / 15,000 is per call.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile

import callgrind

CASES = ("observe", "observe_exemplar", "rr", "rr_exemplar")
MODES = ("", "mp_")
LAT = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def serve(case: str, n: int) -> None:
    from victor_observability import DistributedTracer, Histogram, ProductionMetricsCollector, Registry, multiprocess

    if case.startswith("mp_"):
        multiprocess.enable(tempfile.mkdtemp())
        case = case[3:]
    tracer = DistributedTracer("callgrind", flush_on_exit=False)
    span = tracer.start_span("request") if case.endswith("_exemplar") else contextlib.nullcontext()
    # The loops call the bound methods directly: a wrapper call per iteration would dilute the ratios.
    if case.startswith("observe"):
        observe = Histogram("h", "", ["a"], buckets=LAT, registry=Registry()).labels("x").observe
        with span:
            for _ in range(n):
                observe(123.4)
    else:
        rr = ProductionMetricsCollector(prefix="victor", collect_system_metrics=False).record_request
        labels = {"model": "m"}
        with span:
            for _ in range(n):
                rr("/chat", "anthropic", True, 123.4, labels)
    tracer.shutdown()


def instructions(case: str, n: int) -> int:
    return callgrind.instructions(__file__, case, str(n))


def main() -> None:
    per = {m + c: (instructions(m + c, 20_000) - instructions(m + c, 5_000)) / 15_000 for m in MODES for c in CASES}
    for case, n in per.items():
        print(f"{case:22} {n:8.1f} instructions per call")
    for m in MODES:
        mode = "multi-process" if m else "single-process"
        observe = per[m + "observe_exemplar"] / per[m + "observe"]
        rr = per[m + "rr_exemplar"] / per[m + "rr"]
        print(f"{mode}: with an exemplar / without: observe {observe:.3f}x, record_request {rr:.3f}x (target <= 1.3)")


if __name__ == "__main__":
    if len(sys.argv) == 3:
        serve(sys.argv[1], int(sys.argv[2]))
    else:
        main()
