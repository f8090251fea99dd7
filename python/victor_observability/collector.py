"""Moved to `victor_observability.metrics.collector`; this import path is kept for one release (0.2) and warns."""

import sys
import warnings

from victor_observability.metrics import collector as _moved

warnings.warn(
    "victor_observability.collector moved to victor_observability.metrics.collector", DeprecationWarning, stacklevel=2
)
sys.modules[__name__] = _moved
