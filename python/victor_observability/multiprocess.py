"""Multi-process mode: exact service-wide metrics when a service runs several worker processes.

Set ``VICTOR_MULTIPROC_DIR`` to a writable directory before the workers start (or call
:func:`enable` before any metric is created). Each process then records into its own mmap'd
file in that directory, and every export (``/metrics``, ``export_prometheus()``,
``export_json()``, ``get_summary()``, the prometheus-client bridge) merges all of them.

>>> from victor_observability import multiprocess
>>> multiprocess.is_enabled()
False

Gauges combine by their ``multiprocess_mode`` (``Gauge(..., multiprocess_mode="livesum")``):

- ``all``: one series per process, with a ``pid`` label (the default, as in prometheus-client);
- ``sum``, ``max``, ``min``: the sum, largest or smallest over processes;
- ``mostrecent``: the value most recently set by any process;
- ``liveall``, ``livesum``, ``livemax``, ``livemin``, ``livemostrecent``: the same over the
  processes that are alive.

A dead process's counters and histograms always count. Its gauges count in ``sum``, ``max``,
``min`` and ``mostrecent``; its ``all`` series go once it is folded into the archive.
"""

from __future__ import annotations

import os

from victor_observability import _core

ENV_VAR: str = _core.MULTIPROC_ENV_VAR
"""``VICTOR_MULTIPROC_DIR``: read when the package is imported."""

GAUGE_MODES: tuple[str, ...] = (
    "all",
    "liveall",
    "sum",
    "livesum",
    "max",
    "livemax",
    "min",
    "livemin",
    "mostrecent",
    "livemostrecent",
)


def enable(path: str | os.PathLike[str]) -> None:
    """Turns multi-process mode on with ``path`` as the shared directory (created, owner-only, if missing).

    Call it before any metric is created (a collector made earlier keeps its values to itself).
    Raises ``OSError`` if the directory cannot be used, or if the mode is already on elsewhere.
    """
    _core.mp_enable(os.fspath(path))


def is_enabled() -> bool:
    """Whether exports merge the processes of a shared directory."""
    return _core.mp_is_enabled()


def directory() -> str | None:
    """The shared directory, or None in single-process mode."""
    d = _core.mp_directory()
    return None if d is None else os.fspath(d)


def store_path() -> str | None:
    """This process's own file in the directory, once it has recorded a metric."""
    p = _core.mp_store_path()
    return None if p is None else os.fspath(p)


def mark_process_dead(pid: int | None = None) -> int:
    """Folds dead processes' files into the archive now; returns how many were folded.

    For gunicorn's ``child_exit`` hook, but optional: a process is known dead by the lock its
    file loses when it exits (SIGKILL included), not by its pid, so pid reuse cannot fool it and
    every scrape tidies the directory anyway. ``pid`` is accepted for prometheus-client's
    signature and not needed.

    >>> def child_exit(server, worker):  # gunicorn.conf.py
    ...     mark_process_dead(worker.pid)
    """
    del pid
    return _core.mp_archive_dead()


def is_leader() -> bool:
    """Whether this process is the one that evaluates alert rules (always True in single-process mode).

    Leadership is a lock on ``leader.lock`` in the directory: the first process to ask takes it,
    and when it dies (however it dies) the next one to ask takes over.
    """
    return _core.mp_is_leader()
