"""ASGI plumbing shared by every ASGI app here (/metrics, the probes, the middleware): type aliases, one response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_response(
    send: Send, status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes, *, head: bool = False
) -> None:
    """A whole response in two messages; a HEAD request gets the headers (Content-Length included) and no body."""
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": b"" if head else body})
