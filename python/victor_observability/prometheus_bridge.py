"""Moved to `victor_observability.metrics.bridge`; this import path is kept for one release (0.2) and warns."""

import sys
import warnings

from victor_observability.metrics import bridge as _moved

warnings.warn(
    "victor_observability.prometheus_bridge moved to victor_observability.metrics.bridge",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _moved
