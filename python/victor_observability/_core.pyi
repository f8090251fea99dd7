"""Type stubs of the Rust extension `victor_observability._core` (private: import the package instead)."""

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, final

from typing_extensions import disjoint_base

# must match the runtime module's __all__ (PyO3 builds it from the #[pymodule]'s items; stubtest compares them).
__all__ = [
    "CURRENT_SPAN",
    "DEFAULT_LABEL_VALUE_CAP",
    "DEFAULT_SERIES_CAP",
    "MULTIPROC_ENV_VAR",
    "OPENMETRICS_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "CollectorCore",
    "CounterChild",
    "Exchange",
    "FamilyCore",
    "GaugeChild",
    "HistogramChild",
    "MiddlewareCore",
    "NonRecordingSpan",
    "OtlpHttpConnection",
    "ParentBasedSampler",
    "RegistryCore",
    "Sampler",
    "Span",
    "SpanBatch",
    "SpanContext",
    "SpanData",
    "TraceIdRatioSampler",
    "TracerCore",
    "__version__",
    "_random_trace_id",
    "_reseed_ids",
    "attach_span",
    "current_span",
    "detach_span",
    "mp_archive_dead",
    "mp_directory",
    "mp_enable",
    "mp_is_enabled",
    "mp_is_leader",
    "mp_store_path",
    "negotiate",
    "wants_gzip",
]

__version__: str
TEXT_CONTENT_TYPE: str
OPENMETRICS_CONTENT_TYPE: str
DEFAULT_SERIES_CAP: int
DEFAULT_LABEL_VALUE_CAP: int

def negotiate(accept: str) -> tuple[bool, str]:
    """(is_openmetrics, content_type) for a scraper's Accept header, q-values weighed (RFC 9110)."""

def wants_gzip(accept_encoding: str) -> bool:
    """Whether a scrape with this Accept-Encoding gets gzip: acceptable and not outweighed by identity."""

@final
class RegistryCore:
    """Metric families in registration order, plus the invalid-sample and overflow families."""

    def __new__(cls, prefix: str = "") -> RegistryCore: ...
    def family(
        self,
        kind: str,
        name: str,
        help: str,
        labelnames: list[str],
        buckets: list[float] | None = None,
        percentiles: bool = False,
        cap: int = ...,
        label_value_cap: int = ...,
        multiprocess_mode: str = "all",
    ) -> FamilyCore:
        """Defines a family; ValueError naming the metric on a bad name, label or bucket layout."""
    def unregister(self, name: str) -> bool: ...
    def names(self) -> list[str]: ...
    def get(self, name: str, label_value_cap: int = ...) -> FamilyCore | None:
        """The family registered under `name` (a counter's name without `_total`), if any."""
    def reset(self) -> None:
        """Zeroes every series (values only: children held by callers stay valid)."""
    def encode(self, openmetrics: bool = False) -> bytes:
        """Prometheus text 0.0.4, or OpenMetrics 1.0.0 with `# EOF`."""
    def samples(self) -> list[tuple[str, str, str, list[tuple[str, dict[str, str], float]]]]: ...

@final
class FamilyCore:
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def labelnames(self) -> list[str]: ...
    def labels(self, *values: Any) -> Any:
        """The child of the series with these label values (a Counter-, Gauge- or HistogramChild)."""
    def quantiles(self, qs: list[float]) -> list[float | None]: ...
    def total(self) -> float: ...
    def series_count(self) -> int: ...
    def clear(self) -> None: ...

@final
class CounterChild:
    def inc(self, amount: float = 1.0) -> None:
        """ValueError on a negative or non-finite amount; one that would make the total infinite is dropped
        and counted (reason "overflow")."""
    def get(self) -> float: ...

@final
class GaugeChild:
    def inc(self, amount: float = 1.0) -> None: ...
    def dec(self, amount: float = 1.0) -> None: ...
    def set(self, value: float) -> None: ...
    def get(self) -> float: ...

@final
class HistogramChild:
    def observe(self, value: float, exemplar: Mapping[str, str] | None = None) -> None:
        """A value that would make the sum infinite is dropped and counted (reason "overflow"). Its bucket keeps
        `exemplar` (at most 128 characters; else dropped, counted "invalid_exemplar") or the current sampled
        span's trace_id and span_id as its exemplar."""
    def get(self) -> float:
        """The number of observations."""
    def sum(self) -> float: ...

