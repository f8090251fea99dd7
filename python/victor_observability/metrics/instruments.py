"""The generic metrics API prometheus-client users know: Registry, Counter, Gauge, Histogram.

Each metric is a Rust family; ``labels(...)`` returns a cached Rust child whose ``inc``/``set``/
``observe`` go straight to an atomic, with no Python frame in between.

>>> reg = Registry()
>>> c = Counter("jobs_total", "Jobs run.", ["queue"], registry=reg)
>>> c.labels("default").inc()
>>> print(reg.export_text().splitlines()[2])
jobs_total{queue="default"} 1.0
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

from victor_observability import _core

log = logging.getLogger("victor_observability.metrics")

DEFAULT_SERIES_CAP: int = _core.DEFAULT_SERIES_CAP
#: Bytes a label value may take; longer ones are cut (ending in "…") and counted, so a family's
#: memory and scrape size stay within series_cap x label_value_cap.
DEFAULT_LABEL_VALUE_CAP: int = _core.DEFAULT_LABEL_VALUE_CAP
INF = float("inf")
# prometheus-client's default buckets (seconds), so a switched Histogram exposes the same series.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    INF,
)

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C")
T = TypeVar("T")


class Registry:
    """A set of metric families, exported together in registration order.

    ``prefix`` names the two internal families every registry has:
    ``<prefix>_invalid_samples_total`` and ``<prefix>_metric_series_overflow_total``
    (exposed only once they count something).
    """

    def __init__(self, prefix: str = "victor", *, _core_registry: _core.RegistryCore | None = None) -> None:
        self.prefix = prefix
        self._core = _core_registry if _core_registry is not None else _core.RegistryCore(prefix)
        self._hooks: list[Callable[[], None]] = []
        self._failed_hooks: set[int] = set()
        self._shared: dict[str, Any] = {}
        self._shared_lock = threading.Lock()

    def shared(self, key: str, factory: Callable[[], T]) -> T:
        """One object per registry and key, made by ``factory`` on first use: the metric families a
        component defines here, shared by every instance of it on this registry (a second alert manager
        or health checker on the same collector reuses them instead of tripping the duplicate check)."""
        with self._shared_lock:
            obj = self._shared.get(key)
            if obj is None:
                obj = self._shared[key] = factory()
            return obj

    def add_collect_hook(self, hook: Callable[[], None]) -> None:
        """Runs ``hook`` before every export (e.g. to refresh a computed gauge)."""
        self._hooks.append(hook)

    def _run_hooks(self) -> None:
        for hook in self._hooks:
            try:
                hook()
            except Exception:
                # A broken hook must not break the scrape; say so once.
                if id(hook) not in self._failed_hooks:
                    self._failed_hooks.add(id(hook))
                    log.exception("metrics collect hook %r failed; exporting without it", hook)

    def export(self, openmetrics: bool = False) -> bytes:
        """The exposition as bytes: Prometheus text 0.0.4, or OpenMetrics 1.0.0."""
        self._run_hooks()
        return self._core.encode(openmetrics)

    def export_text(self) -> str:
        return self.export().decode()

    def generate(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition a scraper with this Accept header asked for, and its content type."""
        openmetrics, content_type = _core.negotiate(accept)
        return self.export(openmetrics), content_type

    def samples(self) -> list[tuple[str, str, str, list[tuple[str, dict[str, str], float]]]]:
        """Every family as ``(name, type, help, [(sample, labels, value), ...])``."""
        self._run_hooks()
        return self._core.samples()

    def unregister(self, metric: MetricBase[Any] | str) -> bool:
        name = metric if isinstance(metric, str) else metric._family.name
        return self._core.unregister(name)

    def names(self) -> list[str]:
        return self._core.names()

    def clear(self) -> None:
        """Zeroes every series of every family (test fixtures); series and children stay valid."""
        self._core.reset()


REGISTRY = Registry()
"""The default registry, as prometheus-client has one."""


