"""The OpenTelemetry API bridge: a TracerProvider whose spans are this package's spans, and a shared current span.

After `install(tracer)`, spans started through `opentelemetry.trace` (by any instrumented library) are recorded by
`tracer`, nest with `DistributedTracer` spans in one tree, and `opentelemetry.trace.get_current_span()` sees the
tracer's current span. The current span lives in one place, this package's context variable; the runtime context
installed here overlays it on OpenTelemetry's `Context` (the `opentelemetry_context` entry point
`victor_observability` selects it through `OTEL_PYTHON_CONTEXT` too).

>>> from opentelemetry import trace as otel_trace
>>> from victor_observability import DistributedTracer
>>> from victor_observability.tracing.otel import VictorTracerProvider
>>> tracer = DistributedTracer("svc")
>>> otel_tracer = VictorTracerProvider(tracer).get_tracer("my.library")
>>> with tracer.start_span("outer") as outer:
...     with otel_tracer.start_as_current_span("inner") as inner:
...         assert inner.get_span_context().trace_id == int(outer.trace_id, 16)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.context.context import Context, _RuntimeContext
from opentelemetry.trace import INVALID_SPAN, Link, Status, TraceFlags, TraceState, get_current_span
from opentelemetry.trace import SpanContext as OtelSpanContext
from opentelemetry.trace import SpanKind as OtelSpanKind

from victor_observability import _core
from victor_observability._core import NonRecordingSpan, SpanContext, TracerCore
from victor_observability.tracing.tracer import AnySpan, DistributedTracer, attach_span, detach_span, scoped_core

__all__ = ["VictorRuntimeContext", "VictorTracerProvider", "install", "install_runtime_context"]


def _otel_context_of(span: AnySpan) -> OtelSpanContext:
    ctx = span.context
    return OtelSpanContext(
        trace_id=int(ctx.trace_id, 16),
        span_id=int(ctx.span_id, 16),
        is_remote=ctx.is_remote,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if ctx.sampled else TraceFlags.DEFAULT),
        trace_state=TraceState.from_header([ctx.tracestate]) if ctx.tracestate else TraceState(),
    )


class BridgeSpan(otel_trace.Span):
    """An OpenTelemetry `Span` backed by one of this package's spans (`.victor_span`)."""

    __slots__ = ("victor_span",)

    def __init__(self, span: AnySpan) -> None:
        self.victor_span = span

    def end(self, end_time: int | None = None) -> None:
        self.victor_span.end(end_time)

    def get_span_context(self) -> OtelSpanContext:
        return _otel_context_of(self.victor_span)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self.victor_span.set_attributes(dict(attributes))

    def set_attribute(self, key: str, value: Any) -> None:
        self.victor_span.set_attribute(key, value)

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None) -> None:
        self.victor_span.add_event(name, dict(attributes) if attributes else None, timestamp)

    def add_link(self, context: OtelSpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        victor = _victor_context(context)
        if victor is not None:
            self.victor_span.add_link(victor, dict(attributes) if attributes else None)

    def update_name(self, name: str) -> None:
        self.victor_span.update_name(name)

    def is_recording(self) -> bool:
        return self.victor_span.is_recording()

    def set_status(self, status: Status | Any, description: str | None = None) -> None:
        if isinstance(status, Status):
            self.victor_span.set_status(status.status_code.name, status.description)
        else:
            self.victor_span.set_status(status.name, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self.victor_span.record_exception(exception, dict(attributes) if attributes else None)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BridgeSpan) and other.victor_span is self.victor_span

    def __hash__(self) -> int:
        return id(self.victor_span)

    def __repr__(self) -> str:
        return f"BridgeSpan({self.victor_span!r})"


def _victor_of(span: object) -> AnySpan | None:
    """This package's span for an OpenTelemetry span: the bridged one, or a no-op span carrying a foreign
    span's context (e.g. from OpenTelemetry's own propagator), so that children attach to it."""
    if isinstance(span, BridgeSpan):
        return span.victor_span
    if span is None or span is INVALID_SPAN or not isinstance(span, otel_trace.Span):
        return None
    context = _victor_context(span.get_span_context())
    return None if context is None else NonRecordingSpan.from_context(context)


def _victor_context(ctx: OtelSpanContext) -> SpanContext | None:
    if not ctx.is_valid:
        return None
    header = ctx.trace_state.to_header() if ctx.trace_state else ""
    return SpanContext(
        format(ctx.trace_id, "032x"),
        format(ctx.span_id, "016x"),
        sampled=ctx.trace_flags.sampled,
        is_remote=ctx.is_remote,
        tracestate=header or None,
    )


class _BridgeToken:
    __slots__ = ("otel", "victor")

    def __init__(self, otel: contextvars.Token[Context], victor: object) -> None:
        self.otel = otel
        self.victor = victor


class VictorRuntimeContext(_RuntimeContext):
    """OpenTelemetry's runtime context with the current span kept in this package's context variable."""

    def __init__(self) -> None:
        # Context is immutable (set_value returns a copy), so one shared default is safe.
        self._current = contextvars.ContextVar("victor_observability.otel_context", default=Context())  # noqa: B039

    def attach(self, context: Context) -> contextvars.Token[Context]:
        victor = _victor_of(get_current_span(context))
        token = _BridgeToken(self._current.set(context), attach_span(victor))
        # OpenTelemetry treats tokens as opaque and hands them back to detach() only.
        return cast("contextvars.Token[Context]", token)

    def get_current(self) -> Context:
        ctx = self._current.get()
        current = _core.current_span()
        in_ctx = get_current_span(ctx)
        if current is None:
            return ctx if in_ctx is INVALID_SPAN else otel_trace.set_span_in_context(INVALID_SPAN, ctx)
        if isinstance(in_ctx, BridgeSpan) and in_ctx.victor_span is current:
            return ctx
        return otel_trace.set_span_in_context(BridgeSpan(current), ctx)

    def detach(self, token: contextvars.Token[Context] | _BridgeToken) -> None:
        if not isinstance(token, _BridgeToken):
            return
        detach_span(token.victor)
        with contextlib.suppress(ValueError):
            self._current.reset(token.otel)


def install_runtime_context() -> None:
    """Makes OpenTelemetry's context read and write the current span of this package (idempotent)."""
    if not isinstance(otel_context._RUNTIME_CONTEXT, VictorRuntimeContext):
        otel_context._RUNTIME_CONTEXT = VictorRuntimeContext()


def _kind(kind: Any) -> str:
    return kind.name.lower() if isinstance(kind, OtelSpanKind) else str(kind)


class BridgeTracer(otel_trace.Tracer):
    """An OpenTelemetry `Tracer` starting this package's spans under an instrumentation scope."""

    def __init__(self, core: TracerCore) -> None:
        self._core = core

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: OtelSpanKind = OtelSpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> BridgeSpan:
        # An explicit Context decides the parent (no span in it: a new trace); none means the current span.
        parent: Any = None
        if context is not None:
            parent = _victor_of(get_current_span(context))
            if parent is None:
                parent = False
        attrs = dict(attributes) if attributes else None
        span = BridgeSpan(self._core.start_span(name, parent, _kind(kind), attrs, start_time))
        for link in links or ():
            span.add_link(link.context, link.attributes)
        return span

    # OpenTelemetry declares a private "agnostic" context manager type here; a plain one behaves the same.
    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: OtelSpanKind = OtelSpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[otel_trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with otel_trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class VictorTracerProvider(otel_trace.TracerProvider):
    """An OpenTelemetry `TracerProvider` whose tracers record into `tracer` (same sampler, buffer, exporters).

    >>> provider = VictorTracerProvider(DistributedTracer("svc"))
    >>> provider.get_tracer("requests").start_span("GET").end()
    """

    def __init__(self, tracer: DistributedTracer, *, runtime_context: bool = True) -> None:
        self.tracer = tracer
        self._tracers: dict[tuple[str, str | None], BridgeTracer] = {}
        if runtime_context:
            install_runtime_context()

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> BridgeTracer:
        key = (instrumenting_module_name or self.tracer.service_name, instrumenting_library_version)
        bridge = self._tracers.get(key)
        if bridge is None:
            bridge = BridgeTracer(scoped_core(self.tracer, key[0], key[1]))
            self._tracers[key] = bridge
        return bridge

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.tracer.force_flush(timeout_millis / 1000.0)

    def shutdown(self) -> None:
        self.tracer.shutdown()


def install(tracer: DistributedTracer) -> VictorTracerProvider:
    """Sets the global OpenTelemetry TracerProvider to one backed by `tracer` (OpenTelemetry allows this once
    per process) and installs the shared runtime context.

    >>> install  # doctest: +ELLIPSIS
    <function install at ...>
    """
    provider = VictorTracerProvider(tracer)
    otel_trace.set_tracer_provider(provider)
    return provider
