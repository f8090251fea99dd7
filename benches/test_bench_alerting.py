"""Alert evaluation cost: 1,000 rules whose conditions are false vs calling the 1,000 conditions in a plain loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from conftest import NOTES, compare
from victor_observability import AlertManager, AlertRule, AlertSeverity

N = 1000
TARGET = 2.0  # the goal: evaluation costs at most 2x the bare condition calls
readings = [float(i % 97) for i in range(N)]
compare(
    f"check_and_alert, {N} false rules vs calling the {N} conditions (>= 0.5 means within 2x)",
    "alert_eval",
    "alert_plain_loop",
    ">= 0.5",
)
compare(
    "the same round through loop.run_until_complete vs the plain loop (context)",
    "alert_eval_loop",
    "alert_plain_loop",
    "(context)",
)


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


def interleaved_ratio(manager: AlertManager, repeats: int = 40, number: int = 100) -> float:
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


def test_plain_loop_of_conditions(bench: Any) -> None:
    def plain() -> None:
        for condition in CONDITIONS:
            condition()

    bench("alert_plain_loop", plain)


def test_check_and_alert_1000_false_rules(bench: Any) -> None:
    manager = make_manager()

    def evaluate() -> list[Any]:
        return drive(manager.check_and_alert())  # type: ignore[no-any-return]

    assert evaluate() == []
    bench("alert_eval", evaluate)
    assert manager.get_active_alerts() == []
    ratio = interleaved_ratio(manager)
    # Reported, not asserted: a shared machine's load must not fail a benchmark run.
    met = "met" if ratio <= TARGET else "MISSED"
    NOTES.append(
        f"alerting: {N} false rules cost {ratio:.2f}x the bare condition calls "
        f"(interleaved best-of; <= {TARGET}x: {met})"
    )


def test_check_and_alert_via_event_loop(bench: Any) -> None:
    """The same round as an application runs it: one event-loop turn per call (loop overhead included)."""
    manager = make_manager()
    loop = asyncio.new_event_loop()
    try:
        bench("alert_eval_loop", lambda: loop.run_until_complete(manager.check_and_alert()))
    finally:
        loop.close()
