"""Health probe cost: uncached readiness beside a bare asyncio.gather of the same checks, cached beside uncached."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from victor_observability import ProductionHealthChecker, Registry, create_production_health_checker

#: Probes per benchmark round, all inside one event loop, so that loop start-up does not dominate.
PROBES_PER_ROUND = 500
CHECKS = 5

_per_probe: dict[str, float] = {}


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


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    lines = ["", "health probe benchmarks (median per probe, same run):"]
    lines += [f"  {name:<28} {seconds * 1e6:9.2f} us" for name, seconds in _per_probe.items()]
    gather, uncached, cached, metered = (
        _per_probe.get(k)
        for k in ("bare gather (peer)", "readiness uncached", "readiness cached", "uncached + metrics")
    )
    if gather and uncached:
        ratio = uncached / gather
        verdict = "met" if ratio <= 2 else "MISSED"
        lines.append(f"  uncached readiness / bare gather = {ratio:.2f}x (target <= 2x: {verdict})")
    if gather and metered:
        lines.append(f"  same with health metrics / gather = {metered / gather:.2f}x (no target)")
    if uncached and cached:
        speedup = uncached / cached
        verdict = "met" if speedup >= 10 else "MISSED"
        lines.append(f"  uncached / cached readiness     = {speedup:.1f}x (target >= 10x: {verdict})")
    # Outside pytest's capture, so the ratios show without -s.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        print("\n".join(lines), flush=True)


def run_round(loop: asyncio.AbstractEventLoop, one: Callable[[], Awaitable[Any]]) -> Callable[[], None]:
    async def many() -> None:
        for _ in range(PROBES_PER_ROUND):
            await one()

    return lambda: loop.run_until_complete(many())


def remember(name: str, benchmark: Any) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats is not None:
        _per_probe[name] = stats.stats.median / PROBES_PER_ROUND


@pytest.mark.benchmark(group="health-readiness")
def test_bare_gather_of_five_checks(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    async def gather_five() -> list[bool]:
        return await asyncio.gather(trivial(), trivial(), trivial(), trivial(), trivial())

    benchmark.pedantic(run_round(loop, gather_five), rounds=30, warmup_rounds=2)
    remember("bare gather (peer)", benchmark)


@pytest.mark.benchmark(group="health-readiness")
def test_readiness_uncached(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    checker = make_checker(cache_ttl=0.0)
    response = loop.run_until_complete(checker.readiness())
    assert response.is_healthy and len(response.checks) == CHECKS
    benchmark.pedantic(run_round(loop, checker.readiness), rounds=30, warmup_rounds=2)
    remember("readiness uncached", benchmark)


@pytest.mark.benchmark(group="health-readiness")
def test_readiness_cached(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    checker = make_checker(cache_ttl=3600.0)
    first = loop.run_until_complete(checker.readiness())
    assert loop.run_until_complete(checker.readiness()) is first
    benchmark.pedantic(run_round(loop, checker.readiness), rounds=30, warmup_rounds=2)
    remember("readiness cached", benchmark)


@pytest.mark.benchmark(group="health-readiness")
def test_readiness_uncached_with_metrics(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    registry = Registry(prefix="victor")
    checker = make_checker(cache_ttl=0.0, registry=registry)
    loop.run_until_complete(checker.readiness())
    benchmark.pedantic(run_round(loop, checker.readiness), rounds=30, warmup_rounds=2)
    assert 'victor_health_check_status{check="check0",probe="readiness"} 1.0' in registry.export_text()
    remember("uncached + metrics", benchmark)
