"""Running one probe's checks: concurrently, each within its timeout, sync ones on daemon worker threads."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from victor_observability.health.model import CheckResult, HealthStatus, redact_credentials

log = logging.getLogger("victor_observability.health")

_MAX_OUTPUT = 200

_PASS = HealthStatus.HEALTHY
_FAIL = HealthStatus.UNHEALTHY


@dataclass(eq=False)
class Check:
    """One registered check (internal); `running` guards against piling threads onto a hung sync check."""

    name: str
    fn: Callable[[], Any]
    is_async: bool
    timeout: float
    critical: bool
    component_type: str | None
    running: bool = False
    started: float = 0.0  # monotonic time a worker thread began the current run (0.0: not on a thread)
    last_status: HealthStatus | None = None
    # The run in progress and its loop: a probe arriving meanwhile (readiness running the startup checks
    # while the startup probe does) shares that run instead of starting another or failing.
    inflight: asyncio.Future[Any] | None = None
    inflight_loop: asyncio.AbstractEventLoop | None = None


def short_reason(exc: BaseException) -> str:
    """`TypeName: message`, one line, bounded, credentials redacted: never a stack trace in a response."""
    text = redact_credentials(str(exc)).strip().splitlines()
    reason = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return reason if len(reason) <= _MAX_OUTPUT else reason[: _MAX_OUTPUT - 3] + "..."


def interpret(value: Any, check: Check, duration: float, when: float) -> CheckResult:
    """Turn whatever a check returned into a CheckResult (see ProductionHealthChecker for the rules)."""
    ctype = check.component_type
    if value is True or value is None:
        return CheckResult(_PASS, None, None, None, ctype, duration, when)
    if value is False:
        return CheckResult(_FAIL, None, None, "check returned False", ctype, duration, when)
    if isinstance(value, CheckResult):
        return CheckResult(
            value.status,
            value.observed_value,
            value.observed_unit,
            None if value.output is None else redact_credentials(value.output),
            value.component_type or ctype,
            duration,
            when,
        )
    if isinstance(value, HealthStatus):
        return CheckResult(value, None, None, None, ctype, duration, when)
    if isinstance(value, (int, float)):
        # A bare number is a reading, not a verdict: report it and let the lambda compare it (as the guide does).
        return CheckResult(_PASS, value, None, None, ctype, duration, when)
    if isinstance(value, str):
        try:
            return CheckResult(HealthStatus(value), None, None, None, ctype, duration, when)
        except ValueError:
            shown = redact_credentials(value)[:40]
            return CheckResult(_FAIL, None, None, f"unrecognised status {shown!r}", ctype, duration, when)
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited on purpose: close it so it does not warn at GC
        return CheckResult(
            _FAIL, None, None, "sync check returned an awaitable: use add_async_*", ctype, duration, when
        )
    try:
        ok = bool(value)
    except Exception as exc:
        return CheckResult(_FAIL, None, None, short_reason(exc), ctype, duration, when)
    return CheckResult(
        _PASS if ok else _FAIL, None, None, None if ok else "check returned a falsy value", ctype, duration, when
    )


class SyncRunner:
    """A small pool of daemon threads for sync checks.

    Daemon threads, not ThreadPoolExecutor: a hung check must not hold up interpreter exit, and the pool is
    shared by every loop that probes this checker (the app's loop, a test's loop, uvicorn's thread). A check
    that hangs keeps its thread, so the pool never holds more than `max_workers` threads, hung or not; a
    check still running is never submitted again (see run_checks), so the queue holds at most one entry per
    check.
    """

    def __init__(self, max_workers: int, name: str = "health") -> None:
        self._max = max_workers
        self._name = name
        self._busy: set[Check] = set()
        self._queue: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Check]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._pending = 0
        self._inflight: set[Check] = set()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_in_child(ref))

    def _after_fork(self) -> None:
        # A forked child (gunicorn --preload) has none of the parent's workers: counting them as idle would leave
        # every sync check queued until it timed out, and a check one of them was running would stay "running".
        for check in self._inflight:
            check.running = False
            check.inflight = check.inflight_loop = None
        self._inflight = set()
        self._lock = threading.Lock()
        self._queue = queue.SimpleQueue()
        self._threads = self._idle = self._pending = 0

    def submit(self, loop: asyncio.AbstractEventLoop, check: Check) -> asyncio.Future[Any]:
        """Run `check.fn` on a worker; the future resolves on `loop` to `(value, exception)`."""
        raw: asyncio.Future[Any] = loop.create_future()
        check.running = True
        check.inflight, check.inflight_loop = raw, loop
        with self._lock:
            self._pending += 1
            self._inflight.add(check)
            self._queue.put((loop, raw, check))
            spawn = self._pending > self._idle and self._threads < self._max
            if spawn:
                self._threads += 1
        if spawn:
            threading.Thread(target=self._work, name=f"victor-{self._name}-{self._threads}", daemon=True).start()
        return follow(loop, raw)

    def hung(self) -> int:
        """Checks running on a worker thread for longer than their timeout (each holds one thread)."""
        now = time.monotonic()
        with self._lock:
            return sum(1 for check in self._busy if now - check.started > check.timeout)

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            loop, fut, check = self._queue.get()
            with self._lock:
                self._idle -= 1
                self._pending -= 1
                check.started = time.monotonic()
                self._busy.add(check)
            value: Any = None
            error: BaseException | None = None
            try:
                value = check.fn()
            except BaseException as exc:  # reported as a failed check; the worker must survive
                error = exc
            finally:
                with self._lock:
                    self._busy.discard(check)
                check.running = False
                self._inflight.discard(check)
            # RuntimeError: that loop has closed, nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, fut, (value, error))


def _reset_in_child(ref: weakref.ReferenceType[SyncRunner]) -> None:
    runner = ref()
    if runner is not None:
        runner._after_fork()


def follow(loop: asyncio.AbstractEventLoop, raw: asyncio.Future[Any]) -> asyncio.Future[Any]:
    """A future of its own for one probe, resolved with the run's outcome: a probe that times out cancels
    its future, never the run another probe is still waiting for."""
    derived: asyncio.Future[Any] = loop.create_future()

    def copy(done: asyncio.Future[Any]) -> None:
        if not derived.done() and not done.cancelled():
            derived.set_result(done.result())

    raw.add_done_callback(copy)
    return derived


def _resolve(fut: asyncio.Future[Any], outcome: tuple[Any, BaseException | None]) -> None:
    if not fut.done():  # cancelled when the check timed out
        fut.set_result(outcome)


class _Gate:
    """Counts outstanding checks and wakes the probe when all have finished or timed out."""

    __slots__ = ("ends", "futs", "remaining", "timed_out", "waiter")

    def __init__(self, waiter: asyncio.Future[None], n: int) -> None:
        self.waiter = waiter
        self.remaining = n
        self.ends: list[float] = [0.0] * n
        self.futs: list[asyncio.Future[Any] | None] = [None] * n
        self.timed_out: list[bool] = [False] * n

    def finish(self, i: int, timed_out: bool) -> None:
        if self.ends[i]:
            return
        self.ends[i] = time.perf_counter()
        self.timed_out[i] = timed_out
        self.remaining -= 1
        if self.remaining == 0 and not self.waiter.done():
            self.waiter.set_result(None)

    def expire(self, indices: list[int]) -> None:
        for i in indices:
            if not self.ends[i]:
                self.finish(i, True)
                fut = self.futs[i]
                if fut is not None:
                    fut.cancel()


def _silence(fut: asyncio.Future[Any]) -> None:
    # A check that finished after its timeout: fetch its exception so asyncio does not log it as unretrieved.
    if not fut.cancelled():
        fut.exception()


async def run_checks(checks: Sequence[Check], runner: SyncRunner) -> dict[str, CheckResult]:
    """Run `checks` concurrently; every check ends as a CheckResult, none raises, none outlives its timeout."""
    if not checks:
        return {}
    loop = asyncio.get_running_loop()
    n = len(checks)
    gate = _Gate(loop.create_future(), n)
    start = time.perf_counter()
    wall = time.time()
    early: dict[int, CheckResult] = {}
    # One timer per distinct timeout, not per check: the usual case (all 1 s) costs a single heap entry.
    groups: dict[float, list[int]] = {}
    for i, check in enumerate(checks):
        if check.is_async:
            try:
                aw = check.fn()
                if inspect.iscoroutine(aw):
                    fut: asyncio.Future[Any] = loop.create_task(aw)
                elif inspect.isawaitable(aw):
                    fut = asyncio.ensure_future(aw, loop=loop)  # raises for a future of another loop
                else:
                    early[i] = interpret(aw, check, 0.0, wall)
                    gate.finish(i, False)
                    continue
            except Exception as exc:
                early[i] = CheckResult(_FAIL, None, None, short_reason(exc), check.component_type, 0.0, wall)
                gate.finish(i, False)
                continue
        elif check.running and check.inflight_loop is loop and check.inflight is not None and not check.inflight.done():
            fut = follow(loop, check.inflight)
        elif check.running:
            reason = f"timed out: previous run still in progress (limit {check.timeout:g}s)"
            early[i] = CheckResult(_FAIL, None, None, reason, check.component_type, 0.0, wall)
            gate.finish(i, False)
            continue
        else:
            fut = runner.submit(loop, check)
        gate.futs[i] = fut
        fut.add_done_callback(lambda _f, i=i: gate.finish(i, False))  # type: ignore[misc]
        groups.setdefault(check.timeout, []).append(i)
    timers = [loop.call_at(loop.time() + t, gate.expire, idx) for t, idx in groups.items()]
    try:
        if gate.remaining:
            await gate.waiter
    except BaseException:
        for f in gate.futs:
            if f is not None:
                f.cancel()
        raise
    finally:
        for timer in timers:
            timer.cancel()
    results: dict[str, CheckResult] = {}
    rows = zip(checks, gate.futs, gate.ends, gate.timed_out, strict=True)
    for i, (check, outcome, end, timed_out) in enumerate(rows):
        if outcome is None:
            results[check.name] = early[i]
        elif timed_out:
            outcome.add_done_callback(_silence)
            reason = f"timed out after {check.timeout:g}s"
            results[check.name] = CheckResult(_FAIL, None, None, reason, check.component_type, end - start, wall)
        elif outcome.cancelled():
            results[check.name] = CheckResult(_FAIL, None, None, "cancelled", check.component_type, end - start, wall)
        else:
            error = outcome.exception()
            if error is None:
                value = outcome.result()
                if not check.is_async:
                    value, error = value
            if error is None:
                results[check.name] = interpret(value, check, end - start, wall)
            else:
                reason = short_reason(error)
                results[check.name] = CheckResult(_FAIL, None, None, reason, check.component_type, end - start, wall)
    return results
