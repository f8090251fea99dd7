"""Distributed tracing: the tracer, spans, W3C propagation, sampling, exporters (JSON lines, console, OTLP), httpx."""

from victor_observability._core import SpanBatch
from victor_observability.tracing.exporters import (
    BatchSpanExporter,
    ConsoleSpanExporter,
    InMemorySpanExporter,
    JsonLinesSpanExporter,
    SpanExporter,
)
from victor_observability.tracing.httpx import (
    AsyncTracedTransport,
    TracedTransport,
    instrument_httpx,
    uninstrument_httpx,
)
from victor_observability.tracing.otlp import OTLPSpanExporter
from victor_observability.tracing.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    CustomSampler,
    ParentBasedSampler,
    Sampler,
    TraceIdRatioSampler,
)
from victor_observability.tracing.tracer import (
    AnySpan,
    DistributedTracer,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanData,
    SpanKind,
    StatusCode,
    current_span,
    get_current_tracer,
    get_global_tracer,
    set_global_tracer,
    trace_async_function,
    trace_function,
)

__all__ = [
    "ALWAYS_OFF",
    "ALWAYS_ON",
    "AnySpan",
    "AsyncTracedTransport",
    "BatchSpanExporter",
    "ConsoleSpanExporter",
    "CustomSampler",
    "DistributedTracer",
    "InMemorySpanExporter",
    "JsonLinesSpanExporter",
    "NonRecordingSpan",
    "OTLPSpanExporter",
    "ParentBasedSampler",
    "Sampler",
    "Span",
    "SpanBatch",
    "SpanContext",
    "SpanData",
    "SpanExporter",
    "SpanKind",
    "StatusCode",
    "TraceIdRatioSampler",
    "TracedTransport",
    "current_span",
    "get_current_tracer",
    "get_global_tracer",
    "instrument_httpx",
    "set_global_tracer",
    "trace_async_function",
    "trace_function",
    "uninstrument_httpx",
]
