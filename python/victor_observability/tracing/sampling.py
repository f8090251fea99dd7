"""Head samplers: the built-in Rust samplers (classes: `TraceIdRatioSampler`, `ParentBasedSampler`) and the Protocol
for samplers written in Python.

>>> from victor_observability import ParentBasedSampler, TraceIdRatioSampler
>>> ParentBasedSampler(TraceIdRatioSampler(0.1)).description
'ParentBased(root=TraceIdRatio(0.1))'
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from victor_observability._core import ParentBasedSampler, Sampler, TraceIdRatioSampler

__all__ = [
    "ALWAYS_OFF",
    "ALWAYS_ON",
    "CustomSampler",
    "ParentBasedSampler",
    "Sampler",
    "TraceIdRatioSampler",
    "sampler_from_env",
    "sdk_disabled",
    "service_name_from_env",
]

log = logging.getLogger("victor_observability.tracing")


@runtime_checkable
class CustomSampler(Protocol):
    """A sampler written in Python (the built-in `Sampler`s run in Rust and are much cheaper).

    >>> class EveryOther:
    ...     def should_sample(self, trace_id: str, parent_sampled: bool | None, name: str) -> bool:
    ...         return int(trace_id[-1], 16) % 2 == 0
    """

    def should_sample(self, trace_id: str, parent_sampled: bool | None, name: str) -> bool: ...


ALWAYS_ON: Sampler = Sampler.always_on()
"""Samples every trace, even one whose caller decided not to (the default is `ParentBasedSampler(ALWAYS_ON)`)."""
ALWAYS_OFF: Sampler = Sampler.always_off()
"""Samples nothing; contexts still propagate, with the sampled flag off."""


def _env(environ: Mapping[str, str], name: str) -> str:
    # The OpenTelemetry rule: an empty value is the same as unset.
    return environ.get(name, "").strip()


def sdk_disabled(environ: Mapping[str, str] = os.environ) -> bool:
    """``OTEL_SDK_DISABLED``: true only for "true" (any case); another non-empty value is false, with a warning.

    >>> sdk_disabled({"OTEL_SDK_DISABLED": "TRUE"}), sdk_disabled({"OTEL_SDK_DISABLED": ""})
    (True, False)
    """
    value = _env(environ, "OTEL_SDK_DISABLED").lower()
    if value and value not in ("true", "false"):
        log.warning("OTEL_SDK_DISABLED=%r is not true or false: read as false", value)
    return value == "true"


def _ratio(environ: Mapping[str, str]) -> float:
    raw = _env(environ, "OTEL_TRACES_SAMPLER_ARG")
    if not raw:
        return 1.0
    try:
        ratio = float(raw)
    except ValueError:
        ratio = math.nan
    if not 0.0 <= ratio <= 1.0:
        log.warning("OTEL_TRACES_SAMPLER_ARG=%r is not a probability in [0, 1]: using 1.0", raw)
        return 1.0
    return ratio


def sampler_from_env(environ: Mapping[str, str] = os.environ) -> Sampler:
    """The sampler the OpenTelemetry environment asks for: ``OTEL_TRACES_SAMPLER`` (always_on, always_off,
    traceidratio, parentbased_always_on (the default), parentbased_always_off, parentbased_traceidratio) with
    ``OTEL_TRACES_SAMPLER_ARG`` as the ratio (default 1.0); ``OTEL_SDK_DISABLED=true`` samples nothing. An unknown
    or unsupported sampler (jaeger_remote, xray, ...) is logged and the default used.

    >>> sampler_from_env({}).description
    'ParentBased(root=AlwaysOn)'
    >>> env = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    >>> sampler_from_env(env).description
    'ParentBased(root=TraceIdRatio(0.25))'
    """
    if sdk_disabled(environ):
        return ALWAYS_OFF
    name = _env(environ, "OTEL_TRACES_SAMPLER").lower()
    if name == "always_on":
        return ALWAYS_ON
    if name == "always_off":
        return ALWAYS_OFF
    if name == "traceidratio":
        return TraceIdRatioSampler(_ratio(environ))
    if name == "parentbased_always_off":
        return ParentBasedSampler(ALWAYS_OFF)
    if name == "parentbased_traceidratio":
        return ParentBasedSampler(TraceIdRatioSampler(_ratio(environ)))
    if name not in ("", "parentbased_always_on"):
        log.warning("OTEL_TRACES_SAMPLER=%r is not supported here: using parentbased_always_on", name)
    return ParentBasedSampler(ALWAYS_ON)


def service_name_from_env(default: str, environ: Mapping[str, str] = os.environ) -> str:
    """``OTEL_SERVICE_NAME`` when set (and not empty), else `default`.

    >>> service_name_from_env("victor", {"OTEL_SERVICE_NAME": "checkout"})
    'checkout'
    """
    return _env(environ, "OTEL_SERVICE_NAME") or default
