"""Moved to `victor_observability.health.http`; this import path is kept for one release (0.2) and warns."""

import sys
import warnings

from victor_observability.health import http as _moved

warnings.warn(
    "victor_observability.health_http moved to victor_observability.health.http", DeprecationWarning, stacklevel=2
)
sys.modules[__name__] = _moved
