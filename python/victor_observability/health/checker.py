"""Kubernetes-style health probes: ProductionHealthChecker with liveness, readiness and startup checks."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from victor_observability.health._metrics import HealthMetrics, NoHealthMetrics, registry_health_metrics
from victor_observability.health._runner import Check, SyncRunner, run_checks
from victor_observability.health.model import (
    CheckResult,
    Detail,
    HealthCheckResponse,
    HealthCheckType,
    HealthStatus,
    ProbeStatus,
    aggregate,
    probe_status,
)

__all__ = [
    "CheckResult",
    "Detail",
    "HealthCheckResponse",
    "HealthCheckType",
    "HealthMetrics",
    "HealthStatus",
    "ProbeStatus",
    "ProductionHealthChecker",
    "create_production_health_checker",
]

log = logging.getLogger("victor_observability.health")

SyncCheck = Callable[[], Any]
AsyncCheck = Callable[[], Awaitable[Any]]


class ProductionHealthChecker:
    """Liveness, readiness and startup probes over registered checks.

    A check returns True/False (a lambda comparing a number, as in the guide), None (it did not raise: pass),
    a bare number (passes, reported as observedValue), a `CheckResult` or `HealthStatus` (pass, warn or fail
    with value and output), or the strings "pass"/"warn"/"fail". A check that raises or outlives its timeout
    fails with a one-line reason. Checks of one probe run concurrently; sync checks run on daemon worker
    threads, so a blocking check never stalls the event loop. With `cache_ttl > 0` a probe's response is reused
    for that many seconds; concurrent probes of the same kind share one evaluation either way.

    Startup completes once every startup check passes (and then stays complete), or fails for good once
    `startup_timeout` seconds have passed without success (until `reset_startup()`). Readiness fails until
    startup has completed, evaluating the startup checks itself so a Deployment without a startupProbe still
    becomes ready. Liveness runs only the liveness checks.

    >>> import asyncio
    >>> checker = ProductionHealthChecker(service_version="2.0.0")
    >>> checker.add_liveness_check("process", lambda: True)
    >>> checker.add_readiness_check("database", lambda: 42 < 100)
    >>> asyncio.run(checker.readiness()).to_dict()["status"]
    'ready'
    """

    def __init__(
        self,
        startup_timeout: float = 60.0,
        service_version: str = "1.0.0",
        *,
        check_timeout: float = 1.0,
        cache_ttl: float = 0.0,
        service_id: str | None = None,
        metrics: HealthMetrics | None = None,
        max_sync_workers: int = 8,
    ) -> None:
        _require_positive("startup_timeout", startup_timeout, allow_inf=True)
        _require_positive("check_timeout", check_timeout)
        if not (isinstance(cache_ttl, (int, float)) and cache_ttl >= 0 and math.isfinite(cache_ttl)):
            raise ValueError(f"health cache_ttl must be a finite number >= 0, got {cache_ttl!r}")
        if not (isinstance(max_sync_workers, int) and max_sync_workers >= 1):
            raise ValueError(f"health max_sync_workers must be an int >= 1, got {max_sync_workers!r}")
        self.startup_timeout = float(startup_timeout)
        self.service_version = service_version
        self.service_id = service_id
        self.check_timeout = float(check_timeout)
        self.cache_ttl = float(cache_ttl)
        self._metrics: HealthMetrics = metrics if metrics is not None else NoHealthMetrics()
        self._recording = not isinstance(self._metrics, NoHealthMetrics)
        # Liveness has threads of its own: readiness and startup checks that hang on a dependency must never
        # make liveness wait (and Kubernetes restart a healthy pod). Each pool holds at most max_sync_workers.
        self._runner = SyncRunner(max_sync_workers, "health")
        self._liveness_runner = SyncRunner(max_sync_workers, "liveness")
        self._runners = {
            HealthCheckType.LIVENESS: self._liveness_runner,
            HealthCheckType.READINESS: self._runner,
            HealthCheckType.STARTUP: self._runner,
        }
        self._checks: dict[HealthCheckType, list[Check]] = {kind: [] for kind in HealthCheckType}
        self._started = time.monotonic()
        self.start_time = time.time()
        self._startup_deadline = self._started + self.startup_timeout
        self._startup_complete = False
        self._startup_timed_out = False
        self._startup_result: HealthCheckResponse | None = None
        self._cache: dict[HealthCheckType, tuple[float, HealthCheckResponse]] = {}
        self._inflight: dict[
            HealthCheckType, tuple[asyncio.AbstractEventLoop, list[asyncio.Future[HealthCheckResponse | None]]]
        ] = {}
        watch = getattr(self._metrics, "watch_hung", None)  # optional: a HealthMetrics of old may lack it
        if watch is not None:
            ref = weakref.ref(self)
            watch(lambda: None if (c := ref()) is None else c.hung_checks())

    # -- registration -------------------------------------------------------------------------------------------

    def add_check(
        self,
        kind: HealthCheckType | str,
        name: str,
        check: SyncCheck | AsyncCheck,
        *,
        timeout: float | None = None,
        critical: bool = True,
        component_type: str | None = None,
        is_async: bool | None = None,
    ) -> None:
        """Register `check` for probe `kind`; `critical=False` turns its failure into a warning for the probe.

        `is_async=None` detects coroutine functions; sync checks run on a worker thread.

        >>> ProductionHealthChecker().add_check("readiness", "cache", lambda: True, timeout=0.5)
        """
        try:
            kind = HealthCheckType(kind)
        except ValueError:
            raise ValueError(f"health check {name!r}: unknown probe {kind!r}") from None
        if not isinstance(name, str) or not name:
            raise ValueError(f"health check name must be a non-empty string, got {name!r}")
        if not callable(check):
            raise ValueError(f"health check {name!r} is not callable: {check!r}")
        checks = self._checks[kind]
        replaced = [i for i, c in enumerate(checks) if c.name == name]
        if replaced:
            # The pure-Python checker keys checks by name, so registering a name again replaces the check.
            log.debug("%s check %r registered again: replacing it", kind.value, name)
            del checks[replaced[0]]
        if timeout is None:
            timeout = self.check_timeout
        _require_positive(f"health check {name!r} timeout", timeout)
        if is_async is None:
            # An instance with an async __call__ is an async check too.
            is_async = inspect.iscoroutinefunction(check) or inspect.iscoroutinefunction(type(check).__call__)
        self._checks[kind].append(
            Check(name, check, bool(is_async), float(timeout), bool(critical), component_type or "component")
        )
        self._cache.pop(kind, None)

    def add_liveness_check(self, name: str, check: SyncCheck, **options: Any) -> None:
        """Is the process alive? Keep it free of external dependencies.

        >>> ProductionHealthChecker().add_liveness_check("process", lambda: True)
        """
        self.add_check(HealthCheckType.LIVENESS, name, check, **options)

    def add_readiness_check(self, name: str, check: SyncCheck, **options: Any) -> None:
        """Can it take traffic? Dependencies belong here.

        >>> ProductionHealthChecker().add_readiness_check("database", lambda: 12.0 < 100)
        """
        self.add_check(HealthCheckType.READINESS, name, check, **options)

    def add_startup_check(self, name: str, check: SyncCheck, **options: Any) -> None:
        """Has it finished starting (models loaded, caches warm)?

        >>> ProductionHealthChecker().add_startup_check("models", lambda: True)
        """
        self.add_check(HealthCheckType.STARTUP, name, check, **options)

    def add_async_liveness_check(self, name: str, check: AsyncCheck, **options: Any) -> None:
        """Async liveness check, awaited on the event loop.

        >>> async def memory_ok() -> bool: return True
        >>> ProductionHealthChecker().add_async_liveness_check("memory", memory_ok)
        """
        self.add_check(HealthCheckType.LIVENESS, name, check, is_async=True, **options)

    def add_async_readiness_check(self, name: str, check: AsyncCheck, **options: Any) -> None:
        """Async readiness check, awaited on the event loop.

        >>> async def db_ok() -> bool: return True
        >>> ProductionHealthChecker().add_async_readiness_check("database", db_ok, timeout=2.0)
        """
        self.add_check(HealthCheckType.READINESS, name, check, is_async=True, **options)

    def add_async_startup_check(self, name: str, check: AsyncCheck, **options: Any) -> None:
        """Async startup check, awaited on the event loop.

        >>> async def warm() -> bool: return True
        >>> ProductionHealthChecker().add_async_startup_check("warmup", warm)
        """
        self.add_check(HealthCheckType.STARTUP, name, check, is_async=True, **options)

    # -- state --------------------------------------------------------------------------------------------------

    @property
    def uptime_seconds(self) -> float:
        """Seconds since the checker was created."""
        return time.monotonic() - self._started

    @property
    def is_startup_complete(self) -> bool:
        """True once startup has succeeded (or `mark_startup_complete()` was called)."""
        return self._startup_complete

    @property
    def startup_completed(self) -> bool:
        """The pure-Python checker's name for `is_startup_complete`; assigning True or False marks or resets it."""
        return self._startup_complete

    @startup_completed.setter
    def startup_completed(self, done: bool) -> None:
        if done:
            self.mark_startup_complete()
        else:
            self.reset_startup()

    def mark_startup_complete(self) -> None:
        """Declare startup done without waiting for the startup checks."""
        self._startup_complete = True
        self._startup_timed_out = False
        self._startup_result = None
        self._cache.clear()

    def reset_startup(self) -> None:
        """Start over, as the pure-Python checker does: startup incomplete again, uptime and the `startup_timeout`
        clock restart now."""
        self._started = time.monotonic()
        self.start_time = time.time()
        self._startup_complete = False
        self._startup_timed_out = False
        self._startup_result = None
        self._startup_deadline = time.monotonic() + self.startup_timeout
        self._cache.clear()

    def hung_checks(self) -> dict[str, int]:
        """Sync checks still running past their timeout, per thread pool: "liveness", and "readiness" (which
        readiness and startup checks share). Each holds one worker thread; a pool never exceeds
        `max_sync_workers` threads. Exported as `<prefix>_health_checks_hung{pool}` with metrics on.

        >>> ProductionHealthChecker().hung_checks()
        {'liveness': 0, 'readiness': 0}
        """
        return {"liveness": self._liveness_runner.hung(), "readiness": self._runner.hung()}

    # -- probes -------------------------------------------------------------------------------------------------

    def liveness(self) -> Coroutine[Any, Any, HealthCheckResponse]:
        """Run the liveness checks.

        >>> import asyncio
        >>> asyncio.run(ProductionHealthChecker().liveness()).is_healthy
        True
        """
        return self._probe(HealthCheckType.LIVENESS)

    def readiness(self) -> Coroutine[Any, Any, HealthCheckResponse]:
        """Run the readiness checks, failing while startup has not completed."""
        return self._probe(HealthCheckType.READINESS)

    def startup(self) -> Coroutine[Any, Any, HealthCheckResponse]:
        """Run the startup checks until they all pass once; fail for good after `startup_timeout`."""
        return self._probe(HealthCheckType.STARTUP)

    def check(self, kind: HealthCheckType | str) -> Coroutine[Any, Any, HealthCheckResponse]:
        """Run the probe named `kind` ("liveness", "readiness" or "startup")."""
        return self._probe(HealthCheckType(kind))

    async def _probe(self, kind: HealthCheckType) -> HealthCheckResponse:
        cached = self._cache.get(kind)
        if cached is not None and time.monotonic() < cached[0]:
            return cached[1]
        loop = asyncio.get_running_loop()
        flight = self._inflight.get(kind)
        if flight is not None and flight[0] is loop:
            # Someone is evaluating this probe right now: share the answer instead of hitting the checks twice.
            waiter: asyncio.Future[HealthCheckResponse | None] = loop.create_future()
            flight[1].append(waiter)
            shared = await waiter
            if shared is not None:
                return shared
        # Followers are only allocated when there are any: the lone prober pays for a tuple, not a future.
        mine: tuple[asyncio.AbstractEventLoop, list[asyncio.Future[HealthCheckResponse | None]]] = (loop, [])
        self._inflight[kind] = mine
        response: HealthCheckResponse | None = None
        try:
            if kind is HealthCheckType.LIVENESS or (kind is HealthCheckType.READINESS and self._startup_complete):
                # The common path, kept to one coroutine frame besides run_checks: probes are measured in benches/.
                response = self._finish(kind, await run_checks(self._checks[kind], self._runners[kind]))
            else:
                response = await self._evaluate(kind)
            if self.cache_ttl > 0:
                self._cache[kind] = (time.monotonic() + self.cache_ttl, response)
            return response
        finally:
            if self._inflight.get(kind) is mine:
                del self._inflight[kind]
            for waiter in mine[1]:
                if not waiter.done():  # a follower that was cancelled meanwhile
                    waiter.set_result(response)  # None (we were cancelled) tells followers to evaluate themselves

    async def _evaluate(self, kind: HealthCheckType) -> HealthCheckResponse:
        if kind is HealthCheckType.STARTUP:
            return await self._evaluate_startup()
        if kind is HealthCheckType.READINESS and not self._startup_complete:
            startup = await self._evaluate_startup()
            if not startup.is_healthy:
                if self._startup_timed_out:
                    reason = f"startup did not complete within {self.startup_timeout:g}s"
                else:
                    failing = [n for n, r in startup.checks.items() if not r.is_healthy]
                    reason = "startup not complete" + (f": {', '.join(failing)} failing" if failing else "")
                gate = CheckResult(HealthStatus.UNHEALTHY, output=reason, component_type="system", time=time.time())
                self._metrics.record(kind.value, "startup", gate.status, 0.0)
                return self._response(kind, HealthStatus.UNHEALTHY, {"startup": gate})
        return self._finish(kind, await run_checks(self._checks[kind], self._runner))

    async def _evaluate_startup(self) -> HealthCheckResponse:
        kind = HealthCheckType.STARTUP
        if self._startup_complete:
            # Fresh timestamp and uptime, the checks of the run that completed startup.
            done = self._startup_result
            return self._response(kind, HealthStatus.HEALTHY, done.checks if done is not None else {})
        if self._startup_timed_out:
            return self._timed_out_response()
        response = self._finish(kind, await run_checks(self._checks[kind], self._runner))
        if response.is_healthy:
            self._startup_complete = True
            self._startup_result = response
            self._cache.pop(HealthCheckType.READINESS, None)
            if self._checks[kind]:
                log.info("startup complete after %.1fs", self.uptime_seconds)
        elif time.monotonic() >= self._startup_deadline:
            self._startup_timed_out = True
            log.warning("startup did not complete within %gs", self.startup_timeout)
            return self._timed_out_response(response.checks)
        return response

    def _timed_out_response(self, checks: dict[str, CheckResult] | None = None) -> HealthCheckResponse:
        checks = dict(checks or {})
        checks["startup_timeout"] = CheckResult(
            HealthStatus.UNHEALTHY,
            observed_value=self.startup_timeout,
            observed_unit="s",
            output=f"startup did not complete within {self.startup_timeout:g}s",
            component_type="system",
            time=time.time(),
        )
        return HealthCheckResponse(
            ProbeStatus.TIMEOUT,
            checks,
            time.time(),
            self.uptime_seconds,
            self.service_version,
            HealthCheckType.STARTUP,
            self.service_id,
        )

    def _finish(self, kind: HealthCheckType, results: dict[str, CheckResult]) -> HealthCheckResponse:
        critical: dict[str, bool] | None = None
        probe = kind.value
        record = self._metrics.record if self._recording else None
        for check in self._checks[kind]:
            result = results[check.name]
            if record is not None:
                record(probe, check.name, result.status, result.duration_seconds)
            if result.status is not check.last_status:
                # Log transitions only: a probe every few seconds must not flood the log with the same failure.
                _log_transition(kind, check.name, check.last_status, result)
                check.last_status = result.status
            if not check.critical:
                critical = critical or {}
                critical[check.name] = False
        return self._response(kind, aggregate(results, critical), results)

    def _response(
        self, kind: HealthCheckType, status: HealthStatus, checks: dict[str, CheckResult]
    ) -> HealthCheckResponse:
        return HealthCheckResponse(
            probe_status(kind, status),
            checks,
            time.time(),
            self.uptime_seconds,
            self.service_version,
            kind,
            self.service_id,
        )


