"""Distributed tracing: DistributedTracer, spans, W3C propagation, sampling and the trace_function decorator.

>>> from victor_observability import DistributedTracer, SpanKind
>>> tracer = DistributedTracer("victor.agent")
>>> with tracer.start_span("process_request") as span:
...     span.set_attribute("user_id", "123")
...     with tracer.start_span("call_llm", kind=SpanKind.CLIENT) as child:
...         assert child.parent_span_id == span.span_id
"""

from __future__ import annotations

import atexit
import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from victor_observability import _core

# attach_span / detach_span: the tracing package's interface for making a span current without a wrapper object
# (use_span, the middleware, the OpenTelemetry bridge).
from victor_observability._core import NonRecordingSpan, Sampler, Span, SpanContext, SpanData
from victor_observability._core import attach_span as attach_span
from victor_observability._core import detach_span as detach_span
from victor_observability.tracing._metrics import RegistryTracingMetrics
from victor_observability.tracing.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    CustomSampler,
    ParentBasedSampler,
    TraceIdRatioSampler,
    sampler_from_env,
    sdk_disabled,
    service_name_from_env,
)

if TYPE_CHECKING:
    from victor_observability.metrics.instruments import Registry
    from victor_observability.tracing.exporters import SpanExporter

__all__ = [
    "ALWAYS_OFF",
    "ALWAYS_ON",
    "AnySpan",
    "CustomSampler",
    "DistributedTracer",
    "NonRecordingSpan",
    "ParentBasedSampler",
    "Sampler",
    "Span",
    "SpanContext",
    "SpanData",
    "SpanKind",
    "StatusCode",
    "TraceIdRatioSampler",
    "current_span",
    "get_current_tracer",
    "get_global_tracer",
    "set_global_tracer",
    "trace_async_function",
    "trace_function",
]

AnySpan = Span | NonRecordingSpan
"""What `start_span` returns: a recording `Span`, or a `NonRecordingSpan` when the trace is not sampled."""

F = TypeVar("F", bound=Callable[..., Any])


class SpanKind(str, Enum):
    """The role of a span, as in OpenTelemetry; `start_span(kind=...)` also takes the plain string value.

    >>> SpanKind.SERVER == "server"
    True
    """

    # must match rust/trace/span.rs: Kind::NAMES
    INTERNAL = "internal"
    SERVER = "server"
    CLIENT = "client"
    PRODUCER = "producer"
    CONSUMER = "consumer"


class StatusCode(str, Enum):
    """A span's status; `span.set_status(StatusCode.ERROR, "why")` or `span.set_status("error", "why")`."""

    # must match rust/trace/span.rs: StatusCode::name
    UNSET = "unset"
    OK = "ok"
    ERROR = "error"


def current_span() -> AnySpan | None:
    """The span current in this thread or asyncio task, whichever tracer started it.

    >>> current_span() is None
    True
    """
    return _core.current_span()


class _UseSpan:
    """Makes a span current for a block without ending it (unless asked to)."""

    __slots__ = ("_end", "_record", "_span", "_token")

    def __init__(self, span: AnySpan, end_on_exit: bool, record_exception: bool) -> None:
        self._span = span
        self._end = end_on_exit
        self._record = record_exception
        self._token: object = None

    def __enter__(self) -> AnySpan:
        self._token = attach_span(self._span)
        return self._span

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and self._record:
            # As a span's own block does: a status set by hand is kept, the exception is still recorded.
            if self._span.status == "unset":
                self._span.set_error(exc)
            else:
                self._span.record_exception(exc)
        detach_span(self._token)
        if self._end:
            self._span.end()


