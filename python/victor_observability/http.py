"""Moved to `victor_observability.metrics.http`; this import path is kept for one release (0.2) and warns."""

import sys
import warnings

from victor_observability.metrics import http as _moved

warnings.warn("victor_observability.http moved to victor_observability.metrics.http", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
