"""Every docstring example of the installed package runs and shows what it says (doctests as tests)."""

import doctest
import importlib
import pkgutil
import warnings

import pytest
import victor_observability

# The old module paths alias their new homes (and warn); their examples are run there.
MOVED = {"collector", "http", "prometheus_bridge", "system", "exporters", "otel", "health_http"}


def _modules() -> list[str]:
    names = ["victor_observability"]
    for info in pkgutil.walk_packages(victor_observability.__path__, "victor_observability."):
        if info.name.rsplit(".", 1)[-1] in MOVED and info.name.count(".") == 1:
            continue
        names.append(info.name)
    return sorted(names)


MODULES = _modules()


def test_the_walk_finds_the_packages() -> None:
    for name in ("victor_observability.metrics.collector", "victor_observability.tracing.tracer"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