class DistributedTracer:
    """Starts spans, propagates W3C trace context, keeps recent spans and exports them off the request path.

    `start_span`, `inject_context` and `extract_context` run in Rust in one call each: the tracer holds its Rust
    core and binds those methods once, so the export pipeline's internals stay out of its public surface.

    >>> tracer = DistributedTracer("checkout", sampler=ParentBasedSampler(TraceIdRatioSampler(0.2)))
    >>> headers: dict[str, str] = {}
    >>> with tracer.start_span("call", kind="client"):
    ...     _ = tracer.inject_context(headers)
    >>> sorted(headers)  # sampled or not, the context propagates
    ['traceparent']
    """

    def __init__(
        self,
        service_name: str | None = None,
        enabled: bool = True,
        use_opentelemetry: bool = True,
        *,
        sampler: Sampler | CustomSampler | None = None,
        exporters: Iterable[SpanExporter] = (),
        max_spans: int = 10_000,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        max_attributes: int = 128,
        max_events: int = 128,
        max_value_len: int = 4096,
        schedule_delay: float = 0.5,
        export_timeout: float = 10.0,
        max_retries: int = 3,
        flush_on_exit: bool = True,
        registry: Registry | None = None,
    ) -> None:
        from victor_observability.tracing._pipeline import ExportPipeline

        # OpenTelemetry's environment, as its SDKs read it: code wins over OTEL_SERVICE_NAME and
        # OTEL_TRACES_SAMPLER(_ARG), which fill in what was not given (default sampler: parentbased_always_on);
        # OTEL_SDK_DISABLED=true turns recording off whatever was given (contexts still propagate).
        if service_name is None:
            service_name = service_name_from_env("victor")
        if sampler is None or sdk_disabled():
            sampler = sampler_from_env()
        # The pure-Python tracer's switches: enabled=False records nothing (spans are non-recording, contexts
        # still propagate); use_opentelemetry is kept for reading only (the OpenTelemetry bridge is tracing/otel.py).
        self.enabled = bool(enabled)
        self.use_opentelemetry = bool(use_opentelemetry)
        if not self.enabled:
            sampler = ALWAYS_OFF
        for name, value in (("max_spans", max_spans), ("max_queue_size", max_queue_size)):
            if value < 0:
                raise ValueError(f"tracer {service_name!r}: {name} must be >= 0, not {value}")
        core: _core.TracerCore = _core.TracerCore(
            service_name,
            sampler=sampler,
            max_spans=max_spans,
            max_queue_size=max_queue_size,
            max_export_batch_size=max(1, max_export_batch_size),
            max_attributes=max_attributes,
            max_events=max_events,
            max_value_len=max_value_len,
        )
        self._core = core
        # The hot methods are the core's own, bound once: one call into Rust per operation, no Python frame.
        self.start_span = core.start_span  # type: ignore[method-assign]
        self.inject_context = core.inject_context  # type: ignore[method-assign]
        self.extract_context = core.extract_context  # type: ignore[method-assign]
        self._pipeline = ExportPipeline(
            core,
            max_export_batch_size=max(1, max_export_batch_size),
            schedule_delay=schedule_delay,
            export_timeout=export_timeout,
            max_retries=max_retries,
        )
        self._flush_on_exit = flush_on_exit
        self._lock = threading.Lock()
        self._atexit_registered = False
        for exporter in exporters:
            self.add_exporter(exporter)
        if registry is not None:
            # A weak reference: a scrape hook must not keep a discarded tracer (and its export thread) alive.
            ref = weakref.ref(self)
            RegistryTracingMetrics.on(registry).watch(service_name, lambda: None if (t := ref()) is None else t.stats())

    @property
    def service_name(self) -> str:
        """The `service.name` resource attribute of every span."""
        return self._core.service_name

    @property
    def scope_name(self) -> str:
        """The instrumentation scope of spans started here."""
        return self._core.scope_name

    @property
    def sampler(self) -> Sampler | CustomSampler:
        """The sampler that decides for root spans (and, parent-based, for children)."""
        return self._core.sampler  # type: ignore[no-any-return]

    def start_span(
        self,
        name: str,
        parent: Span | NonRecordingSpan | SpanContext | bool | None = None,
        kind: str | None = None,
        attributes: dict[str, Any] | None = None,
        start_time: int | None = None,
    ) -> AnySpan:
        """Starts a span under `parent` (default: the current span; False: a new trace). Used as a context
        manager it is current inside the block and ends on exit; started by hand, end it with `span.end()`."""
        return self._core.start_span(name, parent, kind, attributes, start_time)

    def inject_context(self, headers: Any, context: Span | NonRecordingSpan | SpanContext | bool | None = None) -> Any:
        """Writes traceparent / tracestate / baggage of `context` (default: the current span) into `headers` (a
        mapping or an ASGI header list) and returns it."""
        return self._core.inject_context(headers, context)

    def extract_context(self, headers: Any) -> SpanContext | None:
        """The incoming context, or None when traceparent is missing, repeated or invalid (never raises)."""
        return self._core.extract_context(headers)

    def get_trace(self, trace_id: str) -> list[SpanData]:
        """The buffered finished spans of one trace."""
        return self._core.get_trace(trace_id)

    def finished_spans(self) -> list[SpanData]:
        """Every buffered finished span, oldest first."""
        return self._core.finished_spans()

    def clear_spans(self) -> None:
        """Empties the buffer of finished spans (export is not affected)."""
        self._core.clear_spans()

    def add_exporter(self, exporter: SpanExporter) -> None:
        """Sends finished spans to `exporter` too, from a background worker with its own bounded queue.

        >>> from victor_observability.tracing.exporters import InMemorySpanExporter
        >>> DistributedTracer("svc").add_exporter(InMemorySpanExporter())
        """
        if not callable(getattr(exporter, "export", None)):
            raise ValueError(f"tracer {self.service_name!r}: exporter {exporter!r} has no export() method")
        self._pipeline.add(exporter)
        with self._lock:
            if self._flush_on_exit and not self._atexit_registered:
                atexit.register(self._flush_at_exit)
                self._atexit_registered = True

    @property
    def exporters(self) -> list[SpanExporter]:
        return self._pipeline.exporters

    def use_span(self, span: AnySpan, *, end_on_exit: bool = False, record_exception: bool = True) -> _UseSpan:
        """Makes a span started by hand current for a block. An exception leaving the block is recorded on the
        span (and sets the error status unless one was set by hand) unless `record_exception=False`, for code that
        records it itself; it always propagates.

        >>> tracer = DistributedTracer("svc")
        >>> span = tracer.start_span("request")
        >>> with tracer.use_span(span):
        ...     assert tracer.current_span() is span
        >>> span.end()
        """
        return _UseSpan(span, end_on_exit, record_exception)

    def current_span(self) -> AnySpan | None:
        """The span current in this thread or asyncio task, or None."""
        return _core.current_span()

    def current_context(self) -> SpanContext | None:
        """The current span's context (ids, sampled flag, tracestate, baggage), or None.

        >>> DistributedTracer("svc").current_context() is None
        True
        """
        span = _core.current_span()
        return None if span is None else span.context

    def get_trace_context(self) -> dict[str, str]:
        """The current trace as strings for logs and outgoing calls: trace_id, span_id, traceparent (+ tracestate,
        baggage); empty without a current span.

        >>> tracer = DistributedTracer("svc")
        >>> with tracer.start_span("op") as span:
        ...     tracer.get_trace_context()["trace_id"] == span.trace_id
        True
        """
        span = _core.current_span()
        if span is None:
            return {}
        out = {"trace_id": span.trace_id, "span_id": span.span_id}
        headers: dict[str, str] = {}
        self.inject_context(headers, span)
        out.update(headers)
        return out

    def export_trace(self, trace_id: str) -> dict[str, Any]:
        """The buffered spans of a trace as a JSON-ready dict, parents before children where start times allow.

        >>> tracer = DistributedTracer("svc")
        >>> with tracer.start_span("op") as span:
        ...     pass
        >>> tracer.export_trace(span.trace_id)["span_count"]
        1
        """
        spans = sorted(self.get_trace(trace_id), key=lambda s: s.start_time_ns)
        return {
            "trace_id": trace_id,
            "service_name": self.service_name,
            "span_count": len(spans),
            "spans": [s.to_dict() for s in spans],
        }

    def stats(self) -> dict[str, int]:
        """Counters: spans started, unsampled, finished, evicted from the buffer, dropped by the full export
        queue, per-exporter exported / failed / dropped spans, retries and timeouts, invalid attributes.

        >>> DistributedTracer("svc").stats()["spans_started"]
        0
        """
        out: dict[str, int] = dict(self._core.core_stats())
        out.update(self._pipeline.stats())
        return out

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Exports everything finished so far; True if it all went out within `timeout` seconds (False if an
        export failed or spans were dropped meanwhile)."""
        return self._pipeline.force_flush(timeout)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flushes, stops the export worker and shuts the exporters down; True if every span went out.

        Idempotent: a second call returns the first one's answer. Afterwards each exporter's spans add up:
        `spans_queued` = exported + failed + dropped (a batch stuck in a hung export counts as dropped).
        """
        done = self._pipeline.shutdown(timeout)
        with self._lock:
            if self._atexit_registered:
                atexit.unregister(self._flush_at_exit)
                self._atexit_registered = False
        return done

    def _flush_at_exit(self) -> None:
        self._pipeline.shutdown(timeout=5.0)

    def __repr__(self) -> str:
        return f"DistributedTracer({self.service_name!r}, sampler={self.sampler!r})"


