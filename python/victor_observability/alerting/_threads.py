"""A bounded pool of daemon threads for blocking sends, kept off asyncio's default executor."""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

#: An idle worker exits after this many seconds, so a pool per notifier costs no thread while nothing is sent.
_IDLE_EXIT = 30.0

_Job = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...]]


class DaemonPool:
    """At most `max_workers` daemon threads running blocking calls, queued beyond that.

    Not asyncio's default executor: a send that hangs there starves the application's own `to_thread` and the
    name lookups of every HTTP channel. Not a ThreadPoolExecutor either: its threads are joined at interpreter
    exit, so one call that never returns would hang the exit. A queued call whose awaiting task was cancelled
    (its attempt timed out) never starts.

    >>> import asyncio
    >>> asyncio.run(DaemonPool(2, "doc").run(lambda: 41 + 1))
    42
    """

    def __init__(self, max_workers: int, name: str) -> None:
        if max_workers < 1:
            raise ValueError(f"{name}: max_workers must be >= 1, got {max_workers!r}")
        self._max = max_workers
        self._name = name
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        # Also after a fork: the child has none of the parent's threads.
        self._pid = os.getpid()
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._threads = 0
        self._idle = 0
        self._pending = 0

    @property
    def threads(self) -> int:
        """Worker threads started so far (never more than `max_workers`)."""
        return self._threads

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        fut: Future[T] = Future()
        with self._lock:
            if self._pid != os.getpid():
                self._reset()
            self._pending += 1
            self._queue.put((fut, fn, args))
            spawn = self._pending > self._idle and self._threads < self._max
            if spawn:
                self._threads += 1
                number = self._threads
        if spawn:
            threading.Thread(target=self._work, name=f"victor-{self._name}-{number}", daemon=True).start()
        return fut

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on a worker thread; cancelling the awaiting task un-queues a call not yet started."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                fut, fn, args = self._queue.get(timeout=_IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    if self._pending == 0:  # checked under the lock submit() decides under: nothing is stranded
                        self._threads -= 1
                        return
                continue
            with self._lock:
                self._idle -= 1
                self._pending -= 1
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting task; the worker must survive
                fut.set_exception(exc)
            else:
                fut.set_result(result)
