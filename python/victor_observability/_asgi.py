"""ASGI plumbing shared by the /metrics, probe and middleware apps: type aliases, one response, the unmonitor hook."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


#: Scope key under which MonitoringMiddleware leaves the request it is recording; an app that serves scrapes
#: or probes calls `unmonitor(scope)` so that they stay out of the request metrics wherever it is mounted.
UNMONITORED_KEY = "victor_observability.exchange"


def unmonitor(scope: Scope) -> None:
    """Takes this request out of the request metrics of a MonitoringMiddleware in front (a no-op without one)."""
    exchange = scope.get(UNMONITORED_KEY)
    if exchange is not None:
        exchange.unmonitor()


async def send_response(
    send: Send, status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes, *, head: bool = False
) -> None:
    """A whole response in two messages; a HEAD request gets the headers (Content-Length included) and no body."""
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": b"" if head else body})
