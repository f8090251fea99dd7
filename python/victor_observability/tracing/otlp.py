"""OTLP over HTTP/protobuf: finished spans as an ExportTraceServiceRequest (encoded in Rust), posted to a collector."""

from __future__ import annotations

import http.client
import logging
import os
import ssl
import urllib.request
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from victor_observability._core import OtlpHttpConnection, SpanBatch, SpanData

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
    or logs. The bodies are encoded in Rust, a batch per call with the GIL released: no opentelemetry-proto; to
    an http:// endpoint (not through a proxy) they are posted from Rust too, on one kept-alive connection.

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
        url = urlsplit(self.endpoint)
        # httpx costs about six times http.client's CPU per post (measured: 510 vs 85 us), CPU the service's
        # threads lose; it stays for endpoints reached through a proxy from the environment, which it honours.
        proxied = bool(urllib.request.getproxies()) and not urllib.request.proxy_bypass(url.hostname or "")
        self._client = httpx.Client(timeout=self.timeout) if proxied else None
        # Plain http:// (a local collector, the usual case) is encoded and posted in Rust in one call without the
        # GIL: the export's CPU beyond a null exporter's fell from 0.43 to 0.14 us per span with it (http.client's
        # Python steps per post were most of it; benches/test_bench_export.py). https:// keeps http.client.
        self._rust: OtlpHttpConnection | None = None
        self._connection: _Connection | None = None
        if not proxied and url.scheme == "http":
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            self._rust = OtlpHttpConnection(
                url.hostname or "localhost",
                url.port or 80,
                path,
                url.netloc.rpartition("@")[2],
                list(self._headers.items()),
                self.timeout,
            )
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _forget_rust_connection(ref))
        elif not proxied:
            self._connection = _Connection(url, self.timeout)

    def encode(self, spans: Sequence[SpanData]) -> bytes:
        """The serialized ExportTraceServiceRequest for `spans` (one resource per run of one service's spans)."""
        # Serialized messages concatenate into their merge: the request holding every batch's resource_spans.
        return b"".join(batch.encode_otlp(self._resource_attributes) for batch in _batches_of(spans))

    def export(self, spans: Sequence[SpanData]) -> bool:
        return self._post(self.encode(spans)) if spans else True

    def export_batch(self, batch: SpanBatch) -> bool:
        if not len(batch):
            return True
        if self._rust is not None:
            try:
                status = batch.post_otlp(self._rust, self._resource_attributes)
            except OSError as exc:
                raise RetryableExportError(f"OTLP export to {self.endpoint}: {type(exc).__name__}") from None
            return self._answer(status)
        return self._post(batch.encode_otlp(self._resource_attributes))

    def _post(self, body: bytes) -> bool:
        try:
            if self._rust is not None:
                status = self._rust.post(body)
            elif self._connection is not None:
                status = self._connection.post(body, self._headers)
            else:
                assert self._client is not None
                status = self._client.post(self.endpoint, content=body, headers=self._headers).status_code
        except (OSError, http.client.HTTPException, httpx.HTTPError) as exc:
            # Connection refused, timeouts, resets: the worker retries with backoff.
            raise RetryableExportError(f"OTLP export to {self.endpoint}: {type(exc).__name__}") from None
        return self._answer(status)

    def _answer(self, status: int) -> bool:
        if 200 <= status < 300:
            return True
        if status in RETRYABLE_STATUS:
            raise RetryableExportError(f"OTLP export to {self.endpoint}: HTTP {status}")
        logger.warning("OTLP export to %s refused: HTTP %s (not retried)", self.endpoint, status)
        return False

    def shutdown(self) -> None:
        if self._rust is not None:
            self._rust.close()
        if self._connection is not None:
            self._connection.close()
        if self._client is not None:
            self._client.close()

    def __repr__(self) -> str:
        return f"OTLPSpanExporter({self.endpoint!r}, timeout={self.timeout})"


class _Connection:
    """One kept-alive HTTP/1.1 connection to the collector, opened on first use and again after any error."""

    def __init__(self, url: Any, timeout: float) -> None:
        self._https = url.scheme == "https"
        self._host = url.hostname or "localhost"
        self._port = url.port
        self._path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        # A forked child must not write on the parent's socket: it opens its own.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_connection(ref))

    def _open(self) -> http.client.HTTPConnection:
        if self._https:
            context = ssl.create_default_context()
            try:  # the CA bundle httpx used, when present (it is an httpx dependency)
                import certifi

                context.load_verify_locations(certifi.where())
            except ImportError:  # pragma: no cover
                pass
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=context)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def post(self, body: bytes, headers: Mapping[str, str]) -> int:
        """The response status; raises OSError or HTTPException when no answer came."""
        for attempt in (1, 2):
            reused = self._conn is not None
            conn = self._conn or self._open()
            self._conn = conn
            try:
                conn.request("POST", self._path, body=body, headers=dict(headers))
                response = conn.getresponse()
                response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                # The collector closed a kept-alive connection while it sat idle: once more on a fresh one.
                if reused and attempt == 1:
                    continue
                raise
            except BaseException:
                self.close()
                raise
            if response.will_close:
                self.close()
            return response.status
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _forget_connection(ref: weakref.ReferenceType[_Connection]) -> None:
    connection = ref()
    if connection is not None:
        connection._conn = None


def _forget_rust_connection(ref: weakref.ReferenceType[OTLPSpanExporter]) -> None:
    # A forked child must not write on the parent's socket: it drops its copy and opens its own.
    exporter = ref()
    if exporter is not None and exporter._rust is not None:
        exporter._rust.close()


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
