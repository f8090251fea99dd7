"""Memory per labelled histogram series (RSS delta in a fresh process), ours beside prometheus-client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import NOTES

SCRIPT = Path(__file__).with_name("memory_series.py")


def measure(which: str, n: int = 10_000) -> float:
    out = subprocess.run([sys.executable, str(SCRIPT), which, str(n)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return float(json.loads(out.stdout)["bytes_per_series"])


def test_memory_per_histogram_series() -> None:
    ours = min(measure("ours") for _ in range(3))
    theirs = min(measure("prometheus_client") for _ in range(3))
    NOTES.append(
        f"memory: 10,000 labelled histogram series with data: ours {ours:.0f} B/series (target <= 2048), "
        f"prometheus-client {theirs:.0f} B/series"
    )
    assert ours > 0
