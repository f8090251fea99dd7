"""victor-observability: production metrics, tracing, health probes, ASGI middleware and alerting."""

from victor_observability._core import __version__

__all__ = ["__version__"]
