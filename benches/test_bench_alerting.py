"""Alert evaluation cost: 1,000 rules whose conditions are false vs calling the 1,000 conditions in a plain loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from victor_observability import AlertManager, AlertRule, AlertSeverity

N = 1000
TARGET = 2.0  # the issue's goal: evaluation costs at most 2x the bare condition calls
readings = [float(i % 97) for i in range(N)]
results: dict[str, float] = {}


def make_condition(i: int) -> Callable[[], bool]:
    return lambda: readings[i] > 1000.0  # a cheap metric read, never true


CONDITIONS = [make_condition(i) for i in range(N)]


def make_manager() -> AlertManager:
    manager = AlertManager()
    for i, condition in enumerate(CONDITIONS):
        manager.add_rule(
            AlertRule.builder()
            .name(f"rule_{i}")
            .condition(condition)
            .severity(AlertSeverity.WARNING)
            .cooldown(300)
            .build()
        )
    return manager


def drive(coro: Any) -> Any:
    """Run a coroutine that never suspends (all sync conditions, nothing to deliver) without an event loop turn."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("evaluation suspended: the bench expects the all-sync fast path")


def record(benchmark: Any, name: str) -> None:
    results[name] = benchmark.stats.stats.median


def interleaved_ratio(manager: AlertManager, repeats: int = 15, number: int = 200) -> float:
    """Best-of ratio with the two loops alternating, so that machine noise hits both alike."""

    def plain() -> None:
        for condition in CONDITIONS:
            condition()

    def ours() -> None:
        drive(manager.check_and_alert())

    best = {"plain": float("inf"), "ours": float("inf")}
    for _ in range(repeats):
        for name, fn in (("plain", plain), ("ours", ours)):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best["ours"] / best["plain"]


def test_plain_loop_of_conditions(benchmark: Any) -> None:
    def plain() -> None:
        for condition in CONDITIONS:
            condition()

    benchmark(plain)
    record(benchmark, "plain_loop")


def test_check_and_alert_1000_false_rules(benchmark: Any) -> None:
    manager = make_manager()

    def evaluate() -> list[Any]:
        return drive(manager.check_and_alert())  # type: ignore[no-any-return]

    assert evaluate() == []
    benchmark(evaluate)
    record(benchmark, "check_and_alert")
    assert manager.get_active_alerts() == []


def test_check_and_alert_via_event_loop(benchmark: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The same round as an application runs it: one event-loop turn per call (loop overhead included)."""
    manager = make_manager()
    loop = asyncio.new_event_loop()
    try:
        benchmark(lambda: loop.run_until_complete(manager.check_and_alert()))
    finally:
        loop.close()
    record(benchmark, "check_and_alert+run_until_complete")
    ratio = interleaved_ratio(manager)
    base = results["plain_loop"]
    with capsys.disabled():
        print(f"\nalerting: {N} false rules vs calling the {N} conditions in a plain loop (target <= {TARGET}x)")
        for name, median in results.items():
            print(f"  {name:<36} median {median * 1e6:8.1f} us  {median / base:5.2f}x")
        print(f"  {'check_and_alert, interleaved best-of':<36} {'':>18} {ratio:5.2f}x")
    assert ratio <= TARGET, f"evaluating {N} false rules costs {ratio:.2f}x the bare calls (target {TARGET}x)"
