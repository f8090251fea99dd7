"""Health probes over HTTP: a pure ASGI app and a FastAPI router serving /health/live, /ready and /startup."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from victor_observability._asgi import Receive, Scope, Send, send_response, unmonitor
from victor_observability.health.model import Detail, HealthCheckResponse, HealthCheckType, check_detail

if TYPE_CHECKING:
    from fastapi import APIRouter

    from victor_observability.health.checker import ProductionHealthChecker

__all__ = ["HealthApp", "create_health_app", "create_health_router"]

log = logging.getLogger("victor_observability.health")

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: "ietf": application/health+json (status pass/warn/fail); "dict": `HealthCheckResponse.to_dict()` as JSON.
BodyFormat = Literal["ietf", "dict"]

_ROUTES = {"/live": HealthCheckType.LIVENESS, "/ready": HealthCheckType.READINESS, "/startup": HealthCheckType.STARTUP}
_ERROR_BODY = b'{"status":"fail","output":"health check error"}'


def render(response: HealthCheckResponse, detail: Detail, body_format: BodyFormat) -> tuple[int, bytes, str]:
    """Status code, JSON body and media type of one probe response."""
    if body_format == "ietf":
        payload, media = response.to_health_json(detail), "application/health+json"
    else:
        payload, media = response.to_dict(detail), "application/json"
    # default=str: an observed value of an exotic type is shown, not allowed to break the probe.
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return response.http_status, body, media


async def _answer(checker: ProductionHealthChecker, kind: HealthCheckType, detail: Detail, fmt: BodyFormat) -> Any:
    try:
        return render(await checker.check(kind), detail, fmt)
    except Exception:
        # The checker does not raise by design; if it ever does, the probe fails instead of the server erroring.
        log.exception("health %s probe raised", kind.value)
        return 503, _ERROR_BODY, "application/json"


def _validate(detail: str, body_format: str, path_prefix: str) -> str:
    check_detail(detail)
    if body_format not in ("ietf", "dict"):
        raise ValueError(f"health body_format {body_format!r} is not 'ietf' or 'dict'")
    prefix = path_prefix.rstrip("/")
    if path_prefix and not path_prefix.startswith("/"):
        raise ValueError(f"health path_prefix {path_prefix!r} must start with '/'")
    return prefix


class HealthApp:
    """Pure ASGI app answering `{path_prefix}/live`, `/ready` and `/startup` (GET or HEAD).

    200 when healthy or degraded, 503 when failing; other paths go to `app` if given, else 404. Lifespan
    events go to `app` too, or are acknowledged. See `create_health_app`.
    """

    def __init__(
        self,
        checker: ProductionHealthChecker,
        *,
        detail: Detail = "status",
        body_format: BodyFormat = "ietf",
        path_prefix: str = "/health",
        app: ASGIApp | None = None,
    ) -> None:
        prefix = _validate(detail, body_format, path_prefix)
        self.checker = checker
        self.detail: Detail = detail
        self.body_format: BodyFormat = body_format
        self.app = app
        self._routes = {prefix + suffix: kind for suffix, kind in _ROUTES.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind_of_scope = scope["type"]
        if kind_of_scope == "http":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            kind = self._routes.get(path.rstrip("/") if len(path) > 1 else path)
            if kind is not None:
                # Probes stay out of a MonitoringMiddleware's request metrics wherever they are served.
                unmonitor(scope)
                await self._serve(kind, scope, send)
                return
        if self.app is not None:
            await self.app(scope, receive, send)
        elif kind_of_scope == "lifespan":
            await _lifespan(receive, send)
        elif kind_of_scope == "http":
            await _send(send, 404, b'{"detail":"Not Found"}', "application/json", scope["method"] == "HEAD")

    async def _serve(self, kind: HealthCheckType, scope: Scope, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _send(send, 405, b'{"detail":"Method Not Allowed"}', "application/json", False, allow=True)
            return
        status, body, media = await _answer(self.checker, kind, self.detail, self.body_format)
        await _send(send, status, body, media, method == "HEAD")


async def _send(send: Send, status: int, body: bytes, media: str, head: bool, *, allow: bool = False) -> None:
    headers = [
        (b"content-type", media.encode()),
        (b"content-length", str(len(body)).encode()),
        # Probes must see the live answer, never a proxy's copy.
        (b"cache-control", b"no-store"),
    ]
    if allow:
        headers.append((b"allow", b"GET, HEAD"))
    await send_response(send, status, headers, body, head=head)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_health_app(
    checker: ProductionHealthChecker,
    *,
    detail: Detail = "status",
    body_format: BodyFormat = "ietf",
    path_prefix: str = "/health",
    app: ASGIApp | None = None,
) -> HealthApp:
    """An ASGI app serving the three probes; wrap your app with `app=` to serve both from one server.

    `detail="status"` (the default) reveals only pass/warn/fail; "checks" adds each check's status; "full"
    adds observed values, output text and timings, which may describe internals: keep it off public ports.

    >>> from victor_observability.health.checker import create_production_health_checker
    >>> app = create_health_app(create_production_health_checker(), detail="checks")
    >>> sorted(app._routes)
    ['/health/live', '/health/ready', '/health/startup']
    """
    return HealthApp(checker, detail=detail, body_format=body_format, path_prefix=path_prefix, app=app)


def create_health_router(
    checker: ProductionHealthChecker,
    *,
    detail: Detail = "status",
    body_format: BodyFormat = "ietf",
    prefix: str = "/health",
    include_in_schema: bool = False,
) -> APIRouter:
    """A FastAPI `APIRouter` with GET `{prefix}/live`, `/ready` and `/startup` (FastAPI is imported here only).

    >>> from fastapi import FastAPI
    >>> from victor_observability.health.checker import create_production_health_checker
    >>> api = FastAPI()
    >>> api.include_router(create_health_router(create_production_health_checker()))
    """
    from fastapi import APIRouter
    from starlette.requests import Request
    from starlette.responses import Response

    clean = _validate(detail, body_format, prefix)
    router = APIRouter(prefix=clean)

    def endpoint(kind: HealthCheckType) -> Callable[[Request], Awaitable[Response]]:
        async def probe(request: Request) -> Response:
            unmonitor(request.scope)
            status, body, media = await _answer(checker, kind, detail, body_format)
            return Response(body, status_code=status, media_type=media, headers={"cache-control": "no-store"})

        probe.__name__ = f"health_{kind.value}"
        # The class itself, not the postponed string: FastAPI resolves names in this module's globals.
        probe.__annotations__["request"] = Request
        return probe

    for suffix, kind in _ROUTES.items():
        router.add_api_route(
            suffix,
            endpoint(kind),
            methods=["GET"],
            response_class=Response,
            include_in_schema=include_in_schema,
            name=f"health_{kind.value}",
        )
    return router
