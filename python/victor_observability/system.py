"""Moved to `victor_observability.metrics.system`; this import path is kept for one release (0.2) and warns."""

import sys
import warnings

from victor_observability.metrics import system as _moved

warnings.warn(
    "victor_observability.system moved to victor_observability.metrics.system", DeprecationWarning, stacklevel=2
)
sys.modules[__name__] = _moved
