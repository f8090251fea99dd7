"""OTLP over HTTP/protobuf: encodes finished spans as an ExportTraceServiceRequest and posts them to a collector."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import httpx

from victor_observability._core import SpanData, __version__

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
    or logs. Needs the `otel` extra (opentelemetry-proto).

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
        try:
            from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            hint = "OTLPSpanExporter needs opentelemetry-proto: pip install 'victor-observability[otel]'"
            raise ImportError(hint) from exc
        self._pb = trace_service_pb2
        self.endpoint = endpoint or _endpoint_from_env()
        if not self.endpoint.startswith(("http://", "https://")):
            raise ValueError(f"OTLPSpanExporter: endpoint {self.endpoint!r} must be an http(s) URL")
        self.timeout = timeout if timeout is not None else (_timeout_from_env() or 10.0)
        self._headers = {"content-type": "application/x-protobuf", **_headers_from_env(), **dict(headers or {})}
        self._resource_attributes = dict(resource_attributes or {})
        self._client = httpx.Client(timeout=self.timeout)

    def encode(self, spans: Sequence[SpanData]) -> bytes:
        """The serialized ExportTraceServiceRequest for `spans` (grouped by service and scope)."""
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.resource.v1 import resource_pb2
        from opentelemetry.proto.trace.v1 import trace_pb2

        by_resource: dict[str, dict[tuple[str, str | None], list[Any]]] = {}
        for s in spans:
            scopes = by_resource.setdefault(s.service_name, {})
            scopes.setdefault((s.scope_name, s.scope_version), []).append(_span_pb(trace_pb2, common_pb2, s))
        request = self._pb.ExportTraceServiceRequest()
        for service, scopes in by_resource.items():
            attrs = {"service.name": service, "telemetry.sdk.name": "victor-observability"}
            attrs["telemetry.sdk.language"] = "python"
            attrs["telemetry.sdk.version"] = __version__
            attrs.update(self._resource_attributes)
            resource_spans = request.resource_spans.add()
            resource_spans.resource.CopyFrom(resource_pb2.Resource(attributes=_key_values(common_pb2, attrs)))
            for (scope_name, scope_version), pbs in scopes.items():
                scope_spans = resource_spans.scope_spans.add()
                scope_spans.scope.name = scope_name
                if scope_version:
                    scope_spans.scope.version = scope_version
                scope_spans.spans.extend(pbs)
        return bytes(request.SerializeToString())

    def export(self, spans: Sequence[SpanData]) -> bool:
        if not spans:
            return True
        body = self.encode(spans)
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


def _any_value(common_pb2: Any, value: Any) -> Any:
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, (tuple, list)):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[_any_value(common_pb2, v) for v in value]))
    return common_pb2.AnyValue(string_value=str(value))


def _key_values(common_pb2: Any, attrs: Mapping[str, Any]) -> list[Any]:
    return [common_pb2.KeyValue(key=k, value=_any_value(common_pb2, v)) for k, v in attrs.items()]


_STATUS = {"unset": 0, "ok": 1, "error": 2}


def _span_pb(trace_pb2: Any, common_pb2: Any, s: SpanData) -> Any:
    # Bits 8 and 9 say "we know whether the parent was remote" and "it was".
    flags = s.trace_flags | 0x100 | (0x200 if s.parent_is_remote else 0)
    return trace_pb2.Span(
        trace_id=s.trace_id_bytes,
        span_id=s.span_id_bytes,
        parent_span_id=s.parent_span_id_bytes,
        trace_state=s.tracestate or "",
        flags=flags,
        name=s.name,
        kind=s.kind_index + 1,
        start_time_unix_nano=s.start_time_ns,
        end_time_unix_nano=s.end_time_ns,
        attributes=_key_values(common_pb2, s.attributes),
        dropped_attributes_count=s.dropped_attributes,
        events=[
            trace_pb2.Span.Event(
                time_unix_nano=e["timestamp_ns"],
                name=e["name"],
                attributes=_key_values(common_pb2, e["attributes"]),
                dropped_attributes_count=e.get("dropped_attributes", 0),
            )
            for e in s.events
        ],
        dropped_events_count=s.dropped_events,
        status=trace_pb2.Status(code=_STATUS[s.status], message=s.status_message),
    )
