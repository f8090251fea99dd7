"""extract_context swallows a carrier's errors, but never a KeyboardInterrupt or SystemExit raised inside it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from victor_observability import DistributedTracer


class Carrier:
    """A mapping-like carrier whose items() raises `error` part-way through."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def items(self) -> Iterator[tuple[str, str]]:
        yield ("x-other", "1")
        raise self.error


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3)])
def test_base_exceptions_raised_by_a_carrier_propagate(error: BaseException) -> None:
    tracer = DistributedTracer("svc", flush_on_exit=False)
    with pytest.raises(type(error)):
        tracer.extract_context(Carrier(error))


def test_exceptions_raised_by_a_carrier_still_mean_no_context() -> None:
    tracer = DistributedTracer("svc", flush_on_exit=False)
    assert tracer.extract_context(Carrier(ValueError("odd carrier"))) is None
    assert tracer.extract_context(Carrier(RuntimeError("odd carrier"))) is None
