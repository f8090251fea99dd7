"""Exemplars of a service under real gunicorn and `uvicorn --workers`: every worker's request latencies link to the
traces of the requests they served, recycled workers' included."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from test_workers import _serve  # the quickstart app under real workers, with only VICTOR_MULTIPROC_DIR set

pytestmark = pytest.mark.integration

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def _traced_requests(base: str, n: int) -> dict[str, int]:
    """n requests, each continuing a fresh sampled trace; returns the trace id each answer carried -> its pid."""
    served = {}
    for _ in range(n):
        trace_id = secrets.token_hex(16)
        headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        try:
            r = httpx.get(f"{base}/work", headers=headers, timeout=10.0)
        except httpx.TransportError:
            # Reset by a recycled worker before it served the request: not counted by the service either (as in
            # test_workers.py), so its trace is in no exemplar.
            continue
        assert r.status_code == 200
        # The server span continued the trace: its id comes back in X-Trace-ID.
        assert r.headers["x-trace-id"] == trace_id
        served[trace_id] = int(r.json()["pid"])
    return served


def _latency_exemplars(base: str) -> dict[str, tuple[str, float]]:
    """le -> (trace id, timestamp) of the request-latency exemplars of /work, read by prometheus-client's parser."""
    for _ in range(5):  # bounded: a recycled worker may reset the scrape's connection
        try:
            r = httpx.get(f"{base}/metrics", headers={"accept": OPENMETRICS}, timeout=10.0, follow_redirects=True)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        raise AssertionError("no scrape answered in 5 tries")
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    found = {}
    for family in om_parse(r.text):
        for s in family.samples:
            if s.name == "victor_request_latency_ms_bucket" and s.labels.get("endpoint") == "/work" and s.exemplar:
                assert len(s.exemplar.labels["span_id"]) == 16
                found[s.labels["le"]] = (s.exemplar.labels["trace_id"], float(s.exemplar.timestamp))
    return found


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("uvicorn", ()),
        # --preload: series the master made before forking stay in its file; recycled workers die every 15 requests.
        ("gunicorn", ("--preload", "--max-requests", "15", "--max-requests-jitter", "0")),
    ],
    ids=["uvicorn", "gunicorn-preload-recycled"],
)
def test_every_exemplar_is_the_trace_of_a_request_some_worker_served(
    tmp_path: Path, kind: str, extra: tuple[str, ...]
) -> None:
    mp_dir = tmp_path / "mp"
    with _serve(kind, tmp_path, mp_dir, *extra) as (base, _):
        served = _traced_requests(base, 120)
        found = _latency_exemplars(base)
        # From any worker's scrape: only traces of served requests, and the last request's (nothing later landed
        # in its bucket), whichever worker served it.
        assert found and {t for t, _ in found.values()} <= set(served)
        last = list(served)[-1]
        assert last in {t for t, _ in found.values()}
        # Scraped again (likely by another worker): the same exemplars.
        assert _latency_exemplars(base) == found
        if extra:
            # Workers were recycled: more processes served than are alive, and their files went to the archive.
            assert len(set(served.values())) > 4
            assert (mp_dir / "archive.db").exists()
            # The worker that served the last request is killed outright: its exemplar is still served.
            with contextlib.suppress(ProcessLookupError):  # unless it was recycled right after serving it
                os.kill(served[last], signal.SIGKILL)
            for _ in range(100):
                if not any(p.name.startswith(f"{served[last]}-") for p in mp_dir.iterdir()):
                    break
                assert _latency_exemplars(base) == found  # the scrape folds the dead file into the archive
                time.sleep(0.05)
            assert not any(p.name.startswith(f"{served[last]}-") for p in mp_dir.iterdir())
            assert _latency_exemplars(base) == found
