"""Health probe cost: uncached readiness beside a bare asyncio.gather of the same checks, cached beside uncached."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from conftest import RESULTS, compare
from victor_observability import ProductionHealthChecker, Registry, create_production_health_checker

#: Probes per benchmark round, all inside one event loop, so that loop start-up does not dominate.
PROBES_PER_ROUND = 500
CHECKS = 5

# Ratios are peer time / our time (the shared benches/conftest.py prints them at the end of the run).
compare(
    "health: uncached readiness (5 async checks) vs bare asyncio.gather (>= 0.5 = within 2x)",
    "hr_ours",
    "hr_gather",
    ">= 0.5",
)
compare("health: cached readiness vs uncached readiness", "hr_cached", "hr_ours", ">= 10x")
compare("health: uncached readiness with health metrics vs bare gather", "hr_metrics", "hr_gather", "(context)")


async def trivial() -> bool:
    return True


def make_checker(cache_ttl: float, registry: Registry | None = None) -> ProductionHealthChecker:
    checker = create_production_health_checker(cache_ttl=cache_ttl, registry=registry)
    for i in range(CHECKS):
        checker.add_async_readiness_check(f"check{i}", trivial)
    return checker


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def run_round(loop: asyncio.AbstractEventLoop, one: Callable[[], Awaitable[Any]]) -> Callable[[], None]:
    async def many() -> None:
        for _ in range(PROBES_PER_ROUND):
            await one()

    return lambda: loop.run_until_complete(many())


def remember(key: str, benchmark: Any) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats is not None:
        # min, not median: cases run one after another on a shared machine, and load only ever adds time.
        RESULTS[key] = stats.stats.min


@pytest.mark.benchmark(group="health-readiness")
def test_bare_gather_of_five_checks(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    async def gather_five() -> Any:
        return await asyncio.gather(trivial(), trivial(), trivial(), trivial(), trivial())

    benchmark.pedantic(run_round(loop, gather_five), rounds=30, warmup_rounds=2)
    remember("hr_gather", benchmark)


@pytest.mark.benchmark(group="health-readiness")
def test_readiness_uncached(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    checker = make_checker(cache_ttl=0.0)
    response = loop.run_until_complete(checker.readiness())
    assert response.is_healthy and len(response.checks) == CHECKS
    benchmark.pedantic(run_round(loop, checker.readiness), rounds=30, warmup_rounds=2)
    remember("hr_ours", benchmark)


@pytest.mark.benchmark(group="health-readiness")
def test_readiness_cached(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    checker = make_checker(cache_ttl=3600.0)
    first = loop.run_until_complete(checker.readiness())
    assert loop.run_until_complete(checker.readiness()) is first
    benchmark.pedantic(run_round(loop, checker.readiness), rounds=30, warmup_rounds=2)
    remember("hr_cached", benchmark)


@pytest.mark.benchmark(group="health-readiness")
def test_readiness_uncached_with_metrics(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    registry = Registry(prefix="victor")
    checker = make_checker(cache_ttl=0.0, registry=registry)
    loop.run_until_complete(checker.readiness())
    benchmark.pedantic(run_round(loop, checker.readiness), rounds=30, warmup_rounds=2)
    assert 'victor_health_check_status{check="check0",probe="readiness"} 1.0' in registry.export_text()
    remember("hr_metrics", benchmark)
