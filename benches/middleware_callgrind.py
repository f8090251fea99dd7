"""Instructions per request each middleware adds to the same FastAPI app, counted by valgrind's callgrind.

Instruction counts repeat (to tens per request, with a fixed hash seed) whatever else the machine is doing, unlike
times on a shared 2-core box.
Run: `python benches/middleware_callgrind.py` (needs valgrind). Each case runs in a fresh process twice,
with 100 and 400 requests, and the difference / 600 (the driver serves each count twice) is per request.
"""

from __future__ import annotations

import sys
from pathlib import Path

import callgrind

HERE = Path(__file__).resolve().parent
CASES = ("bare", "floor", "ours", "ours_traced", "instrumentator", "starlette_exporter", "otel_instrumentator")


def serve(case: str, n: int) -> None:
    sys.path.insert(0, str(HERE))
    import test_bench_middleware as bench

    bench.N = n
    app = bench.CASES[case]()
    bench.driver(app)()
    for loop in bench.LOOPS:
        loop.close()
    for tracer in bench.TRACERS:
        tracer.shutdown()
    for provider in bench.PROVIDERS:
        provider.shutdown()


def instructions(case: str, n: int) -> int:
    return callgrind.instructions(__file__, case, str(n))


def main() -> None:
    per_request = {c: (instructions(c, 400) - instructions(c, 100)) / 600 for c in CASES}
    added = {c: per_request[c] - per_request["bare"] for c in CASES if c != "bare"}
    print(f"bare app: {per_request['bare']:,.0f} instructions per request")
    for case, extra in added.items():
        print(f"{case:20} adds {extra:9,.0f}   ({extra / added['ours']:.2f}x ours)")
    cheaper = min(added["instrumentator"], added["starlette_exporter"])
    print(
        f"tracing off: {added['ours'] / added['floor']:.2f}x the floor (target <= 2), 1/{cheaper / added['ours']:.1f} "
        f"of the cheaper peer (target >= 5); tracing on: 1/{added['otel_instrumentator'] / added['ours_traced']:.1f} "
        "of OpenTelemetry FastAPI + instrumentator (target >= 10)"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3:
        serve(sys.argv[1], int(sys.argv[2]))
    else:
        main()
