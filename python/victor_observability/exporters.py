"""Moved to `victor_observability.tracing.exporters`; this import path is kept for one release (0.2) and warns."""

import sys
import warnings

from victor_observability.tracing import exporters as _moved

warnings.warn(
    "victor_observability.exporters moved to victor_observability.tracing.exporters", DeprecationWarning, stacklevel=2
)
sys.modules[__name__] = _moved