def _log_transition(kind: HealthCheckType, name: str, before: HealthStatus | None, result: CheckResult) -> None:
    if result.status is HealthStatus.HEALTHY:
        if before is not None:
            log.info("%s check %r recovered", kind.value, name)
    else:
        log.warning("%s check %r is %s: %s", kind.value, name, result.status.ietf, result.output or "")


def _require_positive(what: str, value: object, *, allow_inf: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if ok and not allow_inf:
        ok = math.isfinite(float(value))  # type: ignore[arg-type]
    if not ok:
        raise ValueError(f"{what} must be a positive number of seconds, got {value!r}")


def create_production_health_checker(
    startup_timeout: float = 60.0,
    service_version: str = "1.0.0",
    *,
    check_timeout: float = 1.0,
    cache_ttl: float = 0.0,
    service_id: str | None = None,
    metrics_collector: Any = None,
    registry: Any = None,
    prefix: str | None = None,
    max_sync_workers: int = 8,
) -> ProductionHealthChecker:
    """A ProductionHealthChecker; with `metrics_collector=` or `registry=` it also exports health metrics.

    The metrics are `<prefix>_health_check_status{probe,check}` (1 pass, 0.5 warn, 0 fail) and
    `<prefix>_health_check_duration_seconds{probe,check}`; the prefix is the collector's (default "victor").

    >>> checker = create_production_health_checker(startup_timeout=60.0, service_version="1.0.0")
    >>> checker.service_version
    '1.0.0'
    """
    metrics: HealthMetrics | None = None
    if metrics_collector is not None or registry is not None:
        metrics = registry_health_metrics(metrics_collector=metrics_collector, registry=registry, prefix=prefix)
    return ProductionHealthChecker(
        startup_timeout,
        service_version,
        check_timeout=check_timeout,
        cache_ttl=cache_ttl,
        service_id=service_id,
        metrics=metrics,
        max_sync_workers=max_sync_workers,
    )