def _full_name(name: str, namespace: str, subsystem: str, unit: str) -> str:
    full = "_".join(p for p in (namespace, subsystem, name) if p)
    if unit and not full.endswith(f"_{unit}") and not full.endswith(f"_{unit}_total"):
        full = f"{full}_{unit}"
    return full


class MetricBase(Generic[C]):
    """What Counter, Gauge and Histogram share: definition, validation and cached children.

    ``labels(...)`` never raises for a label value: lone surrogates are escaped (``\\ud800``), values over
    ``label_value_cap`` bytes cut (ending in ``…``), and each counted in ``<prefix>_invalid_samples_total``.
    """

    _kind: ClassVar[str]

    def __init__(
        self,
        name: str,
        documentation: str = "",
        labelnames: Iterable[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: Registry | None = REGISTRY,
        *,
        series_cap: int = DEFAULT_SERIES_CAP,
        label_value_cap: int = DEFAULT_LABEL_VALUE_CAP,
        _buckets: Sequence[float] | None = None,
        _multiprocess_mode: str = "all",
    ) -> None:
        full = _full_name(name, namespace, subsystem, unit)
        if isinstance(labelnames, str) or not isinstance(labelnames, Iterable):
            raise ValueError(f"metric {full!r}: labelnames must be a sequence of str, not {labelnames!r}")
        self._labelnames = tuple(labelnames)
        if not all(isinstance(n, str) for n in self._labelnames):
            raise ValueError(f"metric {full!r}: labelnames must be a sequence of str, not {self._labelnames!r}")
        target = registry if registry is not None else Registry()
        self._registry = target
        self._family = target._core.family(
            self._kind,
            full,
            documentation,
            list(self._labelnames),
            None if _buckets is None else [float(b) for b in _buckets],
            False,
            series_cap,
            label_value_cap,
            _multiprocess_mode,
        )
        self._series_cap = series_cap
        self._display_name = full
        self._children: dict[tuple[Any, ...], C] = {}
        self._lock = threading.Lock()
        self._unlabelled: C | None = self._family.labels() if not self._labelnames else None

    @property
    def name(self) -> str:
        """The name as defined (a counter's family name, without ``_total``, is ``_family.name``)."""
        return self._display_name

    def labels(self, *values: Any, **kwvalues: Any) -> C:
        """The child of one label set: positional values in label-name order, or by name."""
        if not self._labelnames:
            raise ValueError(f"metric {self.name!r}: no label names were set when constructing it")
        if kwvalues:
            if values:
                raise ValueError(f"metric {self.name!r}: pass label values by position or by name, not both")
            if set(kwvalues) != set(self._labelnames):
                raise ValueError(f"metric {self.name!r}: expected labels {self._labelnames}, got {tuple(kwvalues)}")
            values = tuple(kwvalues[n] for n in self._labelnames)
        try:
            child = self._children.get(values)
        except TypeError:
            # An unhashable value (a list) is labelled by its str(), like any other object; it is not cached.
            uncached: C = self._family.labels(*values)
            return uncached
        if child is None:
            child = self._family.labels(*values)
            # Past the cap the family folds new label sets; do not let this cache grow without bound.
            if len(self._children) < self._series_cap:
                with self._lock:
                    self._children[values] = child
        return child

    def clear(self) -> None:
        """Removes every labelled series."""
        with self._lock:
            self._children.clear()
        self._family.clear()

    def _only(self) -> C:
        if self._unlabelled is None:
            raise ValueError(f"metric {self.name!r} has labels {self._labelnames}: call .labels(...) first")
        return self._unlabelled

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, labelnames={self._labelnames!r})"


