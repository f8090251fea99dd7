"""HTTP clients for the load generator: httpx (the default), and a lean keep-alive HTTP/1.1 client for the bench.

>>> import asyncio
>>> asyncio.run(RawHttpClient("http://127.0.0.1:9").aclose())
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx


class TransportError(Exception):
    """No response: connection refused or reset, timeout, malformed reply."""


class JsonPoster(Protocol):
    async def post_json(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]: ...
    async def aclose(self) -> None: ...


class HttpxClient:
    """POSTs JSON with httpx's pooled AsyncClient."""

    def __init__(self, base_url: str, max_connections: int, timeout: float) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits, trust_env=False)

    async def post_json(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        try:
            response = await self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise TransportError(str(exc)) from exc
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self._client.aclose()


class RawHttpClient:
    """POSTs JSON over keep-alive HTTP/1.1 connections on asyncio streams, reading Content-Length bodies.

    httpx spends more CPU per request than the demo service does; this client spends a tenth of that, so a bench
    on a small machine measures the service rather than its client. It handles what uvicorn sends back to these
    requests, nothing more (no chunked bodies, no redirects, no TLS).
    """

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"RawHttpClient needs an http://host:port URL, got {base_url!r}")
        self._host, self._port = parts.hostname, parts.port
        self._timeout = timeout
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._open: set[asyncio.StreamWriter] = set()

    async def post_json(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._exchange(path, json.dumps(body).encode()), self._timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError) as exc:
            raise TransportError(repr(exc)) from exc

    async def _exchange(self, path: str, data: bytes) -> tuple[int, bytes]:
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self._host, self._port)
            self._open.add(writer)
        try:
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n".encode("latin-1")
                + data
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split(" ", 2)[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
            if "content-length" not in headers:
                raise OSError(f"response without Content-Length: {status_line}")
            content = await reader.readexactly(int(headers["content-length"]))
        except BaseException:
            self._discard(writer)
            raise
        if headers.get("connection", "").lower() == "close":
            self._discard(writer)
        else:
            self._idle.append((reader, writer))
        return status, content

    def _discard(self, writer: asyncio.StreamWriter) -> None:
        self._open.discard(writer)
        writer.close()

    async def aclose(self) -> None:
        writers, self._open, self._idle = list(self._open), set(), []
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
