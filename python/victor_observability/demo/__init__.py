"""The main job: an example service instrumented with everything, driven by a built-in load generator.

Run it with ``python -m victor_observability demo`` (or ``victor-observability demo``); needs the ``demo`` extra
(FastAPI and uvicorn).

>>> from victor_observability.demo import DemoOptions
>>> DemoOptions(duration=10, rate=50).rate
50
"""

from victor_observability.demo.runner import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]
