"""Bench plumbing: `bench(key, fn)` records each case's median; declared comparisons print as ratios."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from victor_observability import _core

RESULTS: dict[str, float] = {}
# (label, ours, peer, target): ratio printed is peer_median / ours_median (how many times faster we are).
COMPARISONS: list[tuple[str, str, str, str]] = []
NOTES: list[str] = []


def compare(label: str, ours: str, peer: str, target: str) -> None:
    COMPARISONS.append((label, ours, peer, target))


def bench_hook(name: str) -> Any:
    """A no-op floor of rust/py/bench.rs. Only `make bench` builds them (cargo feature `bench`), so the shipped
    extension and _core.pyi lack them and they are looked up by name."""
    hook = getattr(_core, name, None)
    if hook is None:
        pytest.fail(
            f"victor_observability._core.{name} is missing: the extension was built without the cargo feature "
            "`bench`; run `make bench` (maturin develop --release --features python,abi3,bench)",
            pytrace=False,
        )
    return hook


@pytest.fixture
def bench(benchmark: Any) -> Callable[..., Any]:
    def run(key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = benchmark(fn, *args, **kwargs)
        if benchmark.stats is not None:
            RESULTS[key] = benchmark.stats.stats.median
        return result

    return run


def pytest_terminal_summary(terminalreporter: Any) -> None:
    rows = []
    for label, ours, peer, target in COMPARISONS:
        if ours in RESULTS and peer in RESULTS:
            ratio = RESULTS[peer] / RESULTS[ours]
            rows.append({"case": label, "ours": ours, "peer": peer, "ratio": round(ratio, 2), "target": target})
    if not rows and not NOTES:
        return
    tr = terminalreporter
    tr.section("victor-observability: ratios (peer time / our time; >1 means we are faster)")
    for r in rows:
        tr.write_line(f"{r['case']:<70} {r['ratio']:>8.2f}x   target: {r['target']}")
    for note in NOTES:
        tr.write_line(note)
    out = os.environ.get("VICTOR_BENCH_RATIOS")
    if out:
        Path(out).write_text(json.dumps({"ratios": rows, "notes": NOTES}, indent=2))