@disjoint_base
class CollectorCore:
    """The Rust half of ProductionMetricsCollector; record methods never raise for bad values."""

    def __new__(
        cls, prefix: str = "victor", *args: Any, series_cap: int = ..., label_value_cap: int = ..., **kwargs: Any
    ) -> CollectorCore: ...
    @property
    def core_registry(self) -> RegistryCore: ...
    def cancel_request(self) -> None:
        """Undoes begin_request for a request that is not to be recorded (a scrape or a probe)."""
    def record_request(
        self,
        endpoint: str,
        provider: str,
        success: bool,
        latency_ms: float | None = None,
        labels: dict[str, Any] | None = None,
    ) -> None:
        """One request: total, success or error, latency. A missing `latency_ms` drops the sample (counted)."""
    def begin_request(self) -> None: ...
    def end_request(
        self,
        endpoint: str,
        provider: str,
        success: bool,
        latency_ms: float,
        labels: dict[str, Any] | None = None,
        span: object | None = None,
    ) -> None: ...
    def record_tool_execution(
        self, tool_name: str, success: bool, duration_ms: float, labels: dict[str, Any] | None = None
    ) -> None: ...
    def record_coordinator_execution(
        self, coordinator_name: str, success: bool, duration_ms: float, labels: dict[str, Any] | None = None
    ) -> None: ...
    def increment_tool_active(self, count: int = 1) -> None: ...
    def decrement_tool_active(self, count: int = 1) -> None: ...
    def record_task_completion(self, success: bool, cost_usd: float | None = None) -> None: ...
    def record_token_usage(self, token_count: float) -> None: ...
    def record_cache_hit(self, cache_name: str) -> None: ...
    def record_cache_miss(self, cache_name: str) -> None: ...
    def record_cache_eviction(self, cache_name: str) -> None: ...
    def set_cache_size(self, cache_name: str, size: float) -> None: ...
    def get_cache_hit_rate(self) -> float:
        """Hits / (hits + misses) over every cache, in percent (0 with no lookups)."""
    def _count_error(self, error_type: str) -> None: ...
    def _set_system(
        self,
        memory_bytes: float | None = None,
        cpu_percent: float | None = None,
        disk_bytes: float | None = None,
        open_fds: float | None = None,
        uptime_seconds: float | None = None,
    ) -> None: ...
    def _refresh_error_rate(self) -> None: ...
    def _stats(self) -> dict[str, Any]: ...
    def _count_invalid(self, metric: str, reason: str) -> None: ...

# --- tracing (issue 3): rust/py/trace.rs ---

CURRENT_SPAN: Any
"""The context variable holding the current span (default None)."""

def current_span() -> Span | NonRecordingSpan | None:
    """The span current in this thread or asyncio task, or None."""

def attach_span(span: Span | NonRecordingSpan | None) -> object:
    """Makes `span` current; returns the token for `detach_span`."""

def detach_span(token: object) -> None: ...
def _reseed_ids() -> None:
    """Re-seeds the calling thread's id generator (fork safety is automatic via pthread_atfork)."""

def _random_trace_id() -> str: ...

@disjoint_base
class Sampler:
    """A built-in head sampler, decided in Rust."""

    @staticmethod
    def always_on() -> Sampler: ...
    @staticmethod
    def always_off() -> Sampler: ...
    @staticmethod
    def trace_id_ratio(ratio: float) -> Sampler:
        """Samples when the low 64 bits of the trace id are below ratio * 2**64 (OpenTelemetry's rule)."""

    @staticmethod
    def parent_based(root: Sampler) -> Sampler: ...
    def should_sample(self, trace_id: str, parent_sampled: bool | None = None, name: object = None) -> bool: ...
    @property
    def description(self) -> str: ...

@final
class TraceIdRatioSampler(Sampler):
    """Samples `ratio` of traces, decided on the trace id alone so that every service agrees (OpenTelemetry's
    TraceIdRatioBased rule: low 64 bits of the id below ratio * 2**64).

    >>> TraceIdRatioSampler(0.1).description
    'TraceIdRatio(0.1)'
    """

    def __new__(cls, ratio: float) -> TraceIdRatioSampler: ...

@final
class ParentBasedSampler(Sampler):
    """Follows the parent's sampled flag (local or remote); roots are decided by `root` (default: always on).
    The guide's production advice, 10-20 %, is `ParentBasedSampler(TraceIdRatioSampler(0.1))`.

    >>> ParentBasedSampler(TraceIdRatioSampler(0.2)).description
    'ParentBased(root=TraceIdRatio(0.2))'
    """

    def __new__(cls, root: Sampler | None = None) -> ParentBasedSampler: ...

