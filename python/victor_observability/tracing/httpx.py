"""Traced httpx clients: a CLIENT span per outgoing request, its trace context injected into the request headers.

>>> import httpx
>>> from victor_observability import DistributedTracer, instrument_httpx
>>> tracer = DistributedTracer("gateway", flush_on_exit=False)
>>> seen = []
>>> echo = httpx.MockTransport(lambda request: seen.append(request.headers["traceparent"]) or httpx.Response(200))
>>> with instrument_httpx(httpx.Client(transport=echo), tracer) as client:
...     _ = client.get("http://backend:8001/v1/complete?token=secret")
>>> (span,) = tracer.finished_spans()
>>> span.name, span.kind, span.attributes["url.full"], span.attributes["http.response.status_code"]
('GET', 'client', 'http://backend:8001/v1/complete?token=REDACTED', 200)
>>> seen[0].split("-")[1:3] == [span.trace_id, span.span_id]  # the server's parent is the CLIENT span
True
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode

import httpx

from victor_observability.tracing.tracer import AnySpan, DistributedTracer, get_global_tracer

__all__ = ["AsyncTracedTransport", "TracedTransport", "instrument_httpx", "uninstrument_httpx"]

C = TypeVar("C", httpx.Client, httpx.AsyncClient)
log = logging.getLogger("victor_observability.tracing")

# OpenTelemetry's HTTP semantic conventions: a method outside this set is reported as "_OTHER" (span name "HTTP"),
# so an odd client cannot mint span names at will.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Query parameters whose values are credentials: the conventions' list (signed cloud URLs) and common token names.
SENSITIVE_QUERY_KEYS = frozenset(
    {
        "awsaccesskeyid",
        "signature",
        "sig",
        "x-goog-signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "api-key",
        "key",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "auth",
        "code",
    }
)
REDACTED = "REDACTED"


def _full_url(url: httpx.URL) -> str:
    """url.full as the conventions want it: user and password replaced by REDACTED, credential query values too."""
    if not url.userinfo and not url.query:
        return str(url)
    if url.userinfo:
        url = url.copy_with(username=REDACTED, password=REDACTED)
    if url.query:
        pairs = parse_qsl(url.query.decode("ascii", "replace"), keep_blank_values=True)
        if any(k.lower() in SENSITIVE_QUERY_KEYS for k, _ in pairs):
            clean = [(k, REDACTED if k.lower() in SENSITIVE_QUERY_KEYS else v) for k, v in pairs]
            url = url.copy_with(query=urlencode(clean, quote_via=quote, safe="").encode("ascii"))
    return str(url)


class _Tracing:
    """What both transports do around the wrapped call: start the span and inject, then finish it."""

    __slots__ = ("_inject", "_start", "tracer")

    def __init__(self, tracer: DistributedTracer | None) -> None:
        self.tracer = tracer if tracer is not None else get_global_tracer()
        # Bound once: each is one call into Rust per request.
        self._start = self.tracer.start_span
        self._inject = self.tracer.inject_context

    def begin(self, request: httpx.Request) -> AnySpan | None:
        """The request's CLIENT span, its context in the headers; None (the call goes out untraced) if tracing
        itself fails: the instrumentation never fails a call."""
        try:
            return self._begin(request)
        except Exception:
            log.exception("httpx instrumentation: could not start a span for a %s request", request.method)
            return None

    def _begin(self, request: httpx.Request) -> AnySpan:
        method = request.method
        known = method in _KNOWN_METHODS
        span = self._start(method if known else "HTTP", None, "client")
        if span.is_recording():
            # Only a sampled span pays for the URL: an unsampled request costs the span and the header.
            url = request.url
            attributes: dict[str, Any] = {
                "http.request.method": method if known else "_OTHER",
                "url.full": _full_url(url),
                "server.address": url.host,
                "server.port": url.port or _DEFAULT_PORTS.get(url.scheme, 80),
            }
            if not known:
                attributes["http.request.method_original"] = method
            span.set_attributes(attributes)
        # Sampled or not, the next service learns the trace and the decision (the sampled flag).
        self._inject(request.headers, span)
        return span

    @staticmethod
    def end(span: AnySpan | None, status: int) -> None:
        if span is None:
            return
        if status >= 400:
            # A server leaves its span unset on 4xx (the caller's mistake); the conventions have the CLIENT span,
            # whose call did fail, marked as an error for 4xx and 5xx alike.
            span.set_attributes({"http.response.status_code": status, "error.type": str(status)})
            span.set_status("error")
        else:
            span.set_attribute("http.response.status_code", status)
        span.end()

    @staticmethod
    def fail(span: AnySpan | None, exc: BaseException) -> None:
        if span is None:
            return
        span.set_attribute("error.type", type(exc).__qualname__)
        span.record_exception(exc)
        span.set_status("error", type(exc).__qualname__)
        span.end()


class TracedTransport(httpx.BaseTransport):
    """Wraps a sync httpx transport: a CLIENT span per request, ``traceparent`` (and tracestate, baggage) injected.

    Pass it as ``httpx.Client(transport=TracedTransport(httpx.HTTPTransport(), tracer))``, or let
    `instrument_httpx` wrap an existing client's transports. The span ends when the response headers arrive.

    >>> import httpx
    >>> transport = TracedTransport(httpx.MockTransport(lambda request: httpx.Response(204)))
    >>> httpx.Client(transport=transport).get("http://127.0.0.1:9/").status_code
    204
    """

    def __init__(self, transport: httpx.BaseTransport, tracer: DistributedTracer | None = None) -> None:
        self.transport = transport
        self._tracing = _Tracing(tracer)

    @property
    def tracer(self) -> DistributedTracer:
        return self._tracing.tracer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        tracing = self._tracing
        span = tracing.begin(request)
        try:
            response = self.transport.handle_request(request)
        except BaseException as exc:
            tracing.fail(span, exc)
            raise
        tracing.end(span, response.status_code)
        return response

    def close(self) -> None:
        self.transport.close()


class AsyncTracedTransport(httpx.AsyncBaseTransport):
    """Wraps an async httpx transport, as `TracedTransport` does a sync one.

    >>> import asyncio, httpx
    >>> transport = AsyncTracedTransport(httpx.MockTransport(lambda request: httpx.Response(204)))
    >>> async def call() -> int:
    ...     async with httpx.AsyncClient(transport=transport) as client:
    ...         return (await client.get("http://127.0.0.1:9/")).status_code
    >>> asyncio.run(call())
    204
    """

    def __init__(self, transport: httpx.AsyncBaseTransport, tracer: DistributedTracer | None = None) -> None:
        self.transport = transport
        self._tracing = _Tracing(tracer)

    @property
    def tracer(self) -> DistributedTracer:
        return self._tracing.tracer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        tracing = self._tracing
        span = tracing.begin(request)
        try:
            response = await self.transport.handle_async_request(request)
        except BaseException as exc:
            tracing.fail(span, exc)
            raise
        tracing.end(span, response.status_code)
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()


def instrument_httpx(client: C, tracer: DistributedTracer | None = None) -> C:
    """Traces every request ``client`` (an ``httpx.Client`` or ``httpx.AsyncClient``) sends, with ``tracer`` (default:
    the global tracer), by wrapping its transports, mounted ones included; returns the client. Idempotent.

    >>> import httpx
    >>> client = instrument_httpx(httpx.Client())
    >>> type(client._transport).__name__
    'TracedTransport'
    >>> client.close()
    """
    wrap: Any
    if isinstance(client, httpx.AsyncClient):
        wrap = AsyncTracedTransport
    elif isinstance(client, httpx.Client):
        wrap = TracedTransport
    else:
        raise ValueError(f"instrument_httpx: need an httpx.Client or httpx.AsyncClient, not {type(client).__name__}")

    def traced(transport: Any) -> Any:
        if transport is None or isinstance(transport, (TracedTransport, AsyncTracedTransport)):
            return transport
        return wrap(transport, tracer)

    # The same private attributes OpenTelemetry's httpx instrumentation replaces: httpx has no public hook that
    # sees transport errors, and event hooks cannot carry a span from request to response.
    client._transport = traced(client._transport)
    client._mounts = {pattern: traced(t) for pattern, t in client._mounts.items()}
    return client


def uninstrument_httpx(client: C) -> C:
    """Undoes `instrument_httpx`: the client's transports are its own again.

    >>> import httpx
    >>> client = uninstrument_httpx(instrument_httpx(httpx.Client()))
    >>> type(client._transport).__name__
    'HTTPTransport'
    >>> client.close()
    """

    def plain(transport: Any) -> Any:
        return transport.transport if isinstance(transport, (TracedTransport, AsyncTracedTransport)) else transport

    client._transport = plain(client._transport)
    client._mounts = {pattern: plain(t) for pattern, t in client._mounts.items()}
    return client
