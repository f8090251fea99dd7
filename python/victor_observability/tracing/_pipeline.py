"""The span export pipeline: a dispatcher draining the Rust queue into one bounded, retrying lane per exporter.

Nothing here runs on the request path. Spans wait in the tracer core's bounded queue (full: dropped and counted);
a dispatcher thread wakes when a batch is ready or every `schedule_delay` seconds and hands batches to each
exporter's lane. A lane holds a few batches (full: dropped and counted) and calls `export()` on a helper thread so
that a hung exporter is timed out; failures are retried with exponential backoff a bounded number of times, then
the batch is dropped and counted.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from victor_observability._core import SpanBatch, SpanData

if TYPE_CHECKING:
    from victor_observability._core import TracerCore
    from victor_observability.tracing.exporters import SpanExporter

logger = logging.getLogger("victor_observability.tracing")


class _Caller:
    """Runs one call at a time on a daemon thread, so the lane can stop waiting for a call that hangs."""

    def __init__(self, name: str) -> None:
        self._cond = threading.Condition()
        self._job: tuple[Callable[[], Any], list[Any], threading.Event] | None = None
        self._busy = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None:
                    self._cond.wait()
                fn, box, done = self._job
                self._job = None
            try:
                box.append(("ok", fn()))
            except BaseException as exc:  # an exporter's error is data here, never a crash of the worker
                box.append(("error", exc))
            with self._cond:
                self._busy = False
                self._cond.notify_all()
            done.set()

    def call(self, fn: Callable[[], Any], timeout: float) -> tuple[str, Any]:
        """("ok", result), ("error", exception), ("timeout", None), or ("busy", None) if an earlier call hangs."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return ("busy", None)
                self._cond.wait(left)
            box: list[Any] = []
            done = threading.Event()
            self._job = (fn, box, done)
            self._busy = True
            self._cond.notify_all()
        if not done.wait(max(0.0, deadline - time.monotonic())):
            return ("timeout", None)
        return box[0]  # type: ignore[no-any-return]


