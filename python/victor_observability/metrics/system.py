"""System metrics from psutil, sampled off the request path: a non-blocking read and a background sampler."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import psutil

log = logging.getLogger("victor_observability.system")


@dataclass(frozen=True)
class SystemSample:
    memory_bytes: float
    cpu_percent: float
    disk_bytes: float
    open_fds: float | None


class SystemReader:
    """Reads the process's resources without sleeping.

    ``cpu_percent(interval=None)`` compares with the previous call instead of blocking for an
    interval; the first reading after construction is primed here so it is meaningful.
    """

    def __init__(self, disk_path: str | None = None) -> None:
        self._disk_path = disk_path or os.getcwd()
        self._watch(os.getpid())

    def _watch(self, pid: int) -> None:
        self._pid = pid
        self._process = psutil.Process(pid)
        self._process.cpu_percent(interval=None)

    def read(self) -> SystemSample:
        # A forked child (gunicorn --preload, multiprocessing) must read its own process, not its parent's.
        pid = os.getpid()
        if pid != self._pid:
            self._watch(pid)
        p = self._process
        try:
            fds: float | None = float(p.num_fds())
        except (AttributeError, psutil.Error):  # num_fds is POSIX-only
            fds = None
        try:
            disk = float(psutil.disk_usage(self._disk_path).used)
        except OSError:
            disk = float("nan")
        return SystemSample(
            memory_bytes=float(p.memory_info().rss),
            cpu_percent=float(p.cpu_percent(interval=None)),
            disk_bytes=disk,
            open_fds=fds,
        )


class BackgroundSampler:
    """Calls ``sample`` every ``interval`` seconds on a daemon thread until ``stop()``."""

    def __init__(self, sample: Callable[[], object], interval: float = 30.0) -> None:
        if interval <= 0:
            raise ValueError(f"system sampler interval must be positive, got {interval}")
        self._sample = sample
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="victor-system-sampler", daemon=True)
        self._started = False
        self.errors = 0
        self.runs = 0
        # A forked child has no sampler thread: start one there, or a gunicorn --preload worker would keep the
        # master's sample, frozen. The weak reference lets a dropped sampler be collected; the hook stays.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _restart_in_child(ref))

    def start(self) -> BackgroundSampler:
        self._started = True
        self._thread.start()
        return self

    def _after_fork(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(True,), name="victor-system-sampler", daemon=True)
        if self._started:
            self._thread.start()

    def _run(self, sample_first: bool = False) -> None:
        # In a child the inherited sample is the parent's: replace it now rather than an interval from now.
        if sample_first:
            self._sample_once()
        while not self._stop.wait(self.interval):
            self._sample_once()

    def _sample_once(self) -> None:
        try:
            self._sample()
            self.runs += 1
        except Exception:
            self.errors += 1
            if self.errors == 1:
                log.exception("system metrics sampling failed; will keep trying")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


def _restart_in_child(ref: weakref.ReferenceType[BackgroundSampler]) -> None:
    sampler = ref()
    if sampler is not None and not sampler._stop.is_set():
        sampler._after_fork()


def monotonic() -> float:
    return time.monotonic()
