"""instrument_httpx against a real HTTP server on 127.0.0.1: CLIENT spans, injected context, errors, redaction."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import victor_observability
from victor_observability import ALWAYS_OFF, DistributedTracer, SpanContext, instrument_httpx
from victor_observability.tracing import AsyncTracedTransport, TracedTransport, uninstrument_httpx


class _Handler(BaseHTTPRequestHandler):
    """Answers /status/<code> with that code, anything else with 200; remembers each request's headers."""

    seen: list[dict[str, str]]

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        code = int(self.path.split("/")[2].split("?")[0]) if self.path.startswith("/status/") else 200
        self.send_response(code)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    handler = type("Handler", (_Handler,), {"seen": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def tracer() -> Iterator[DistributedTracer]:
    t = DistributedTracer("gateway", flush_on_exit=False)
    yield t
    t.shutdown()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_get_is_one_client_span_whose_context_reaches_the_server(
    server: tuple[str, list[dict[str, str]]], tracer: DistributedTracer
) -> None:
    base, seen = server
    port = int(base.rsplit(":", 1)[1])
    with instrument_httpx(httpx.Client(trust_env=False), tracer) as client:
        assert client.get(f"{base}/v1/complete").status_code == 200
    (span,) = tracer.finished_spans()
    assert (span.name, span.kind, span.status, span.parent_span_id) == ("GET", "client", "unset", None)
    assert span.attributes == {
        "http.request.method": "GET",
        "url.full": f"{base}/v1/complete",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
    }
    assert seen[0]["traceparent"] == f"00-{span.trace_id}-{span.span_id}-03"  # sampled, random trace id


def test_an_async_request_is_a_child_of_the_current_span_and_5xx_is_an_error(
    server: tuple[str, list[dict[str, str]]], tracer: DistributedTracer
) -> None:
    base, seen = server

    async def call() -> int:
        async with instrument_httpx(httpx.AsyncClient(trust_env=False), tracer) as client:
            with tracer.start_span("chat") as parent:
                parent.set_baggage_item("tenant", "acme")
                response = await client.post(f"{base}/status/503", json={"prompt": "hi"})
        return response.status_code

    assert asyncio.run(call()) == 503
    chat, call_span = sorted(tracer.finished_spans(), key=lambda s: s.name != "chat")
    assert (call_span.name, call_span.parent_span_id, call_span.trace_id) == ("POST", chat.span_id, chat.trace_id)
    assert call_span.status == "error"
    assert call_span.attributes["error.type"] == "503"
    assert call_span.attributes["http.response.status_code"] == 503
    assert seen[0]["traceparent"] == f"00-{chat.trace_id}-{call_span.span_id}-03"
    assert seen[0]["baggage"] == "tenant=acme"


def test_a_4xx_marks_the_client_span_failed(
    server: tuple[str, list[dict[str, str]]], tracer: DistributedTracer
) -> None:
    base, _ = server
    with instrument_httpx(httpx.Client(trust_env=False), tracer) as client:
        assert client.get(f"{base}/status/429").status_code == 429
    (span,) = tracer.finished_spans()
    assert (span.status, span.attributes["error.type"]) == ("error", "429")


def test_a_transport_error_ends_the_span_failed_and_still_raises(tracer: DistributedTracer) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1/complete"
    with instrument_httpx(httpx.Client(trust_env=False), tracer) as client, pytest.raises(httpx.ConnectError):
        client.get(url)
    (span,) = tracer.finished_spans()
    assert span.status == "error"
    assert span.attributes["error.type"] == "ConnectError"
    assert "http.response.status_code" not in span.attributes
    assert [e["name"] for e in span.events] == ["exception"]


def test_url_full_carries_no_credentials_and_no_query_tokens(
    server: tuple[str, list[dict[str, str]]], tracer: DistributedTracer
) -> None:
    base, seen = server
    secret_base = base.replace("http://", "http://alice:s3cret@")
    with instrument_httpx(httpx.Client(trust_env=False), tracer) as client:
        client.get(f"{secret_base}/search", params={"q": "rust", "access_token": "tok-123", "Signature": "abc"})
        client.get(f"{base}/page", params={"page": "2"})
    first, second = tracer.finished_spans()
    assert first.attributes["url.full"] == (
        base.replace("http://", "http://REDACTED:REDACTED@") + "/search?q=rust&access_token=REDACTED&Signature=REDACTED"
    )
    assert second.attributes["url.full"] == f"{base}/page?page=2"
    exported = repr([s.to_dict() for s in tracer.finished_spans()])
    assert "s3cret" not in exported and "tok-123" not in exported and "alice" not in exported
    assert "authorization" in seen[0]  # the request itself is untouched: the credentials still went out


def test_an_unsampled_request_records_nothing_but_propagates_sampled_0(
    server: tuple[str, list[dict[str, str]]],
) -> None:
    base, seen = server
    tracer = DistributedTracer("gateway", sampler=ALWAYS_OFF, flush_on_exit=False)
    with instrument_httpx(httpx.Client(trust_env=False), tracer) as client:
        client.get(f"{base}/a")
        incoming = SpanContext("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", sampled=False, is_remote=True)
        with tracer.start_span("handle", parent=incoming):
            client.get(f"{base}/b")
    assert tracer.finished_spans() == []
    assert seen[0]["traceparent"].endswith("-02")  # random, not sampled
    version, trace_id, _, flags = seen[1]["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", "0af7651916cd43dd8448eb211c80319c", "00")
    tracer.shutdown()


def test_instrumenting_wraps_every_transport_once_and_undoes(tracer: DistributedTracer) -> None:
    mounted = httpx.HTTPTransport()
    client = httpx.Client(mounts={"http://backend": mounted}, trust_env=False)
    assert instrument_httpx(instrument_httpx(client, tracer), tracer) is client
    assert isinstance(client._transport, TracedTransport)
    assert isinstance(client._transport.transport, httpx.HTTPTransport)
    (wrapped,) = client._mounts.values()
    assert isinstance(wrapped, TracedTransport) and wrapped.transport is mounted
    uninstrument_httpx(client)
    assert isinstance(client._transport, httpx.HTTPTransport)
    assert list(client._mounts.values()) == [mounted]
    client.close()
    async_client = instrument_httpx(httpx.AsyncClient(), tracer)
    assert isinstance(async_client._transport, AsyncTracedTransport)
    asyncio.run(async_client.aclose())


def test_instrumenting_something_else_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"httpx\.Client or httpx\.AsyncClient"):
        instrument_httpx(object())  # type: ignore[type-var]


def test_the_top_level_package_exports_it() -> None:
    assert victor_observability.instrument_httpx is instrument_httpx


def test_a_tracer_that_fails_never_fails_the_call(
    server: tuple[str, list[dict[str, str]]], caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def start_span(self, *args: Any) -> Any:
            raise RuntimeError("tracer is broken")

        def inject_context(self, *args: Any) -> Any:
            raise RuntimeError("tracer is broken")

    base, seen = server
    with instrument_httpx(httpx.Client(trust_env=False), Broken()) as client:  # type: ignore[arg-type]
        assert client.get(f"{base}/ok").status_code == 200
    assert "traceparent" not in seen[0]
    assert "could not start a span" in caplog.text
