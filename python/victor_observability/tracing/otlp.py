"""OTLP over HTTP/protobuf: finished spans as an ExportTraceServiceRequest (encoded in Rust), posted to a collector."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import httpx

from victor_observability._core import SpanBatch, SpanData

logger = logging.getLogger("victor_observability.tracing")

DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"
# OTLP/HTTP: only these answers are worth retrying; any other non-2xx is final.
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


class RetryableExportError(Exception):
    """An export that may succeed if tried again (connection refused, timeout, 429/502/503/504)."""


def _endpoint_from_env() -> str:
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if base:
        return base.rstrip("/") + "/v1/traces"
    return DEFAULT_ENDPOINT


def _headers_from_env() -> dict[str, str]:
    raw = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or os.environ.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
    out: dict[str, str] = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[unquote(key.strip()).lower()] = unquote(value.strip())
    return out


def _timeout_from_env() -> float | None:
    raw = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT")
    try:
        return float(raw) / 1000.0 if raw else None  # the variables are in milliseconds
    except ValueError:
        return None


class OTLPSpanExporter:
    """Sends spans to an OpenTelemetry collector over OTLP/HTTP with protobuf bodies.

    The endpoint is the argument, else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), else
    `OTEL_EXPORTER_OTLP_ENDPOINT` + "/v1/traces", else http://localhost:4318/v1/traces. Headers and timeout
    likewise come from the arguments or the standard variables. Header values (tokens) never appear in reprs
    or logs. The bodies are encoded in Rust, a batch per call with the GIL released: no opentelemetry-proto.

    >>> exporter = OTLPSpanExporter("http://127.0.0.1:4318/v1/traces", timeout=2.0)
    >>> exporter.endpoint
    'http://127.0.0.1:4318/v1/traces'
    >>> exporter.shutdown()
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        resource_attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.endpoint = endpoint or _endpoint_from_env()
        if not self.endpoint.startswith(("http://", "https://")):
            raise ValueError(f"OTLPSpanExporter: endpoint {self.endpoint!r} must be an http(s) URL")
        self.timeout = timeout if timeout is not None else (_timeout_from_env() or 10.0)
        self._headers = {"content-type": "application/x-protobuf", **_headers_from_env(), **dict(headers or {})}
        self._resource_attributes = dict(resource_attributes or {})
        self._client = httpx.Client(timeout=self.timeout)

    def encode(self, spans: Sequence[SpanData]) -> bytes:
        """The serialized ExportTraceServiceRequest for `spans` (one resource per run of one service's spans)."""
        # Serialized messages concatenate into their merge: the request holding every batch's resource_spans.
        return b"".join(batch.encode_otlp(self._resource_attributes) for batch in _batches_of(spans))

    def export(self, spans: Sequence[SpanData]) -> bool:
        return self._post(self.encode(spans)) if spans else True

    def export_batch(self, batch: SpanBatch) -> bool:
        return self._post(batch.encode_otlp(self._resource_attributes)) if len(batch) else True

    def _post(self, body: bytes) -> bool:
        try:
            response = self._client.post(self.endpoint, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            # Connection refused, timeouts, resets: the worker retries with backoff.
            raise RetryableExportError(f"OTLP export to {self.endpoint}: {type(exc).__name__}") from None
        if 200 <= response.status_code < 300:
            return True
        if response.status_code in RETRYABLE_STATUS:
            raise RetryableExportError(f"OTLP export to {self.endpoint}: HTTP {response.status_code}")
        logger.warning("OTLP export to %s refused: HTTP %s (not retried)", self.endpoint, response.status_code)
        return False

    def shutdown(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"OTLPSpanExporter({self.endpoint!r}, timeout={self.timeout})"


def _batches_of(spans: Iterable[SpanData]) -> list[SpanBatch]:
    """Spans handed to an exporter directly, as batches of consecutive spans of one service, in order."""
    out: list[SpanBatch] = []
    run: list[SpanData] = []
    for span in spans:
        if run and span.service_name != run[-1].service_name:
            out.append(SpanBatch.of(run))
            run = []
        run.append(span)
    if run:
        out.append(SpanBatch.of(run))
    return out
