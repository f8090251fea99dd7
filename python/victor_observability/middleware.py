"""MonitoringMiddleware: request metrics and a SERVER span for every HTTP request of an ASGI 3 app.

>>> from fastapi import FastAPI
>>> app = FastAPI()
>>> app.add_middleware(MonitoringMiddleware)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Container, Iterable
from typing import Any, Literal
from urllib.parse import urlsplit

from victor_observability._asgi import UNMONITORED_KEY, Message, Receive, Scope, Send
from victor_observability._core import CURRENT_SPAN
from victor_observability.metrics.collector import ProductionMetricsCollector, create_production_collector
from victor_observability.tracing.tracer import (
    DistributedTracer,
    NonRecordingSpan,
    SpanKind,
    attach_span,
    detach_span,
    get_global_tracer,
)

log = logging.getLogger("victor_observability.middleware")
_now = time.perf_counter
# What `detach_span` does, as the context variable's own C method: no extension-call wrapper on every request.
_reset_span = CURRENT_SPAN.reset

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The route label of requests no route matched: one value, so scanners cannot explode cardinality.
UNMATCHED_ROUTE = "__unmatched__"
#: The status label of a request whose client went away before the response was complete (nginx's code).
CLIENT_CLOSED = 499
DEFAULT_EXCLUDED_PATHS = ("/metrics", "/health/*")
#: OpenTelemetry's HTTP conventions: the methods of RFC 9110 and PATCH are kept as sent (case-sensitive), any
#: other becomes "_OTHER", so clients cannot mint series or span names with made-up methods. The env variable
#: OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS (comma-separated) replaces the list, as the conventions require.
DEFAULT_KNOWN_METHODS = frozenset(("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"))
OTHER_METHOD = "_OTHER"
_MAX_REQUEST_ID = 128
_MAX_USER_AGENT = 512
# Real extension methods (PROPFIND, VERSION-CONTROL) are short; the span keeps this much of a made-up one.
_MAX_METHOD_ORIGINAL = 64


def _known_methods(known: Iterable[str] | None) -> frozenset[str]:
    if known is not None:
        return frozenset(known)
    env = os.environ.get("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS")
    if env is None:
        return DEFAULT_KNOWN_METHODS
    return frozenset(m.strip() for m in env.split(",") if m.strip())


def _route_of(scope: Scope) -> str:
    """The matched route's template (`/items/{item_id}`), as Starlette and FastAPI leave it in the scope."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED_ROUTE
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED_ROUTE


def _clean_request_id(raw: bytes) -> str | None:
    """An incoming request id worth echoing: short, printable ASCII; anything else is replaced."""
    if not raw or len(raw) > _MAX_REQUEST_ID:
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


class _Excluder:
    """Exact paths and `prefix/*` patterns, matched without regexes. An exact `/metrics` also matches
    `/metrics/`, the path an app mounted at `/metrics` (Starlette's `app.mount`) answers."""

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = list(patterns)
        exact = [p for p in patterns if not p.endswith("*")]
        self.exact = frozenset([*exact, *(p + "/" for p in exact if not p.endswith("/"))])
        self.prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
        #: The second characters of the excluded paths ("m" and "h" by default): a path whose second character is
        #: none of them is served without hashing it or scanning prefixes (a one-character slice of an ASCII str is one
        #: of CPython's cached strings: the test makes no object). A prefix too short to have one checks every path.
        self.heads: Container[str] = (
            frozenset([p[1:2] for p in self.exact] + [p[1:2] for p in self.prefixes])
            if all(len(p) >= 2 for p in self.prefixes)
            else _Anything()
        )

    def __call__(self, path: str) -> bool:
        return path in self.exact or (bool(self.prefixes) and path.startswith(self.prefixes))


class _Anything:
    def __contains__(self, item: object) -> bool:
        return True


