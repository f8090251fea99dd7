"""Head samplers: the built-in Rust samplers (classes: `TraceIdRatioSampler`, `ParentBasedSampler`) and the Protocol
for samplers written in Python.

>>> from victor_observability import ParentBasedSampler, TraceIdRatioSampler
>>> ParentBasedSampler(TraceIdRatioSampler(0.1)).description
'ParentBased(root=TraceIdRatio(0.1))'
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from victor_observability._core import ParentBasedSampler, Sampler, TraceIdRatioSampler

__all__ = ["ALWAYS_OFF", "ALWAYS_ON", "CustomSampler", "ParentBasedSampler", "Sampler", "TraceIdRatioSampler"]


@runtime_checkable
class CustomSampler(Protocol):
    """A sampler written in Python (the built-in `Sampler`s run in Rust and are much cheaper).

    >>> class EveryOther:
    ...     def should_sample(self, trace_id: str, parent_sampled: bool | None, name: str) -> bool:
    ...         return int(trace_id[-1], 16) % 2 == 0
    """

    def should_sample(self, trace_id: str, parent_sampled: bool | None, name: str) -> bool: ...


ALWAYS_ON: Sampler = Sampler.always_on()
"""Samples every trace (the default)."""
ALWAYS_OFF: Sampler = Sampler.always_off()
"""Samples nothing; contexts still propagate, with the sampled flag off."""