def scoped_core(tracer: DistributedTracer, name: str, version: str | None = None) -> _core.TracerCore:
    """The tracer's core under another instrumentation scope, sharing its sampler, buffer and export queue: the
    tracing package's interface for the OpenTelemetry bridge, which starts spans for other libraries' tracers."""
    return tracer._core.with_scope(name, version)


_global_lock = threading.Lock()
_global_tracer: DistributedTracer | None = None


def set_global_tracer(tracer: DistributedTracer) -> None:
    """Makes `tracer` the one `trace_function` and `get_global_tracer()` use.

    >>> set_global_tracer(DistributedTracer("victor.agent"))
    """
    global _global_tracer
    if not isinstance(tracer, DistributedTracer):
        raise ValueError(f"set_global_tracer: need a DistributedTracer, not {type(tracer).__name__}")
    with _global_lock:
        _global_tracer = tracer


def get_global_tracer() -> DistributedTracer:
    """The global tracer; created on first use (service name from OTEL_SERVICE_NAME, else "victor").

    >>> get_global_tracer() is get_global_tracer()
    True
    """
    global _global_tracer
    tracer = _global_tracer
    if tracer is None:
        with _global_lock:
            if _global_tracer is None:
                _global_tracer = DistributedTracer()
            tracer = _global_tracer
    return tracer


