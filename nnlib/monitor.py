"""Deprecated: the old home of GradientMonitor and explain (now nnlib.callbacks.gradient_monitor
and nnlib.explain). Importing it warns (DeprecationWarning) and re-exports the same objects; it
will be removed in a later release (see CHANGELOG.md)."""

import warnings

from .callbacks.gradient_monitor import GradientHealthWarning, GradientMonitor
from .explain import explain

__all__ = ["GradientHealthWarning", "GradientMonitor", "explain"]

warnings.warn("nnlib.monitor is deprecated: import GradientMonitor and GradientHealthWarning from "
              "nnlib.callbacks, explain from nnlib", DeprecationWarning, stacklevel=2)