class _Timer:
    """Context manager and decorator timing a block in seconds into a callback."""

    def __init__(self, record: Callable[[float], None]) -> None:
        self._record = record
        self._starts: list[float] = []

    def __enter__(self) -> _Timer:
        self._starts.append(time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        self._record(max(time.perf_counter() - self._starts.pop(), 0.0))

    def __call__(self, fn: F) -> F:
        return _wrap(fn, lambda: _Timer(self._record))


class _InProgress:
    """Context manager and decorator counting blocks in progress on a gauge child."""

    def __init__(self, child: _core.GaugeChild) -> None:
        self._child = child

    def __enter__(self) -> _InProgress:
        self._child.inc()
        return self

    def __exit__(self, *exc: object) -> None:
        self._child.dec()

    def __call__(self, fn: F) -> F:
        return _wrap(fn, lambda: self)


class _CountExceptions:
    def __init__(self, child: _core.CounterChild, exception: type[BaseException]) -> None:
        self._child, self._exception = child, exception

    def __enter__(self) -> _CountExceptions:
        return self

    def __exit__(self, typ: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if typ is not None and issubclass(typ, self._exception):
            self._child.inc()

    def __call__(self, fn: F) -> F:
        return _wrap(fn, lambda: self)


def _wrap(fn: F, make: Callable[[], Any]) -> F:
    """Wraps a sync or async function so each call runs inside a fresh context manager."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            with make():
                return await fn(*args, **kwargs)

        return awrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with make():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class Counter(MetricBase[_core.CounterChild]):
    """A monotonic counter. ``inc`` with a negative amount raises ValueError.

    >>> c = Counter("requests_total", "Requests.", registry=Registry())
    >>> c.inc(); c.get()
    1.0
    """

    _kind = "counter"

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)

    def get(self) -> float:
        return self._only().get()

    def count_exceptions(self, exception: type[BaseException] = Exception) -> _CountExceptions:
        """Counts exceptions of ``exception`` leaving a block or function (they still propagate)."""
        return _CountExceptions(self._only(), exception)


class Gauge(MetricBase[_core.GaugeChild]):
    """A value that goes up and down.

    >>> g = Gauge("queue_depth", "Jobs waiting.", registry=Registry())
    >>> g.set(3); g.dec(); g.get()
    2.0
    """

    _kind = "gauge"

    def __init__(self, *args: Any, multiprocess_mode: str = "all", **kwargs: Any) -> None:
        # How this gauge's per-process values combine in multi-process mode (see multiprocess.py).
        super().__init__(*args, _multiprocess_mode=multiprocess_mode, **kwargs)

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._only().dec(amount)

    def set(self, value: float) -> None:
        self._only().set(value)

    def get(self) -> float:
        return self._only().get()

    def set_to_current_time(self) -> None:
        self._only().set(time.time())

    def track_inprogress(self) -> _InProgress:
        """Context manager and decorator: +1 while a block or call runs."""
        return _InProgress(self._only())

    def set_function(self, fn: Callable[[], float]) -> None:
        """Evaluates ``fn`` at every export and exposes its value."""
        child = self._only()
        self._registry.add_collect_hook(lambda: child.set(float(fn())))


class Histogram(MetricBase[_core.HistogramChild]):
    """Observations counted in cumulative buckets (``+Inf`` is always added), with a sum.

    >>> h = Histogram("latency_seconds", "Latency.", buckets=(0.1, 1.0), registry=Registry())
    >>> with h.time():
    ...     pass
    >>> h.get()
    1.0
    """

    _kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str = "",
        labelnames: Iterable[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: Registry | None = REGISTRY,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        *,
        series_cap: int = DEFAULT_SERIES_CAP,
        label_value_cap: int = DEFAULT_LABEL_VALUE_CAP,
    ) -> None:
        super().__init__(
            name,
            documentation,
            labelnames,
            namespace,
            subsystem,
            unit,
            registry,
            series_cap=series_cap,
            label_value_cap=label_value_cap,
            _buckets=buckets,
        )

    def observe(self, value: float, exemplar: Mapping[str, str] | None = None) -> None:
        """Counts ``value``; its bucket keeps ``exemplar`` (or the current sampled span's ids) as its exemplar."""
        self._only().observe(value, exemplar)

    def get(self) -> float:
        """The number of observations."""
        return self._only().get()

    def time(self) -> _Timer:
        """Context manager and decorator observing the duration of a block or call, in seconds."""
        child = self._only()
        return _Timer(child.observe)
