"""Instructions per request each middleware adds to the same FastAPI app, counted by valgrind's callgrind.

Instruction counts repeat exactly whatever else the machine is doing, unlike times on a shared 2-core box.
Run: `python benches/middleware_callgrind.py` (needs valgrind). Each case runs in a fresh process twice,
with 200 and 800 requests, and the difference / 600 (the driver serves each count twice) is per request.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = ("bare", "ours", "instrumentator", "starlette_exporter")


def serve(case: str, n: int) -> None:
    sys.path.insert(0, str(HERE))
    import test_bench_middleware as bench

    bench.N = n
    app = {
        "bare": bench.make_app,
        "ours": bench.ours,
        "instrumentator": bench.instrumentator,
        "starlette_exporter": bench.starlette_exporter,
    }[case]()
    bench.driver(app)()
    for loop in bench.LOOPS:
        loop.close()


def instructions(case: str, n: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__, case, str(n)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    match = re.search(r"Collected : (\d+)", out.stderr)
    assert match, out.stderr[-2000:]
    return int(match.group(1))


def main() -> None:
    per_request = {c: (instructions(c, 400) - instructions(c, 100)) / 600 for c in CASES}
    added = {c: per_request[c] - per_request["bare"] for c in CASES if c != "bare"}
    print(f"bare app: {per_request['bare']:,.0f} instructions per request")
    for case, extra in added.items():
        print(f"{case:20} adds {extra:9,.0f}   ({extra / added['ours']:.1f}x ours)")


if __name__ == "__main__":
    if len(sys.argv) == 3:
        serve(sys.argv[1], int(sys.argv[2]))
    else:
        main()
