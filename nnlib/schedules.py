"""Deprecated: the old home of the learning-rate schedules (now nnlib.callbacks.lr_schedules).
Importing it warns (DeprecationWarning) and re-exports the same objects; it will be removed in a
later release (see CHANGELOG.md)."""

import warnings

from .callbacks.lr_schedules import CosineDecay, ExponentialDecay, LearningRateSchedule, ReduceLROnPlateau, StepDecay

__all__ = ["LearningRateSchedule", "StepDecay", "ExponentialDecay", "CosineDecay", "ReduceLROnPlateau"]

warnings.warn("nnlib.schedules is deprecated: import the schedules from nnlib.callbacks",
              DeprecationWarning, stacklevel=2)
