"""A component's own metric families (health probes, alerting, the tracer): one shape, one set per registry.

Each component has a Protocol of what it reports, a ``No...`` class that records nothing (the "off" object) and a
``ComponentMetrics`` subclass that defines its families on a registry. ``on(registry)`` makes that set once per
registry and prefix, so a second checker, manager or tracer on the same collector shares the families instead of
tripping the registry's duplicate-name check.

>>> from victor_observability.metrics import Counter, Registry
>>> class Pings(ComponentMetrics):
...     namespace = "pings"
...     def __init__(self, registry: Registry, prefix: str) -> None:
...         self.sent = Counter(f"{prefix}_pings_total", "Pings sent.", registry=registry)
>>> reg = Registry(prefix="demo")
>>> Pings.on(reg) is Pings.on(reg)
True
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from victor_observability.metrics.instruments import Registry

M = TypeVar("M", bound="ComponentMetrics")


class ComponentMetrics:
    """Base of a component's metric families on one registry; subclasses set `namespace` and define `__init__`."""

    namespace: ClassVar[str]

    def __init__(self, registry: Registry, prefix: str) -> None:
        raise NotImplementedError

    @classmethod
    def on(cls: type[M], registry: Registry, prefix: str | None = None) -> M:
        """The component's families on `registry` under `prefix` (default: the registry's), made on first use."""
        name = registry.prefix if prefix is None else prefix
        return registry.shared(f"{cls.namespace}:{name}", lambda: cls(registry, name))
