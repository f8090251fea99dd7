"""Instruction counts by valgrind's callgrind, for the benches that compare counts instead of times.

Instruction counts repeat whatever else the machine is doing, unlike times on a shared 2-core box.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys


def instructions(script: str, *args: str) -> int:
    """Instructions callgrind counts for `python script *args`, start-up included (callers difference two runs)."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, script, *args],
        capture_output=True,
        text=True,
        timeout=600,
        # Hash randomisation moves every dict's probing, and with it thousands of instructions per call.
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    match = re.search(r"Collected : (\d+)", out.stderr)
    assert match, out.stderr[-2000:]
    return int(match.group(1))