class _Lane:
    """One exporter's bounded batch queue, thread, retries and counters."""

    def __init__(self, exporter: SpanExporter, *, capacity: int, timeout: float, max_retries: int) -> None:
        self.exporter = exporter
        self._queue: collections.deque[SpanBatch] = collections.deque()
        self._capacity = max(1, capacity)
        self._timeout = timeout
        self._max_retries = max(0, max_retries)
        self._cond = threading.Condition()
        self._active = False
        # The batch being exported: settled exactly once, by _export or (stuck at shutdown) by abandon().
        self._current: SpanBatch | None = None
        self._stopped = False
        self._warned = False
        self.exported = 0
        self.failed = 0
        self.dropped = 0
        self.retries = 0
        self.timeouts = 0
        name = type(exporter).__name__
        self._caller = _Caller(f"victor-export-call-{name}")
        self._thread = threading.Thread(target=self._run, name=f"victor-export-{name}", daemon=True)
        self._thread.start()

    def offer(self, batch: SpanBatch) -> None:
        with self._cond:
            if self._stopped or len(self._queue) >= self._capacity:
                self.dropped += len(batch)
                return
            self._queue.append(batch)
            self._cond.notify_all()

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._active

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def abandon(self) -> None:
        """Counts the batches still waiting, and one stuck in a hung export, as dropped (shutdown ran out of
        time); a stuck export that returns later counts nothing more."""
        with self._cond:
            self.dropped += sum(len(batch) for batch in self._queue)
            self._queue.clear()
            if self._current is not None:
                self.dropped += len(self._current)
                self._current = None

    def settled(self) -> int:
        """Spans that ended failed or dropped so far (force_flush compares it before and after)."""
        return self.failed + self.dropped

    def join(self, timeout: float) -> None:
        self._thread.join(max(0.0, timeout))

    def shutdown_exporter(self, timeout: float) -> None:
        shutdown = getattr(self.exporter, "shutdown", None)
        if callable(shutdown):
            self._caller.call(shutdown, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = self._queue.popleft()
                self._active = True
                self._current = batch
            try:
                self._export(batch)
            finally:
                with self._cond:
                    self._active = False
                    if self._current is batch:  # _export raised: the spans did not go out
                        self.failed += len(batch)
                        self._current = None
                    self._cond.notify_all()

    def _settle(self, batch: SpanBatch, exported: bool) -> None:
        with self._cond:
            if self._current is not batch:
                return  # abandoned at shutdown: already counted as dropped
            self._current = None
            if exported:
                self.exported += len(batch)
            else:
                self.failed += len(batch)

    def _export(self, batch: SpanBatch) -> None:
        delay = 0.05
        for attempt in range(self._max_retries + 1):
            outcome, value = self._caller.call(lambda: _deliver(self.exporter, batch), self._timeout)
            if outcome == "ok" and value is not False:
                self._settle(batch, exported=True)
                return
            if outcome in ("timeout", "busy"):
                self.timeouts += 1
            permanent = outcome == "ok"  # export() said False: not worth retrying
            self._warn(f"{type(self.exporter).__name__} export failed ({outcome}: {value!r})")
            if permanent or attempt == self._max_retries:
                break
            self.retries += 1
            with self._cond:
                # Stopping cuts the backoff short, not the attempts: shutdown still gets one more try.
                if not self._stopped:
                    self._cond.wait(delay)
            delay = min(delay * 2, 2.0)
        self._settle(batch, exported=False)

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("%s; spans are retried, then dropped and counted in tracer.stats()", message)


class ExportPipeline:
    """Owns the dispatcher and the lanes of one tracer; started by the first exporter."""

    def __init__(
        self,
        core: TracerCore,
        *,
        max_export_batch_size: int,
        schedule_delay: float,
        export_timeout: float,
        max_retries: int,
        lane_capacity: int = 8,
    ) -> None:
        self._core = core
        self._batch = max_export_batch_size
        self._delay = max(0.001, schedule_delay)
        self._timeout = export_timeout
        self._retries = max_retries
        self._lane_capacity = lane_capacity
        self._lanes: list[_Lane] = []
        self._lock = threading.Lock()
        self._dispatcher: threading.Thread | None = None
        self._dispatching = False
        self._stopped = False
        self._shutdown_result: bool | None = None
        # A forked child (gunicorn --preload, multiprocessing) has none of the parent's threads: start them again.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _restart(ref))

    def _after_fork(self) -> None:
        # The parent's threads are gone from the child, so every lock and thread here is made anew; the core's
        # store lock is never held across a GIL release, so the child inherits it free (rust/trace/buffer.rs).
        self._lock = threading.Lock()
        if self._stopped or self._dispatcher is None:
            return
        # Spans queued before the fork are the parent's to export: exporting them here too would duplicate them.
        while self._core.drain(self._batch):
            pass
        self._lanes = [
            _Lane(lane.exporter, capacity=self._lane_capacity, timeout=self._timeout, max_retries=self._retries)
            for lane in self._lanes
        ]
        self._dispatching = False
        self._dispatcher = threading.Thread(target=self._dispatch, name="victor-span-dispatch", daemon=True)
        self._dispatcher.start()

    @property
    def exporters(self) -> list[SpanExporter]:
        return [lane.exporter for lane in self._lanes]

    def add(self, exporter: SpanExporter) -> None:
        with self._lock:
            if self._stopped:
                raise ValueError("tracer: cannot add an exporter after shutdown()")
            lane = _Lane(exporter, capacity=self._lane_capacity, timeout=self._timeout, max_retries=self._retries)
            self._lanes = [*self._lanes, lane]
            if self._dispatcher is None:
                self._core.set_exporting(True)
                self._dispatcher = threading.Thread(target=self._dispatch, name="victor-span-dispatch", daemon=True)
                self._dispatcher.start()

    def _dispatch(self) -> None:
        while True:
            self._core.wait(self._delay)
            self._dispatching = True
            try:
                self._drain()
            finally:
                self._dispatching = False
            if self._stopped:
                self._drain()
                return

    def _drain(self) -> None:
        while True:
            batch = self._core.drain(self._batch)
            if not batch:
                return
            for lane in self._lanes:
                lane.offer(batch)

    def _idle(self) -> bool:
        return not self._dispatching and self._core.queue_len() == 0 and all(lane.idle() for lane in self._lanes)

    def _lost(self) -> int:
        """Spans failed or dropped so far, anywhere between the core's queue and the exporters."""
        return int(self._core.core_stats()["queue_dropped"]) + sum(lane.settled() for lane in self._lanes)

    def force_flush(self, timeout: float) -> bool:
        """True if everything finished so far went out: idle within `timeout`, and nothing failed or was
        dropped meanwhile."""
        if self._dispatcher is None:
            return True
        lost = self._lost()
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            self._core.wake()
            if self._idle():
                # Two looks: the dispatcher may have drained between the queue check and the lane checks.
                time.sleep(0.001)
                if self._idle():
                    return self._lost() == lost
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def shutdown(self, timeout: float) -> bool:
        with self._lock:
            if self._stopped:
                # The first call's answer: a stuck batch abandoned then is not going out later.
                return True if self._shutdown_result is None else self._shutdown_result
            lost = self._lost()
            deadline = time.monotonic() + max(0.0, timeout)
            done = self.force_flush(timeout)
            self._stopped = True
            self._core.wake()
            if self._dispatcher is not None:
                self._dispatcher.join(max(0.0, deadline - time.monotonic()))
            for lane in self._lanes:
                lane.stop()
            # Spans that ended after the dispatcher's last look: handed to the (stopped) lanes, counted dropped.
            self._drain()
            for lane in self._lanes:
                lane.join(deadline - time.monotonic())
                lane.abandon()
                lane.shutdown_exporter(max(0.1, deadline - time.monotonic()))
            self._core.set_exporting(False)
            self._shutdown_result = done and self._lost() == lost
            return self._shutdown_result

    def stats(self) -> dict[str, int]:
        lanes = self._lanes
        return {
            "exported_spans": sum(lane.exported for lane in lanes),
            "export_failed_spans": sum(lane.failed for lane in lanes),
            "export_dropped_spans": sum(lane.dropped for lane in lanes),
            "export_retries": sum(lane.retries for lane in lanes),
            "export_timeouts": sum(lane.timeouts for lane in lanes),
        }

    def exporter_stats(self) -> list[dict[str, Any]]:
        return [
            {
                "exporter": type(lane.exporter).__name__,
                "exported": lane.exported,
                "failed": lane.failed,
                "dropped": lane.dropped,
                "retries": lane.retries,
                "timeouts": lane.timeouts,
            }
            for lane in self._lanes
        ]


def _restart(ref: weakref.ReferenceType[ExportPipeline]) -> None:
    pipeline = ref()
    if pipeline is not None:
        pipeline._after_fork()


def _deliver(exporter: SpanExporter, batch: SpanBatch) -> bool | None:
    # Exporters that write bytes take the batch and encode it in Rust with the GIL released (BatchSpanExporter);
    # only the others cost a SpanData per span.
    export_batch = getattr(exporter, "export_batch", None)
    if callable(export_batch):
        return export_batch(batch)  # type: ignore[no-any-return]
    return exporter.export(batch.spans())


def spans_as_dicts(spans: Sequence[SpanData]) -> list[dict[str, Any]]:
    """The JSON-ready form the file and console exporters write."""
    return [s.to_dict() for s in spans]
