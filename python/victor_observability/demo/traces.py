"""What the demo's span file says about its traces: how many, how many crossed services, the slowest of those.

>>> import json, os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "spans.jsonl")
>>> spans = [("t1", "gateway", None, 90.0), ("t1", "backend", "c1", 70.0), ("t2", "gateway", None, 5.0)]
>>> with open(path, "w") as f:
...     for trace, service, parent, ms in spans:
...         _ = f.write(json.dumps({"trace_id": trace, "service_name": service, "parent_span_id": parent,
...                                 "duration_ms": ms}) + "\\n")
>>> trace_summary(path)["cross_service"], trace_summary(path)["slowest_trace_id"]
(1, 't1')
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def trace_summary(path: str | Path, offset: int = 0) -> dict[str, Any]:
    """Traces in the JSON-lines span file from byte ``offset`` on (this run's, when the file is appended to):
    ``traces``, ``cross_service`` (traces holding spans of more than one service), ``services``, and the slowest
    cross-service trace (``slowest_trace_id``, ``slowest_ms``: its root span's duration)."""
    services: dict[str, set[str]] = {}
    root_ms: dict[str, float] = {}
    with Path(path).open("rb") as f:
        f.seek(offset)
        for raw in f:
            try:
                span = json.loads(raw)
            except ValueError:  # a line cut short by a process killed mid-write
                continue
            trace = span["trace_id"]
            services.setdefault(trace, set()).add(span["service_name"])
            if span.get("parent_span_id") is None:
                root_ms[trace] = float(span.get("duration_ms") or 0.0)
    crossed = [t for t, names in services.items() if len(names) > 1]
    slowest = max(crossed, key=lambda t: root_ms.get(t, 0.0), default=None)
    return {
        "traces": len(services),
        "cross_service": len(crossed),
        "services": sorted(set().union(*services.values())) if services else [],
        "slowest_trace_id": slowest,
        "slowest_ms": None if slowest is None else round(root_ms.get(slowest, 0.0), 2),
    }
