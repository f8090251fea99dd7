"""ProductionHealthChecker: probes, check outcomes, timeouts, concurrency, caching, startup, warn, metrics."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from victor_observability import (
    CheckResult,
    HealthCheckResponse,
    HealthCheckType,
    HealthStatus,
    ProductionHealthChecker,
    Registry,
    create_production_collector,
    create_production_health_checker,
)

PROBES = [HealthCheckType.LIVENESS, HealthCheckType.READINESS, HealthCheckType.STARTUP]


def add_sync(checker: ProductionHealthChecker, kind: HealthCheckType, name: str, fn: Any, **kw: Any) -> None:
    getattr(checker, f"add_{kind.value}_check")(name, fn, **kw)


def add_async(checker: ProductionHealthChecker, kind: HealthCheckType, name: str, fn: Any, **kw: Any) -> None:
    getattr(checker, f"add_async_{kind.value}_check")(name, fn, **kw)


async def probe(checker: ProductionHealthChecker, kind: HealthCheckType) -> HealthCheckResponse:
    method: Callable[[], Awaitable[HealthCheckResponse]] = getattr(checker, kind.value)
    return await method()


# -- each probe with each kind of check -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PROBES)
async def test_passing_sync_and_async_checks(kind: HealthCheckType) -> None:
    checker = create_production_health_checker(startup_timeout=60.0, service_version="3.2.1")

    async def async_ok() -> bool:
        await asyncio.sleep(0)
        return True

    add_sync(checker, kind, "sync", lambda: 42 < 100)
    add_async(checker, kind, "async", async_ok)
    response = await probe(checker, kind)
    assert response.health is HealthStatus.HEALTHY
    assert response.is_healthy and response.http_status == 200
    assert set(response.checks) == {"sync", "async"}
    assert all(r.status is HealthStatus.HEALTHY for r in response.checks.values())
    assert response.version == "3.2.1"
    assert response.probe is kind
    assert response.uptime_seconds >= 0
    assert abs(response.timestamp - time.time()) < 60


@pytest.mark.parametrize("kind", PROBES)
async def test_failing_check_fails_the_probe(kind: HealthCheckType) -> None:
    checker = ProductionHealthChecker()
    add_sync(checker, kind, "ok", lambda: True)
    add_sync(checker, kind, "db", lambda: 250 < 100)
    response = await probe(checker, kind)
    assert response.health is HealthStatus.UNHEALTHY
    assert not response.is_healthy and response.http_status == 503
    assert response.checks["db"].status is HealthStatus.UNHEALTHY
    assert response.checks["db"].output == "check returned False"
    assert response.checks["ok"].status is HealthStatus.HEALTHY


@pytest.mark.parametrize("kind", PROBES)
async def test_failing_async_check(kind: HealthCheckType) -> None:
    checker = ProductionHealthChecker()

    async def down() -> bool:
        return False

    add_async(checker, kind, "down", down)
    response = await probe(checker, kind)
    assert response.health is HealthStatus.UNHEALTHY
    assert response.checks["down"].status is HealthStatus.UNHEALTHY


@pytest.mark.parametrize("kind", PROBES)
async def test_raising_checks_fail_with_a_short_reason(kind: HealthCheckType) -> None:
    checker = ProductionHealthChecker()

    def sync_boom() -> bool:
        raise ConnectionError("connection refused\n  at line 2 of something")

    async def async_boom() -> bool:
        await asyncio.sleep(0)
        raise KeyError("models")

    def call_boom() -> Awaitable[bool]:
        raise RuntimeError("raised before returning a coroutine")

    add_sync(checker, kind, "sync", sync_boom)
    add_async(checker, kind, "async", async_boom)
    add_async(checker, kind, "call", call_boom)
    response = await probe(checker, kind)
    assert response.health is HealthStatus.UNHEALTHY
    assert response.checks["sync"].output == "ConnectionError: connection refused"
    assert response.checks["async"].output == "KeyError: 'models'"
    assert response.checks["call"].output == "RuntimeError: raised before returning a coroutine"
    body = json.dumps(response.to_dict()) + json.dumps(response.to_health_json())
    assert "Traceback" not in body and "line 2" not in body


@pytest.mark.parametrize("kind", PROBES)
async def test_hanging_async_check_times_out(kind: HealthCheckType) -> None:
    checker = ProductionHealthChecker()
    add_async(checker, kind, "hang", lambda: asyncio.Event().wait(), timeout=0.1)
    add_sync(checker, kind, "ok", lambda: True)
    response = await probe(checker, kind)
    assert response.health is HealthStatus.UNHEALTHY
    assert response.checks["hang"].output == "timed out after 0.1s"
    assert response.checks["ok"].status is HealthStatus.HEALTHY


@pytest.mark.parametrize("kind", PROBES)
async def test_hanging_sync_check_times_out_and_is_not_piled_up(kind: HealthCheckType) -> None:
    checker = ProductionHealthChecker()
    release = threading.Event()
    calls: list[int] = []

    def hang() -> bool:
        calls.append(1)
        return release.wait(30)

    add_sync(checker, kind, "hang", hang, timeout=0.1)
    try:
        first = await probe(checker, kind)
        assert first.checks["hang"].output == "timed out after 0.1s"
        if kind is HealthCheckType.STARTUP:
            return
        # The first call is still blocked in its thread: the next probe waits on that same run (and times out
        # with it) instead of adding a thread.
        second = await probe(checker, kind)
        assert second.checks["hang"].status is HealthStatus.UNHEALTHY
        assert "timed out" in (second.checks["hang"].output or "")
        assert len(calls) == 1
    finally:
        release.set()
    # Once the thread is free the check runs again (and now passes).
    for _ in range(200):
        third = await probe(checker, kind)
        if third.checks["hang"].status is HealthStatus.HEALTHY:
            break
        await asyncio.sleep(0.01)
    assert third.checks["hang"].status is HealthStatus.HEALTHY


async def test_uncooperative_async_check_still_bounded_by_its_timeout() -> None:
    checker = ProductionHealthChecker()
    release = asyncio.Event()

    async def stubborn() -> bool:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await release.wait()  # swallows the cancellation: the probe must not wait for it anyway
        return True

    checker.add_async_readiness_check("stubborn", stubborn, timeout=0.1)
    response = await asyncio.wait_for(checker.readiness(), timeout=10)
    assert response.checks["stubborn"].output == "timed out after 0.1s"
    release.set()
    await asyncio.sleep(0.01)


@pytest.mark.parametrize("kind", PROBES)
async def test_slow_sync_check_runs_off_the_event_loop(kind: HealthCheckType) -> None:
    checker = ProductionHealthChecker()
    unblocked = threading.Event()

    def slow() -> bool:
        # Passes only if a coroutine on the loop sets the event meanwhile: a blocked loop would make it time out.
        return unblocked.wait(5)

    add_sync(checker, kind, "slow", slow, timeout=10)

    async def unblock() -> None:
        await asyncio.sleep(0.05)
        unblocked.set()

    response, _ = await asyncio.gather(probe(checker, kind), unblock())
    assert response.health is HealthStatus.HEALTHY
    assert response.checks["slow"].duration_seconds >= 0.04


# -- concurrency ------------------------------------------------------------------------------------------------


async def test_five_200ms_async_checks_run_concurrently() -> None:
    checker = ProductionHealthChecker()

    async def slow() -> bool:
        await asyncio.sleep(0.2)
        return True

    for i in range(5):
        checker.add_async_readiness_check(f"c{i}", slow)
    start = time.perf_counter()
    response = await checker.readiness()
    elapsed = time.perf_counter() - start
    assert response.health is HealthStatus.HEALTHY
    assert elapsed < 0.6, f"five 200 ms checks took {elapsed:.3f}s: not concurrent"


async def test_five_200ms_sync_checks_run_concurrently() -> None:
    checker = ProductionHealthChecker()
    for i in range(5):
        checker.add_readiness_check(f"c{i}", sleep_200ms)
    start = time.perf_counter()
    response = await checker.readiness()
    elapsed = time.perf_counter() - start
    assert response.health is HealthStatus.HEALTHY
    assert elapsed < 0.6, f"five 200 ms sync checks took {elapsed:.3f}s: not concurrent"


def sleep_200ms() -> bool:
    time.sleep(0.2)
    return True


def counting(calls: list[int]) -> Callable[[], bool]:
    def check() -> bool:
        calls.append(1)
        return True

    return check


# -- caching ----------------------------------------------------------------------------------------------------


async def test_cached_probe_does_not_rerun_checks_until_ttl_expires() -> None:
    checker = create_production_health_checker(cache_ttl=0.2)
    calls: list[int] = []
    checker.add_readiness_check("db", counting(calls))
    first = await checker.readiness()
    for _ in range(50):
        assert await checker.readiness() is first
    assert len(calls) == 1
    await asyncio.sleep(0.3)
    fresh = await checker.readiness()
    assert fresh is not first and len(calls) == 2


async def test_without_cache_every_probe_reruns_checks() -> None:
    checker = ProductionHealthChecker()
    calls: list[int] = []
    checker.add_liveness_check("process", counting(calls))
    for _ in range(3):
        await checker.liveness()
    assert len(calls) == 3


async def test_concurrent_probes_share_one_evaluation() -> None:
    checker = ProductionHealthChecker()
    calls: list[int] = []

    async def slow_db() -> bool:
        calls.append(1)
        await asyncio.sleep(0.05)
        return True

    checker.add_async_readiness_check("db", slow_db)
    responses = await asyncio.gather(*(checker.readiness() for _ in range(20)))
    assert len(calls) == 1
    assert all(r is responses[0] for r in responses)


async def test_cache_is_per_probe_and_cleared_by_startup_changes() -> None:
    checker = ProductionHealthChecker(cache_ttl=60.0)
    checker.add_startup_check("models", lambda: False)
    assert (await checker.readiness()).health is HealthStatus.UNHEALTHY
    assert (await checker.liveness()).health is HealthStatus.HEALTHY
    checker.mark_startup_complete()
    assert (await checker.readiness()).health is HealthStatus.HEALTHY


# -- startup ----------------------------------------------------------------------------------------------------


async def test_startup_completes_once_all_checks_pass_and_stays_complete() -> None:
    checker = create_production_health_checker(startup_timeout=60.0)
    state = {"models": False, "warm": False}
    checker.add_startup_check("models", lambda: state["models"])
    checker.add_startup_check("warmup", lambda: state["warm"])
    checker.add_readiness_check("db", lambda: True)

    response = await checker.startup()
    assert response.health is HealthStatus.UNHEALTHY and not checker.is_startup_complete
    ready = await checker.readiness()
    assert ready.health is HealthStatus.UNHEALTHY
    assert ready.checks["startup"].output == "startup not complete: models, warmup failing"

    state["models"] = True
    assert (await checker.startup()).checks["warmup"].status is HealthStatus.UNHEALTHY
    state["warm"] = True
    assert (await checker.startup()).health is HealthStatus.HEALTHY
    assert checker.is_startup_complete

    state["models"] = state["warm"] = False  # once complete, startup stays complete
    assert (await checker.startup()).health is HealthStatus.HEALTHY
    assert (await checker.readiness()).health is HealthStatus.HEALTHY


async def test_readiness_evaluates_startup_itself_without_a_startup_probe() -> None:
    checker = ProductionHealthChecker()
    loaded = {"v": False}
    checker.add_async_startup_check("models", _async_value(loaded))
    checker.add_readiness_check("db", lambda: True)
    assert (await checker.readiness()).health is HealthStatus.UNHEALTHY
    loaded["v"] = True
    ready = await checker.readiness()  # never called startup()
    assert ready.health is HealthStatus.HEALTHY and set(ready.checks) == {"db"}
    assert checker.is_startup_complete


def _async_value(box: dict[str, bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return box["v"]

    return check


async def test_no_startup_checks_means_startup_is_complete_at_once() -> None:
    checker = ProductionHealthChecker()
    checker.add_readiness_check("db", lambda: True)
    assert (await checker.startup()).health is HealthStatus.HEALTHY
    assert (await checker.readiness()).health is HealthStatus.HEALTHY


async def test_startup_fails_with_a_reason_after_the_timeout() -> None:
    checker = create_production_health_checker(startup_timeout=0.2)
    loaded = {"v": False}
    checker.add_startup_check("models", lambda: loaded["v"])
    early = await checker.startup()
    assert early.health is HealthStatus.UNHEALTHY and "startup_timeout" not in early.checks
    await asyncio.sleep(0.3)
    late = await checker.startup()
    assert late.health is HealthStatus.UNHEALTHY
    assert late.checks["startup_timeout"].output == "startup did not complete within 0.2s"
    assert late.checks["models"].status is HealthStatus.UNHEALTHY
    # Timed out is final: a late success does not revive it (Kubernetes restarts the container instead)...
    loaded["v"] = True
    assert (await checker.startup()).checks["startup_timeout"].status is HealthStatus.UNHEALTHY
    ready = await checker.readiness()
    assert ready.health is HealthStatus.UNHEALTHY
    assert ready.checks["startup"].output == "startup did not complete within 0.2s"
    # ...until reset_startup() restarts the clock.
    checker.reset_startup()
    assert (await checker.startup()).health is HealthStatus.HEALTHY


async def test_mark_and_reset_startup() -> None:
    checker = ProductionHealthChecker()
    checker.add_startup_check("models", lambda: False)
    checker.mark_startup_complete()
    assert (await checker.startup()).health is HealthStatus.HEALTHY
    assert (await checker.readiness()).health is HealthStatus.HEALTHY
    checker.reset_startup()
    assert not checker.is_startup_complete
    assert (await checker.readiness()).health is HealthStatus.UNHEALTHY


async def test_liveness_does_not_depend_on_startup_or_readiness() -> None:
    checker = ProductionHealthChecker(startup_timeout=0.01)
    checker.add_startup_check("models", lambda: False)
    checker.add_readiness_check("db", lambda: False)
    await asyncio.sleep(0.05)
    await checker.startup()
    live = await checker.liveness()
    assert live.health is HealthStatus.HEALTHY and live.checks == {}


# -- warn, results, rendering -----------------------------------------------------------------------------------


async def test_warn_status_degrades_but_keeps_serving() -> None:
    checker = ProductionHealthChecker(service_id="victor-api")
    checker.add_readiness_check(
        "disk", lambda: CheckResult("warn", observed_value=91.5, observed_unit="percent", output="disk 91% full")
    )
    checker.add_readiness_check("db", lambda: True)
    response = await checker.readiness()
    assert response.health is HealthStatus.DEGRADED
    assert response.is_healthy and response.http_status == 200
    ietf = response.to_health_json()
    assert ietf["status"] == "warn" and ietf["serviceId"] == "victor-api"
    assert ietf["checks"]["disk"] == [
        {
            "status": "warn",
            "componentType": "component",
            "time": ietf["checks"]["disk"][0]["time"],
            "observedValue": 91.5,
            "observedUnit": "percent",
            "output": "disk 91% full",
        }
    ]
    assert ietf["checks"]["db"][0]["status"] == "pass" and "output" not in ietf["checks"]["db"][0]


async def test_non_critical_failure_only_degrades() -> None:
    checker = ProductionHealthChecker()
    checker.add_readiness_check("search", lambda: False, critical=False)
    response = await checker.readiness()
    assert response.health is HealthStatus.DEGRADED and response.http_status == 200
    assert response.checks["search"].status is HealthStatus.UNHEALTHY


@pytest.mark.parametrize(
    ("value", "status", "observed"),
    [
        (True, HealthStatus.HEALTHY, None),
        (None, HealthStatus.HEALTHY, None),
        (12.5, HealthStatus.HEALTHY, 12.5),
        ("warn", HealthStatus.DEGRADED, None),
        ("fail", HealthStatus.UNHEALTHY, None),
        (HealthStatus.DEGRADED, HealthStatus.DEGRADED, None),
        ([], HealthStatus.UNHEALTHY, None),
        ("bogus", HealthStatus.UNHEALTHY, None),
    ],
)
async def test_what_a_check_may_return(value: object, status: HealthStatus, observed: object) -> None:
    checker = ProductionHealthChecker()
    checker.add_liveness_check("c", lambda: value)
    result = (await checker.liveness()).checks["c"]
    assert result.status is status
    assert result.observed_value == observed


async def test_sync_check_returning_a_coroutine_fails_cleanly() -> None:
    checker = ProductionHealthChecker()

    async def forgot() -> bool:
        return True

    checker.add_liveness_check("wrong", lambda: forgot())
    result = (await checker.liveness()).checks["wrong"]
    assert result.status is HealthStatus.UNHEALTHY and "add_async_" in (result.output or "")


async def test_coroutine_function_given_to_sync_adder_is_awaited() -> None:
    checker = ProductionHealthChecker()

    async def ok() -> bool:
        return True

    checker.add_readiness_check("ok", ok)
    assert (await checker.readiness()).checks["ok"].status is HealthStatus.HEALTHY


async def test_to_dict_fields_and_detail_levels() -> None:
    checker = create_production_health_checker(service_version="1.0.0")
    checker.add_liveness_check("process", lambda: True)
    response = await checker.liveness()
    full = response.to_dict()
    assert {"status", "checks", "timestamp", "uptime_seconds", "version", "is_healthy"} <= set(full)
    assert full["status"] == "healthy" and full["version"] == "1.0.0" and full["is_healthy"] is True
    assert full["checks"]["process"]["status"] == "healthy" and "duration_ms" in full["checks"]["process"]
    assert full["timestamp"].endswith("Z")
    json.dumps(full)
    assert response.to_dict("status") == {"status": "healthy", "is_healthy": True}
    assert response.to_dict("checks")["checks"] == {"process": {"status": "healthy"}}
    assert response.to_health_json("status") == {"status": "pass"}
    assert response.to_health_json("checks")["checks"] == {
        "process": [{"status": "pass", "componentType": "component"}]
    }
    with pytest.raises(ValueError, match="detail"):
        response.to_dict("everything")  # type: ignore[arg-type]


def test_uptime_and_status_values() -> None:
    checker = ProductionHealthChecker()
    first = checker.uptime_seconds
    time.sleep(0.01)
    assert checker.uptime_seconds > first >= 0
    assert HealthStatus("pass") is HealthStatus.HEALTHY
    assert [s.metric_value for s in HealthStatus] == [1.0, 0.5, 0.0]
    assert [k.value for k in HealthCheckType] == ["liveness", "readiness", "startup"]


# -- definition-time errors -------------------------------------------------------------------------------------


def test_definition_mistakes_raise_value_error_naming_the_thing() -> None:
    checker = ProductionHealthChecker()
    checker.add_readiness_check("db", lambda: True)
    checker.add_liveness_check("db", lambda: True)  # same name, other probe: fine
    with pytest.raises(ValueError, match="'cache' timeout"):
        checker.add_readiness_check("cache", lambda: True, timeout=0)
    with pytest.raises(ValueError, match="'x' is not callable"):
        checker.add_readiness_check("x", True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        checker.add_readiness_check("", lambda: True)
    with pytest.raises(ValueError, match="unknown probe 'sideways'"):
        checker.add_check("sideways", "y", lambda: True)
    with pytest.raises(ValueError, match="startup_timeout"):
        ProductionHealthChecker(startup_timeout=-1)
    with pytest.raises(ValueError, match="cache_ttl"):
        ProductionHealthChecker(cache_ttl=-1)
    with pytest.raises(ValueError, match="CheckResult status 'meh'"):
        CheckResult("meh")


# -- metrics ----------------------------------------------------------------------------------------------------


async def test_health_metrics_on_the_collector_registry() -> None:
    collector = create_production_collector(prefix="victor", collect_system_metrics=False)
    checker = create_production_health_checker(metrics_collector=collector)
    checker.add_liveness_check("process", lambda: True)
    checker.add_readiness_check("db", lambda: False)
    checker.add_readiness_check("disk", lambda: CheckResult("warn"))
    await checker.liveness()
    await checker.readiness()
    text = collector.export_prometheus()
    assert 'victor_health_check_status{check="process",probe="liveness"} 1.0' in text
    assert 'victor_health_check_status{check="db",probe="readiness"} 0.0' in text
    assert 'victor_health_check_status{check="disk",probe="readiness"} 0.5' in text
    assert 'victor_health_check_duration_seconds_count{check="db",probe="readiness"} 1.0' in text
    assert "# TYPE victor_health_check_duration_seconds histogram" in text


async def test_health_metrics_on_a_plain_registry_with_its_prefix() -> None:
    registry = Registry(prefix="acme")
    checker = create_production_health_checker(registry=registry)
    checker.add_startup_check("models", lambda: True)
    await checker.startup()
    assert 'acme_health_check_status{check="models",probe="startup"} 1.0' in registry.export_text()


async def test_two_checkers_can_share_one_collector() -> None:
    collector = create_production_collector(prefix="victor", collect_system_metrics=False)
    first = create_production_health_checker(metrics_collector=collector)
    second = create_production_health_checker(metrics_collector=collector)
    first.add_liveness_check("a", lambda: True)
    second.add_liveness_check("b", lambda: False)
    await first.liveness()
    await second.liveness()
    text = collector.export_prometheus()
    assert 'victor_health_check_status{check="a",probe="liveness"} 1.0' in text
    assert 'victor_health_check_status{check="b",probe="liveness"} 0.0' in text


async def test_k8s_deployment_probes_point_at_the_health_routes() -> None:
    import httpx
    import yaml  # type: ignore[import-untyped]
    from victor_observability import create_health_app

    path = Path(__file__).resolve().parents[2] / "config" / "k8s" / "deployment.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    container = template["spec"]["containers"][0]
    probes = {k: container[k]["httpGet"] for k in ("livenessProbe", "readinessProbe", "startupProbe")}
    assert {k: v["path"] for k, v in probes.items()} == {
        "livenessProbe": "/health/live",
        "readinessProbe": "/health/ready",
        "startupProbe": "/health/startup",
    }
    assert all(v["port"] == container["ports"][0]["containerPort"] == 8000 for v in probes.values())
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]

    checker = ProductionHealthChecker()
    transport = httpx.ASGITransport(app=create_health_app(checker))
    async with httpx.AsyncClient(transport=transport, base_url="http://victor") as client:
        for probe_get in probes.values():
            assert (await client.get(probe_get["path"])).status_code == 200


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(min_size=1, max_size=30),
    status=st.sampled_from(["pass", "warn", "fail", "healthy", "degraded", "unhealthy"]),
    observed=st.one_of(st.none(), st.floats(allow_nan=True), st.integers(), st.text(max_size=20)),
    output=st.one_of(st.none(), st.text(max_size=50)),
)
def test_rendering_is_always_valid_json_with_consistent_statuses(
    name: str, status: str, observed: object, output: str | None
) -> None:
    result = CheckResult(status, observed_value=observed, output=output, component_type="datastore")
    response = HealthCheckResponse(result.status, {name: result}, time.time(), 1.0, "9.9.9")
    ietf = json.loads(json.dumps(response.to_health_json(), allow_nan=False))
    plain = json.loads(json.dumps(response.to_dict(), allow_nan=False))
    assert ietf["status"] == result.status.ietf == ietf["checks"][name][0]["status"]
    assert plain["status"] == result.status.value == plain["checks"][name]["status"]
    assert ietf["checks"][name][0]["componentType"] == "datastore"
    assert plain["is_healthy"] is (result.status is not HealthStatus.UNHEALTHY)


async def test_cancelled_prober_neither_breaks_nor_blocks_the_others() -> None:
    checker = ProductionHealthChecker()
    calls: list[int] = []

    async def slow_db() -> bool:
        calls.append(1)
        await asyncio.sleep(0.05)
        return True

    checker.add_async_readiness_check("db", slow_db)
    leader = asyncio.create_task(checker.readiness())
    await asyncio.sleep(0)
    follower = asyncio.create_task(checker.readiness())
    quitter = asyncio.create_task(checker.readiness())
    await asyncio.sleep(0)
    quitter.cancel()
    leader.cancel()  # the follower then evaluates by itself instead of waiting forever
    response = await asyncio.wait_for(follower, timeout=10)
    assert response.health is HealthStatus.HEALTHY
    assert len(calls) == 2
    assert leader.cancelled() and quitter.cancelled()


async def test_concurrent_probes_share_a_running_sync_startup_check() -> None:
    # Readiness runs the startup checks itself while startup is not complete: a startup probe arriving at
    # the same time must share that run, not fail it as "still in progress".
    checker = ProductionHealthChecker()
    started = threading.Event()
    calls: list[int] = []

    def warmup() -> bool:
        calls.append(1)
        started.set()
        time.sleep(0.05)
        return True

    checker.add_startup_check("warmup", warmup)
    ready, start = await asyncio.gather(checker.readiness(), checker.startup())
    assert start.checks["warmup"].status is HealthStatus.HEALTHY, start.to_dict()
    assert ready.is_healthy, ready.to_dict()
    assert len(calls) == 1
