"""Serving /metrics: an ASGI app and a standalone threaded HTTP server, with OpenMetrics and gzip."""

from __future__ import annotations

import asyncio
import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from victor_observability import _core
from victor_observability._asgi import ASGIApp, Receive, Scope, Send, send_response, unmonitor
from victor_observability.metrics.instruments import REGISTRY, Registry


class HasRegistry(Protocol):
    registry: Registry


def _registry_of(source: Registry | HasRegistry | None) -> Registry:
    if source is None:
        return REGISTRY
    if isinstance(source, Registry):
        return source
    return source.registry


def render(registry: Registry, accept: str, accept_encoding: str) -> tuple[bytes, list[tuple[str, str]]]:
    """Body and headers for a scrape: the format its Accept asks for, gzipped when its Accept-Encoding
    wants gzip (both weighed by q-value, as RFC 9110 says)."""
    body, content_type = registry.generate(accept)
    headers = [("Content-Type", content_type), ("Vary", "Accept, Accept-Encoding")]
    if _core.wants_gzip(accept_encoding):
        body = gzip.compress(body, compresslevel=1)
        headers.append(("Content-Encoding", "gzip"))
    headers.append(("Content-Length", str(len(body))))
    return body, headers


def make_metrics_app(source: Registry | HasRegistry | None = None) -> ASGIApp:
    """An ASGI app that answers every HTTP request with the registry's exposition.

    Scrapes stay out of a MonitoringMiddleware's request metrics wherever the app is mounted. The
    exposition is encoded and compressed on a worker thread: a large one would stall the event loop.

    >>> from victor_observability import create_production_collector
    >>> app = make_metrics_app(create_production_collector(collect_system_metrics=False))
    """
    registry = _registry_of(source)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        unmonitor(scope)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        loop = asyncio.get_running_loop()
        body, out = await loop.run_in_executor(
            None, render, registry, headers.get("accept", ""), headers.get("accept-encoding", "")
        )
        encoded = [(k.lower().encode(), v.encode()) for k, v in out]
        await send_response(send, 200, encoded, body, head=scope.get("method") == "HEAD")

    return app


class _Handler(BaseHTTPRequestHandler):
    registry: Registry

    def do_GET(self) -> None:
        body, headers = render(self.registry, self.headers.get("Accept", ""), self.headers.get("Accept-Encoding", ""))
        self.send_response(200)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # HEAD answers as GET does, Content-Length included, without the body (RFC 9110 section 9.3.2).
    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        # Scrapes every few seconds would flood stderr.
        return


def start_http_server(
    port: int, addr: str = "127.0.0.1", registry: Registry | HasRegistry | None = None
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serves the exposition on ``addr:port`` from a daemon thread, like prometheus-client's.

    Returns the server and its thread; ``server.shutdown()`` stops it. Port 0 picks a free port
    (``server.server_port``).
    """
    handler = type("MetricsHandler", (_Handler,), {"registry": _registry_of(registry)})
    server = ThreadingHTTPServer((addr, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="victor-metrics-http", daemon=True)
    thread.start()
    return server, thread
