"""Hung sync checks: liveness never waits behind readiness or startup, stuck threads are bounded and visible."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from victor_observability import (
    HealthStatus,
    ProductionHealthChecker,
    Registry,
    create_production_health_checker,
)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # let the hung threads finish so they do not outlive the test


def hang(event: threading.Event) -> bool:
    event.wait(60)
    return True


async def test_hung_readiness_checks_never_fail_liveness(release: threading.Event) -> None:
    checker = ProductionHealthChecker(check_timeout=0.2, max_sync_workers=8)
    checker.mark_startup_complete()
    checker.add_liveness_check("process", lambda: True)
    for i in range(12):  # more hung checks than the pool has threads
        checker.add_readiness_check(f"dependency_{i}", lambda: hang(release))
    for _ in range(3):
        readiness = await checker.readiness()
        assert readiness.health is HealthStatus.UNHEALTHY
        assert all("timed out" in (r.output or "") for r in readiness.checks.values())
        liveness = await checker.liveness()
        assert liveness.health is HealthStatus.HEALTHY, liveness.to_dict()
        assert liveness.http_status == 200


async def test_hung_startup_checks_never_fail_liveness(release: threading.Event) -> None:
    checker = ProductionHealthChecker(check_timeout=0.2, max_sync_workers=2)
    checker.add_liveness_check("process", lambda: True)
    checker.add_startup_check("models", lambda: hang(release))
    checker.add_startup_check("cache", lambda: hang(release))
    assert not (await checker.startup()).is_healthy
    assert not (await checker.readiness()).is_healthy
    assert (await checker.liveness()).is_healthy


async def test_hung_checks_are_not_resubmitted_and_are_counted(release: threading.Event) -> None:
    registry = Registry(prefix="victor")
    checker = create_production_health_checker(check_timeout=0.2, registry=registry, max_sync_workers=4)
    checker.mark_startup_complete()
    calls: list[int] = []

    def stuck() -> bool:
        calls.append(1)
        return hang(release)

    checker.add_readiness_check("db", stuck)
    checker.add_readiness_check("cache", lambda: hang(release))
    checker.add_liveness_check("process", lambda: True)
    first = await checker.readiness()
    assert first.checks["db"].output == "timed out after 0.2s"
    second = await checker.readiness()
    # Still stuck from the first run: reported as timed out at once, not started on another thread.
    assert "timed out" in (second.checks["db"].output or "")
    assert len(calls) == 1
    assert checker.hung_checks() == {"liveness": 0, "readiness": 2}
    text = registry.export_text()
    assert 'victor_health_checks_hung{pool="readiness"} 2' in text
    assert 'victor_health_checks_hung{pool="liveness"} 0' in text
    release.set()
    # Once the checks return, their threads are free again and the gauge falls back (bounded wait, no timing).
    for _ in range(500):
        if checker.hung_checks()["readiness"] == 0:
            break
        threading.Event().wait(0.01)
    assert checker.hung_checks() == {"liveness": 0, "readiness": 0}
    assert 'victor_health_checks_hung{pool="readiness"} 0' in registry.export_text()
    assert (await checker.readiness()).is_healthy


async def test_stuck_threads_are_bounded_by_the_pool(release: threading.Event) -> None:
    checker = ProductionHealthChecker(check_timeout=0.1, max_sync_workers=3)
    checker.mark_startup_complete()
    for i in range(10):
        checker.add_readiness_check(f"dep_{i}", lambda: hang(release))
    before = threading.active_count()
    for _ in range(3):
        await checker.readiness()
    assert threading.active_count() - before <= 3
    assert checker.hung_checks()["readiness"] <= 3