def get_current_tracer() -> DistributedTracer:
    """The pure-Python toolkit's name for `get_global_tracer()`."""
    return get_global_tracer()


@overload
def trace_function(
    name: F, attributes: None = None, *, tracer: DistributedTracer | None = None, kind: SpanKind | str = ...
) -> F: ...
@overload
def trace_function(
    name: str | None = None,
    attributes: Mapping[str, Any] | SpanKind | str | None = None,
    *,
    tracer: DistributedTracer | None = None,
    kind: SpanKind | str = ...,
) -> Callable[[F], F]: ...
def trace_function(
    name: str | F | None = None,
    attributes: Mapping[str, Any] | SpanKind | str | None = None,
    *,
    tracer: DistributedTracer | None = None,
    kind: SpanKind | str = "internal",
) -> F | Callable[[F], F]:
    """Traces every call of a plain or async function (detected) in a span named `name` (default: the
    function's qualified name); exceptions are recorded and re-raised. Uses `tracer`, else the global tracer
    at call time. Signature and metadata are kept. A span kind as the second argument is read as `kind`, the
    pure-Python decorator's `trace_function(span_name, kind)`.

    >>> @trace_function("my_function", attributes={"component": "demo"})
    ... def my_function(arg1: int, arg2: int) -> int:
    ...     return arg1 + arg2
    >>> my_function(1, 2)
    3
    >>> @trace_function("fetch", SpanKind.CLIENT)
    ... def fetch() -> str:
    ...     return "ok"
    """
    if isinstance(attributes, str):  # SpanKind is a str enum
        kind, attributes = attributes, None
    if callable(name):
        return trace_function(None, attributes, tracer=tracer, kind=kind)(name)
    attrs = dict(attributes) if attributes else None
    span_kind = SpanKind(kind).value

    def decorate(fn: F) -> F:
        span_name: str = name if isinstance(name, str) and name else str(getattr(fn, "__qualname__", fn))
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                t = tracer if tracer is not None else get_global_tracer()
                with t.start_span(span_name, kind=span_kind, attributes=attrs):
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = tracer if tracer is not None else get_global_tracer()
            with t.start_span(span_name, kind=span_kind, attributes=attrs):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


trace_async_function = trace_function
"""Alias of `trace_function`, which already detects async functions."""
