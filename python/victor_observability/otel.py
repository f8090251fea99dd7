"""Moved to `victor_observability.tracing.otel`; this import path is kept for one release (0.2) and warns."""

import sys
import warnings

from victor_observability.tracing import otel as _moved

warnings.warn("victor_observability.otel moved to victor_observability.tracing.otel", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