class _Exchange:
    """One request/response as it passes: status, completion, disconnects, and the headers we add."""

    # No __slots__: the flags start as these class attributes, so a request sets only what it changes (an
    # instance of a slotted class pays for every slot it fills, and this one is made per request). No __init__
    # either: the middleware fills the fields below in its own frame, one Python call less per request.
    middleware: MonitoringMiddleware
    scope: Scope
    span: Any
    method: str
    user_agent: str | None
    receive: Receive
    send: Send
    extra_headers: list[tuple[bytes, bytes]]
    t0: float
    status = 500
    started = completed = disconnected = done = unmonitored = False
    t_end = 0.0
    remaining: int | None = None
    headers: Any = ()

    def _declared_length(self) -> int:
        """The response's Content-Length (ASGI header names are lowercase); -1 without one, so it is never reached."""
        for name, value in self.headers:
            if name == b"content-length" and value.isdigit():
                return int(value)
        return -(1 << 62)

    def unmonitor(self) -> None:
        """A scrape or probe (the app said so through `_asgi.unmonitor`): out of the request metrics,
        and out of the in-flight gauge at once, so the scrape it serves does not count itself."""
        cancel = self.middleware._cancel
        if not self.unmonitored and not self.done and cancel is not _nothing:
            self.unmonitored = True
            cancel()

    def complete(self, error: BaseException | None) -> None:
        """Records the request, once: before the last chunk goes out, so that a client holding the
        whole response also finds it counted; else when the app returns or raises. (One method, no helpers:
        each Python call here is paid per request.)"""
        if self.done:
            return
        self.done = True
        mw = self.middleware
        try:
            completed = self.completed
            t_end = self.t_end if completed else _now()
            if not completed and self.disconnected:
                status = CLIENT_CLOSED
            elif error is not None and not self.started:
                # An exception before the response is what the client sees as a 500.
                status = 500
            else:
                status = self.status
            scope = self.scope
            found = scope.get("route")
            if found is None:
                route = UNMATCHED_ROUTE
            else:
                # Starlette and FastAPI routes carry their template, made once when the route was defined; any other
                # route object is resolved once by identity (see MonitoringMiddleware._route).
                try:
                    route = found.path_format
                except AttributeError:
                    route = mw._route(found)
                else:
                    if type(route) is not str or not route:
                        route = mw._route(found)
            success = status < 500 and (error is None or status == CLIENT_CLOSED)
            latency_ms = (t_end - self.t0) * 1000.0
            span = self.span
            method = self.method
            if not self.unmonitored:
                try:
                    labels = mw._label_sets[method][status]
                except KeyError:
                    labels = mw._labels(method, status)
                # The server span (when sampled) is the exemplar of the bucket this latency lands in.
                mw._end(route, mw.provider, success, latency_ms, labels, span)
            # Unsampled: nothing to record or end (its end is a no-op), so no attributes are gathered for it.
            if type(span) is not NonRecordingSpan:
                if error is not None and status != CLIENT_CLOSED:
                    span.set_error(error)
                # OpenTelemetry's HTTP server attributes (not url.query: query strings carry tokens too often),
                # the name "GET /items/{item_id}", error status on 5xx and the end, in one call into the core.
                server = scope.get("server")
                span.end_http_server(
                    method,
                    scope.get("path", ""),
                    scope.get("scheme", "http"),
                    status,
                    route if route != UNMATCHED_ROUTE else None,
                    str(server[0]) if server else None,
                    self.user_agent or None,
                )
            # The app may keep our wrapped receive/send in the scope (Starlette's Request does): drop our
            # side of that cycle so the request's objects are freed by refcount, not left for the GC.
            self.scope = self.span = None  # type: ignore[assignment]
        except Exception:
            # Recording must never break the response it records; say so once.
            mw._record_failed()

    async def wrapped_send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            # The response is complete at its last chunk, or at its declared length (a client that has
            # Content-Length bytes is done, whether or not an empty final chunk follows). The length is read
            # only for a response that comes in several chunks: most come in one.
            if message.get("more_body", False):
                remaining = self.remaining
                if remaining is None:
                    remaining = self._declared_length()
                remaining = self.remaining = remaining - len(message.get("body", b""))
                done = remaining == 0
            else:
                done = True
            if done:
                self.completed = True
                self.t_end = _now()
                self.complete(None)
        elif kind == "http.response.start":
            status = message["status"]
            self.status = status if type(status) is int else int(status)
            self.started = True
            headers = self.headers = message.get("headers", ())
            message["headers"] = [*headers, *self.extra_headers]
        try:
            await self.send(message)
        except OSError:
            self.disconnected = True
            raise

    async def wrapped_receive(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.disconnect" and not self.completed:
            self.disconnected = True
        return message


class MonitoringMiddleware:
    """Pure ASGI middleware recording `<prefix>_request_*` and `<prefix>_active_requests`, and a SERVER span.

    Per request, one call into the core records the count, success or error, and latency labelled
    ``endpoint`` (the route template), ``provider`` (``"http"``), ``method`` and ``status`` (the code,
    or its class such as ``"5xx"`` with ``status_label="class"``). Excluded paths (default ``/metrics``
    and ``/health/*``; an exact path covers its trailing-slash form too), websocket and lifespan scopes pass
    through untouched; the metrics and health apps take their requests out wherever they are mounted. Methods
    other than OpenTelemetry's known ones are labelled ``_OTHER``.

    >>> from victor_observability import create_production_collector
    >>> async def app(scope, receive, send): ...
    >>> wrapped = MonitoringMiddleware(app, metrics_collector=create_production_collector(collect_system_metrics=False))
    """

    def __init__(
        self,
        app: ASGIApp | None = None,
        metrics_collector: ProductionMetricsCollector | None = None,
        tracer: DistributedTracer | None = None,
        *,
        exclude_paths: Iterable[str] = DEFAULT_EXCLUDED_PATHS,
        status_label: Literal["code", "class"] = "code",
        request_id_header: str = "X-Request-ID",
        trace_id_header: str = "X-Trace-ID",
        provider: str = "http",
        count_websockets: bool = False,
        known_methods: Iterable[str] | None = None,
        collect_system_metrics: bool = True,
    ) -> None:
        if status_label not in ("code", "class"):
            raise ValueError(f"status_label must be 'code' or 'class', not {status_label!r}")
        self.app = app
        if metrics_collector is None:
            # The pure-Python middleware's switch for the collector it makes itself.
            metrics_collector = create_production_collector(collect_system_metrics=collect_system_metrics)
        self.metrics_collector = metrics_collector
        self.tracer = tracer if tracer is not None else get_global_tracer()
        self._excluded = _Excluder(exclude_paths)
        self._heads = self._excluded.heads
        self._status_class = status_label == "class"
        self._rid_name = request_id_header.lower().encode("latin-1")
        self._tid_name = trace_id_header.lower().encode("latin-1")
        self.provider = provider
        self.count_websockets = count_websockets
        # Bound once: attribute lookups per request add up.
        self._begin = self.metrics_collector.begin_request
        # The server span is the latency's exemplar; a stand-in collector gets the arguments it always got.
        self._end: Callable[[str, str, bool, float, dict[str, str], Any], None] = (
            self.metrics_collector.end_request
            if isinstance(self.metrics_collector, ProductionMetricsCollector)
            else _without_span(self.metrics_collector.end_request)
        )
        # getattr: a stand-in collector without it still works (its scrapes are counted as requests).
        self._cancel: Callable[[], None] = getattr(self.metrics_collector, "cancel_request", _nothing)
        self._known_methods = _known_methods(known_methods)
        # method -> status -> labels: two subscripts per request, no key tuple made.
        self._label_sets: dict[str, dict[int, dict[str, str]]] = {}
        self._label_set_count = 0
        # The core's own collector is marked in flight by begin_server, in the same call; a stand-in by _begin().
        self._in_flight = (
            self.metrics_collector if isinstance(self.metrics_collector, ProductionMetricsCollector) else None
        )
        core = getattr(self.tracer, "_core", None)
        self._begin_server: Callable[..., Any] | None = getattr(core, "begin_server", None)
        # Route templates per route object (by identity: Starlette's routes compare by value and do not hash),
        # the object kept so that its id is not reused; bounded like the label sets.
        self._routes: dict[int, tuple[Any, str]] = {}
        #: Requests served but not recorded because recording raised (logged once).
        self.record_failures = 0

    def _record_failed(self) -> None:
        self.record_failures += 1
        if self.record_failures == 1:
            log.exception("MonitoringMiddleware could not record a request; the request itself was served")

    def _status(self, code: int) -> str:
        return f"{code // 100}xx" if self._status_class else str(code)

    def _labels(self, method: str, code: int) -> dict[str, str]:
        """The extra labels of a request, one dict per (method, status) reused: the core only reads it."""
        by_status = self._label_sets.get(method)
        labels = by_status.get(code) if by_status is not None else None
        if labels is None:
            labels = {"method": method, "status": self._status(code)}
            # Statuses come from apps, methods from clients (bounded to the known ones and _OTHER): bound what we keep.
            if self._label_set_count < 1000:
                self._label_set_count += 1
                self._label_sets.setdefault(method, {})[code] = labels
        return labels

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.app
        if app is None:
            raise RuntimeError("MonitoringMiddleware was created without an app; use handle_request() instead")
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket" and self.count_websockets:
                await self._websocket(app, scope, receive, send)
            else:
                await app(scope, receive, send)
            return
        # ASGI requires all three in an http scope; one missing (a hand-made scope) falls back to the defaults.
        try:
            path, method, headers = scope["path"], scope["method"], scope["headers"]
        except KeyError:
            path, method, headers = scope.get("path", ""), scope.get("method", "GET"), scope.get("headers")
        if path[1:2] in self._heads and self._excluded(path):
            await _follow_slash_redirect(app, scope, receive, send)
            return
        # The request path is inline here, not a helper coroutine: one frame less on every await.
        begin = self._begin_server
        if begin is not None and method in self._known_methods:
            # One call into the core: trace headers, request id and user agent read, the span started and made
            # current (what `tracer.use_span` does, without its wrapper object), the response headers made.
            span, token, extra, user_agent = begin(
                headers or [], method, self._rid_name, self._tid_name, self._in_flight
            )
            if self._in_flight is None:
                self._begin()
        else:
            span, token, extra, user_agent, method = self._begin_other(scope, method)
            self._begin()
        exchange = _Exchange()
        exchange.middleware = self
        exchange.scope = scope
        exchange.span = span
        exchange.method = method
        exchange.user_agent = user_agent
        exchange.receive = receive
        exchange.send = send
        exchange.extra_headers = extra
        # Set, though the class has them: CPython 3.11 reads an attribute that the instance lacks the slow way, and
        # these two are read on every request.
        exchange.done = exchange.unmonitored = False
        exchange.t0 = _now()
        # The /metrics and health apps find it here to take scrapes and probes out (see _asgi.unmonitor).
        scope[UNMONITORED_KEY] = exchange
        try:
            await app(scope, exchange.wrapped_receive, exchange.wrapped_send)
        except BaseException as exc:
            scope.pop(UNMONITORED_KEY, None)
            detach_span(token)
            exchange.complete(exc)
            raise
        # The scope holds the exchange, which holds the server's send and receive, which hold the scope: a cycle that
        # would leave the whole request (server cycle, scope, FastAPI's exit stacks) for the GC. Unlinked here, the
        # request's objects are freed by refcount when it ends; nothing looks the key up once the app has returned.
        scope.pop(UNMONITORED_KEY, None)
        # Not contextlib.suppress: its object and two calls would cost more than the wrapper this saves.
        try:  # noqa: SIM105
            _reset_span(token)
        except (ValueError, RuntimeError):
            # A token the app's own context switching made unusable (as detach_span, never the caller's problem).
            pass
        # Most responses were recorded at their last chunk already.
        if not exchange.done:
            exchange.complete(None)

    def _begin_other(self, scope: Scope, method: Any) -> tuple[Any, Any, list[tuple[bytes, bytes]], str | None, str]:
        """The start of a request the core's one call does not serve: a method OpenTelemetry does not know (or a
        tracer without a core). Same headers, span and current span as `TracerCore.begin_server`."""
        headers = scope.get("headers") or []
        request_id = None
        user_agent: str | None = None
        for name, value in headers:
            if name == self._rid_name:
                request_id = _clean_request_id(value)
            elif name == b"user-agent":
                user_agent = value[:_MAX_USER_AGENT].decode("latin-1")
        tracer = self.tracer
        if method in self._known_methods:
            span = tracer.start_span(method, parent=tracer.extract_context(headers), kind=SpanKind.SERVER)
        else:
            span = self._other_method_span(method, headers)
            method = OTHER_METHOD
        # Without an incoming id, the server span's id serves: unique per request, and it finds the trace.
        rid = request_id.encode("ascii") if request_id is not None else span.span_id.encode("ascii")
        extra = [(self._rid_name, rid), (self._tid_name, span.trace_id.encode("ascii"))]
        return span, attach_span(span), extra, user_agent, method

    def _other_method_span(self, method: Any, headers: Any) -> Any:
        """The span of a request with a method OpenTelemetry does not know: named "HTTP" as the conventions
        say, the method as sent kept (cut short) in `http.request.method_original`."""
        tracer = self.tracer
        span = tracer.start_span("HTTP", parent=tracer.extract_context(headers), kind=SpanKind.SERVER)
        span.set_attribute("http.request.method_original", str(method)[:_MAX_METHOD_ORIGINAL])
        return span

    def _route(self, route: Any) -> str:
        """The template of a route object without a usable `path_format`, decided once per route object."""
        known = self._routes.get(id(route))
        if known is not None and known[0] is route:
            return known[1]
        template = _route_of({"route": route})
        if len(self._routes) < 10_000:
            self._routes[id(route)] = (route, template)
        return template

    async def _websocket(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        ok = True
        try:
            await app(scope, receive, send)
        except BaseException:
            ok = False
            raise
        finally:
            labels = {"method": "WEBSOCKET", "status": "ws"}
            self.metrics_collector.record_request(
                _route_of(scope), "websocket", ok, (time.perf_counter() - t0) * 1000, labels
            )

    # -- the guide's form: @app.middleware("http") ---------------------------------------------

    async def handle_request(self, request: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        """Serves Starlette/FastAPI's ``@app.middleware("http")`` with the same metrics and span.

        >>> middleware = create_monitoring_middleware()
        >>> # @app.middleware("http")
        >>> # async def monitoring_middleware(request, call_next):
        >>> #     return await middleware.handle_request(request, call_next)
        """
        scope = request.scope
        if self._excluded(scope.get("path", "")):
            return await call_next(request)
        headers = scope.get("headers") or []
        request_id = _clean_request_id(request.headers.get(self._rid_name.decode(), "").encode("latin-1"))
        user_agent = request.headers.get("user-agent", "")[:_MAX_USER_AGENT] or None
        method = scope.get("method", "GET")
        tracer = self.tracer
        if method in self._known_methods:
            span = tracer.start_span(method, parent=tracer.extract_context(headers), kind=SpanKind.SERVER)
        else:
            span = self._other_method_span(method, headers)
            method = OTHER_METHOD
        exchange = _Exchange()
        exchange.middleware, exchange.scope, exchange.span, exchange.method = self, scope, span, method
        exchange.user_agent, exchange.receive, exchange.send, exchange.extra_headers = (
            user_agent,
            _never_receive,
            _never_send,
            [],
        )
        exchange.t0 = _now()
        scope[UNMONITORED_KEY] = exchange
        self._begin()
        token = attach_span(span)
        try:
            response = await call_next(request)
        except BaseException as exc:
            exchange.complete(exc)
            raise
        finally:
            detach_span(token)
        response.headers[self._rid_name.decode()] = request_id or span.span_id
        response.headers[self._tid_name.decode()] = span.trace_id
        return _MonitoredResponse(response, exchange)


class _MonitoredResponse:
    """Wraps the response `call_next` returned so it is sent through the same `_Exchange` as the
    ASGI form: timed to its last chunk, client disconnects seen, exceptions while sending recorded."""

    def __init__(self, response: Any, exchange: _Exchange) -> None:
        self._response, self._exchange = response, exchange

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = self._exchange
        exchange.receive, exchange.send = receive, send
        error: BaseException | None = None
        try:
            await self._response(scope, exchange.wrapped_receive, exchange.wrapped_send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            # As the ASGI form does once its app returns: the scope's exchange now holds the server's send and
            # receive, which hold the scope; unlinked, the request is freed by refcount.
            scope.pop(UNMONITORED_KEY, None)
            exchange.complete(error)


async def _follow_slash_redirect(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Passes an excluded request (a scrape, a probe) through; when the app only redirects `/metrics` to
    `/metrics/` (Starlette does for `app.mount("/metrics", ...)`), answers `/metrics/` in its place, so
    the README's mount serves scrapers that do not follow redirects."""
    path = scope.get("path", "")
    if scope.get("type") != "http" or path.endswith("/") or scope.get("method") not in ("GET", "HEAD"):
        await app(scope, receive, send)
        return
    redirected = False

    async def send_unless_redirect(message: Message) -> None:
        nonlocal redirected
        if message["type"] == "http.response.start" and message.get("status") in (307, 308):
            location = next((v for k, v in message.get("headers", ()) if k == b"location"), b"")
            if urlsplit(location.decode("latin-1")).path.endswith(path + "/"):
                redirected = True
        if not redirected:
            await send(message)

    await app(scope, receive, send_unless_redirect)
    if redirected:
        inner = dict(scope)
        inner["path"] = path + "/"
        if isinstance(scope.get("raw_path"), bytes):
            inner["raw_path"] = scope["raw_path"] + b"/"
        await app(inner, receive, send)


def _nothing() -> None:
    return None


def _without_span(end: Callable[..., None]) -> Callable[[str, str, bool, float, dict[str, str], Any], None]:
    """A stand-in collector's `end_request`, called with the arguments it always got (no span)."""

    def end_request(
        endpoint: str, provider: str, success: bool, latency_ms: float, labels: dict[str, str], span: Any
    ) -> None:
        end(endpoint, provider, success, latency_ms, labels)

    return end_request


async def _never_receive() -> Message:
    raise RuntimeError("not used in handle_request")


async def _never_send(message: Message) -> None:
    raise RuntimeError("not used in handle_request")


def create_monitoring_middleware(
    metrics_collector: ProductionMetricsCollector | None = None, tracer: DistributedTracer | None = None, **options: Any
) -> MonitoringMiddleware:
    """The guide's factory, for ``@app.middleware("http")``: ``await middleware.handle_request(request, call_next)``."""
    return MonitoringMiddleware(None, metrics_collector, tracer, **options)
