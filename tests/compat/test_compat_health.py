"""The pure-Python ProductionHealthChecker's public behaviour, case by case (only the import line differs)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from victor_observability import (
    HealthCheckResponse,
    HealthCheckType,
    HealthStatus,
    ProbeStatus,
    ProductionHealthChecker,
    create_production_health_checker,
)


def _raise() -> bool:
    raise RuntimeError("check failed")


async def _true() -> bool:
    return True


@pytest.mark.parametrize(
    ("checks", "word", "healthy"),
    [
        ({"process": lambda: True, "memory": lambda: True}, "healthy", True),
        ({"process": lambda: True, "memory": lambda: False}, "unhealthy", False),
        ({"failing": _raise}, "unhealthy", False),
    ],
)
async def test_liveness_words(checks: dict[str, object], word: str, healthy: bool) -> None:
    checker = ProductionHealthChecker()
    for name, check in checks.items():
        checker.add_liveness_check(name, check)  # type: ignore[arg-type]
    response = await checker.liveness()
    assert response.status == word and response.is_healthy is healthy
    assert set(response.checks) == set(checks)


async def test_readiness_words() -> None:
    checker = ProductionHealthChecker()
    checker.add_readiness_check("database", lambda: True)
    checker.add_readiness_check("cache", lambda: True)
    ready = await checker.readiness()
    assert ready.status == "ready" and {"database", "cache"} <= set(ready.checks)
    checker.add_readiness_check("cache", lambda: False)  # the same name again replaces the check
    assert (await checker.readiness()).status == "not_ready"


async def test_startup_words_and_startup_completed() -> None:
    checker = ProductionHealthChecker()
    checker.add_startup_check("cache", lambda: False)
    assert (await checker.startup()).status == "starting"
    assert checker.startup_completed is False
    checker.add_startup_check("cache", lambda: True)
    assert (await checker.startup()).status == "started"
    assert checker.startup_completed is True


@pytest.mark.parametrize(
    ("add", "probe", "word"),
    [
        ("add_async_liveness_check", "liveness", "healthy"),
        ("add_async_readiness_check", "readiness", "ready"),
        ("add_async_startup_check", "startup", "started"),
    ],
)
async def test_async_checks(add: str, probe: str, word: str) -> None:
    checker = ProductionHealthChecker()
    getattr(checker, add)("async_check", _true)
    response = await getattr(checker, probe)()
    assert response.status == word and response.is_healthy


def test_uptime_mark_and_reset() -> None:
    checker = ProductionHealthChecker()
    time.sleep(0.05)
    assert checker.uptime_seconds >= 0.05
    checker.mark_startup_complete()
    assert checker.startup_completed
    checker.reset_startup()
    assert not checker.startup_completed
    assert checker.uptime_seconds < 0.05  # the reference restarts its clock on reset
    checker.startup_completed = True
    assert checker.is_startup_complete


async def test_startup_timeout_word() -> None:
    checker = ProductionHealthChecker(startup_timeout=0.01)
    checker.add_startup_check("models", lambda: False)
    await asyncio.sleep(0.02)
    response = await checker.startup()
    assert response.status == "timeout" and not response.is_healthy


def test_response_built_the_reference_way() -> None:
    response = HealthCheckResponse(
        status="healthy", checks={"test": {"status": "ok"}}, uptime_seconds=10.0, version="0.5.0"
    )
    data = response.to_dict()
    assert (data["status"], data["uptime_seconds"], data["version"]) == ("healthy", 10.0, "0.5.0")
    assert data["checks"] == {"test": {"status": "ok"}}
    assert response.is_healthy
    stamped = HealthCheckResponse("not_ready", {}, timestamp="2025-01-01T00:00:00+00:00")
    assert stamped.to_dict()["timestamp"] == "2025-01-01T00:00:00+00:00" and not stamped.is_healthy
    with pytest.raises(ValueError, match="'sideways'"):
        HealthCheckResponse("sideways", {})


async def test_health_json_keeps_its_own_words() -> None:
    checker = ProductionHealthChecker()
    checker.add_readiness_check("db", lambda: False)
    response = await checker.readiness()
    assert response.status is ProbeStatus.NOT_READY and response.health is HealthStatus.UNHEALTHY
    assert response.to_health_json()["status"] == "fail" and response.http_status == 503


async def test_re_registering_a_name_replaces_it_and_logs_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    checker = ProductionHealthChecker()
    checker.add_liveness_check("process", lambda: False)
    with caplog.at_level(logging.DEBUG, logger="victor_observability.health"):
        checker.add_liveness_check("process", lambda: True)
    assert any("replacing" in r.message and r.levelno == logging.DEBUG for r in caplog.records)
    response = await checker.liveness()
    assert response.status == "healthy" and list(response.checks) == ["process"]


def test_factory_and_probe_kinds() -> None:
    checker = create_production_health_checker(startup_timeout=120.0, service_version="2.0.0")
    assert (checker.startup_timeout, checker.service_version) == (120.0, "2.0.0")
    assert [HealthCheckType.LIVENESS, HealthCheckType.READINESS, HealthCheckType.STARTUP] == [
        "liveness",
        "readiness",
        "startup",
    ]