@final
class SpanContext:
    """An immutable trace context: what `extract_context` returns and `parent=` accepts."""

    def __new__(
        cls,
        trace_id: str,
        span_id: str,
        sampled: bool = True,
        is_remote: bool = True,
        tracestate: str | None = None,
        baggage: dict[str, str] | None = None,
    ) -> SpanContext: ...
    @property
    def trace_id(self) -> str: ...
    @property
    def span_id(self) -> str: ...
    @property
    def trace_id_int(self) -> int: ...
    @property
    def span_id_int(self) -> int: ...
    @property
    def trace_flags(self) -> int: ...
    @property
    def sampled(self) -> bool: ...
    @property
    def is_remote(self) -> bool: ...
    @property
    def tracestate(self) -> str | None: ...
    @property
    def baggage(self) -> dict[str, str]: ...
    @property
    def traceparent(self) -> str: ...

@final
class SpanData:
    """A finished span, read-only: what exporters receive and `get_trace` returns."""

    @property
    def name(self) -> str: ...
    @property
    def trace_id(self) -> str: ...
    @property
    def span_id(self) -> str: ...
    @property
    def parent_span_id(self) -> str | None: ...
    @property
    def trace_id_bytes(self) -> bytes: ...
    @property
    def span_id_bytes(self) -> bytes: ...
    @property
    def parent_span_id_bytes(self) -> bytes: ...
    @property
    def parent_is_remote(self) -> bool: ...
    @property
    def trace_flags(self) -> int: ...
    @property
    def tracestate(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def kind_index(self) -> int: ...
    @property
    def start_time_ns(self) -> int: ...
    @property
    def end_time_ns(self) -> int: ...
    @property
    def duration_ms(self) -> float: ...
    @property
    def attributes(self) -> dict[str, Any]: ...
    @property
    def dropped_attributes(self) -> int: ...
    @property
    def events(self) -> list[dict[str, Any]]: ...
    @property
    def dropped_events(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def status_message(self) -> str: ...
    @property
    def scope_name(self) -> str: ...
    @property
    def scope_version(self) -> str | None: ...
    @property
    def service_name(self) -> str: ...
    @property
    def links(self) -> list[dict[str, Any]]: ...
    @property
    def dropped_links(self) -> int: ...
    def to_dict(self) -> dict[str, Any]: ...

@final
class SpanBatch:
    """The spans one export takes from the queue. Exporters that write bytes call `encode_otlp()` or
    `encode_json_lines()` (Rust, GIL released, no Python object per span); the others read it as a sequence of
    SpanData, made on demand."""

    @staticmethod
    def of(spans: Iterable[SpanData]) -> SpanBatch:
        """A batch of SpanData from elsewhere (an exporter called directly); all of one service, not empty."""
    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> SpanData: ...
    def __iter__(self) -> Iterator[SpanData]: ...
    def spans(self) -> list[SpanData]:
        """The spans as SpanData, in the order they finished."""
    @property
    def service_name(self) -> str: ...
    def encode_json_lines(self, compact: bool = True) -> bytes:
        """One JSON object per span and line, exactly `json.dumps(span.to_dict())` plus a newline."""
    def write_json_lines(self, fd: int, compact: bool = True) -> int:
        """Appends `encode_json_lines(compact)` to the open file descriptor `fd` (GIL released, no bytes object);
        returns the bytes written. Raises OSError, possibly after part of the lines were written."""
    def encode_otlp(self, resource_attributes: Mapping[str, Any] | None = None) -> bytes:
        """The body of an OTLP/HTTP protobuf export (an ExportTraceServiceRequest)."""
    def post_otlp(self, connection: OtlpHttpConnection, resource_attributes: Mapping[str, Any] | None = None) -> int:
        """`encode_otlp(resource_attributes)` posted on `connection` (GIL released, no bytes object); returns the
        response status. Raises OSError when no complete answer came."""

@final
class OtlpHttpConnection:
    """One kept-alive HTTP/1.1 connection to an OTLP collector at a plain http:// endpoint (the OTLP exporter's
    send, in Rust without the GIL). `timeout` (seconds) bounds the connect and each read and write."""

    def __new__(
        cls, host: str, port: int, path: str, host_header: str, headers: list[tuple[str, str]], timeout: float
    ) -> OtlpHttpConnection: ...
    def post(self, body: bytes) -> int:
        """Posts `body`; returns the response status. Raises OSError when no complete answer came."""
    def close(self) -> None:
        """Closes the kept-alive connection."""

@final
class Span:
    """A sampled, recording span: a context manager (current inside, ended on exit, exceptions recorded and
    re-raised) that can also be ended by hand with `end()`."""

    @property
    def trace_id(self) -> str: ...
    @property
    def span_id(self) -> str: ...
    @property
    def parent_span_id(self) -> str | None: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def sampled(self) -> bool: ...
    @property
    def tracestate(self) -> str | None: ...
    @property
    def start_time_ns(self) -> int: ...
    @property
    def end_time_ns(self) -> int | None: ...
    @property
    def duration_ms(self) -> float: ...
    @property
    def attributes(self) -> dict[str, Any]: ...
    @property
    def events(self) -> list[dict[str, Any]]: ...
    @property
    def status(self) -> str: ...
    @property
    def status_message(self) -> str: ...
    @property
    def context(self) -> SpanContext: ...
    @property
    def baggage(self) -> dict[str, str]: ...
    @property
    def is_ended(self) -> bool: ...
    def is_recording(self) -> bool: ...
    def set_attribute(self, key: str, value: Any) -> None: ...
    def set_attributes(self, attributes: dict[str, Any]) -> None: ...
    def add_event(self, name: str, attributes: dict[str, Any] | None = None, timestamp: int | None = None) -> None: ...
    def add_link(
        self, context: Span | NonRecordingSpan | SpanContext, attributes: dict[str, Any] | None = None
    ) -> None: ...
    def record_exception(self, exception: BaseException, attributes: dict[str, Any] | None = None) -> None: ...
    def set_error(self, exception: BaseException) -> None: ...
    def set_status(self, status: Any, description: str | None = None) -> None: ...
    def update_name(self, name: str) -> None: ...
    def set_baggage_item(self, key: str, value: str) -> None: ...
    def get_baggage_item(self, key: str) -> str | None: ...
    def end(self, end_time: int | None = None) -> None: ...
    def to_span_data(self) -> SpanData | None: ...
    def end_http_server(
        self,
        method: str,
        path: str,
        scheme: str,
        status: int,
        route: str | None = None,
        server_address: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """Sets OpenTelemetry's HTTP server attributes, the name and 5xx error status, then ends (middleware)."""
    def __enter__(self) -> Span: ...
    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool: ...

@final
class NonRecordingSpan:
    """An unsampled span: records nothing, but is current inside its block so its context propagates."""

    @staticmethod
    def from_context(context: SpanContext) -> NonRecordingSpan: ...
    @property
    def trace_id(self) -> str: ...
    @property
    def span_id(self) -> str: ...
    @property
    def parent_span_id(self) -> str | None: ...
    @property
    def name(self) -> str: ...
    @property
    def sampled(self) -> bool: ...
    @property
    def tracestate(self) -> str | None: ...
    @property
    def context(self) -> SpanContext: ...
    @property
    def attributes(self) -> dict[str, Any]: ...
    @property
    def baggage(self) -> dict[str, str]: ...
    @property
    def status(self) -> str: ...
    def is_recording(self) -> bool: ...
    def set_attribute(self, key: str, value: Any) -> None: ...
    def set_attributes(self, attributes: dict[str, Any]) -> None: ...
    def add_event(self, name: str, attributes: dict[str, Any] | None = None, timestamp: int | None = None) -> None: ...
    def add_link(
        self, context: Span | NonRecordingSpan | SpanContext, attributes: dict[str, Any] | None = None
    ) -> None: ...
    def record_exception(self, exception: BaseException, attributes: dict[str, Any] | None = None) -> None: ...
    def set_error(self, exception: BaseException) -> None: ...
    def set_status(self, status: Any, description: str | None = None) -> None: ...
    def update_name(self, name: str) -> None: ...
    def set_baggage_item(self, key: str, value: str) -> None: ...
    def get_baggage_item(self, key: str) -> str | None: ...
    def end(self, end_time: int | None = None) -> None: ...
    def to_span_data(self) -> None: ...
    def end_http_server(
        self,
        method: str,
        path: str,
        scheme: str,
        status: int,
        route: str | None = None,
        server_address: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """Sets OpenTelemetry's HTTP server attributes, the name and 5xx error status, then ends (middleware)."""
    def __enter__(self) -> NonRecordingSpan: ...
    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool: ...

@final
class TracerCore:
    """The Rust half of DistributedTracer."""

    def __new__(
        cls,
        service_name: str,
        *,
        sampler: Any = None,
        max_spans: int = 10_000,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        max_attributes: int = 128,
        max_events: int = 128,
        max_value_len: int = 4096,
        **rest: Any,
    ) -> Any: ...
    @property
    def service_name(self) -> str: ...
    @property
    def scope_name(self) -> str: ...
    @property
    def sampler(self) -> Any: ...
    def with_scope(self, name: str, version: str | None = None) -> TracerCore: ...
    def start_span(
        self,
        name: str,
        parent: _Parent = None,
        kind: str | None = None,
        attributes: dict[str, Any] | None = None,
        start_time: int | None = None,
    ) -> Span | NonRecordingSpan:
        """Starts a span under `parent` (default: the current span; False: a new trace)."""

    def inject_context(self, headers: _Carrier, context: _Parent = None) -> _Carrier:
        """Writes traceparent / tracestate / baggage of `context` (default: the current span) into `headers`."""

    def extract_context(self, headers: _Headers) -> SpanContext | None:
        """The incoming context, or None when traceparent is missing, repeated or invalid; a carrier's Exception
        means None, only a BaseException that is not an Exception (KeyboardInterrupt) propagates."""
    def wait(self, timeout: float) -> bool: ...
    def wake(self) -> None: ...
    def set_exporting(self, on: bool) -> None: ...
    def drain(self, max: int) -> SpanBatch: ...
    def queue_len(self) -> int: ...
    def get_trace(self, trace_id: str) -> list[SpanData]: ...
    def finished_spans(self) -> list[SpanData]: ...
    def clear_spans(self) -> None: ...
    def core_stats(self) -> dict[str, int]: ...

from collections.abc import Mapping as _Mapping  # noqa: E402 - kept inside the tracing block
from collections.abc import MutableMapping as _MutableMapping  # noqa: E402
from typing import TypeVar as _TypeVar  # noqa: E402

_Carrier = _TypeVar("_Carrier", bound=_MutableMapping[str, str] | list[tuple[bytes, bytes]])
_Headers = _Mapping[str, str] | _Mapping[bytes, bytes] | list[tuple[bytes, bytes]] | list[tuple[str, str]] | Any
_Parent = Span | NonRecordingSpan | SpanContext | None | bool

# --- end tracing ---

# --- multi-process mode (rust/py/multiproc.rs) ---
MULTIPROC_ENV_VAR: str

def mp_enable(path: str) -> None:
    """Turns multi-process mode on with ``path`` as the shared directory."""

def mp_is_enabled() -> bool: ...
def mp_directory() -> str | None: ...
def mp_store_path() -> str | None: ...
def mp_archive_dead() -> int: ...
def mp_is_leader() -> bool: ...

# -- the middleware core (rust/py/middleware/) --------------------------------------------------------------------

@final
class MiddlewareCore:
    """The Rust half of MonitoringMiddleware: its settings as Rust values, and the per-request work."""

    def __new__(
        cls,
        tracer: TracerCore,
        collector: object,
        *,
        exchange_key: str,
        request_id_header: bytes,
        trace_id_header: bytes,
        provider: str,
        status_class: bool,
        known_methods: list[str],
        excluded_exact: list[str],
        excluded_prefixes: list[str],
        on_failure: Any,
    ) -> MiddlewareCore: ...
    def start(self, scope: Any, add_headers: bool = True) -> Exchange | None:
        """Starts an HTTP request: None when its path is excluded; else it is in flight, its SERVER span current,
        and the Exchange in the scope until `finish`."""

@final
class Exchange:
    """One request, from `MiddlewareCore.start` to its record."""

    def on_send(self, message: Any) -> None:
        """A message the app sends: the response start or a body chunk (the last one records). Never raises."""
    def send_failed(self) -> None: ...
    def client_gone(self) -> None: ...
    def finish(self, error: BaseException | None = None) -> None:
        """The app returned or raised: out of the scope, the span before it current again, recorded once."""
    def detach(self) -> None: ...
    def unmonitor(self) -> None:
        """Out of the request metrics and the in-flight gauge (a scrape or a probe)."""
    @property
    def response_headers(self) -> list[tuple[bytes, bytes]]: ...
