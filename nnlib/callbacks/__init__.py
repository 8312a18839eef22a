"""Callbacks: hooks into ``fit``, Keras's protocol.

- :mod:`~nnlib.callbacks.base`: :class:`Callback`, :class:`CallbackList`, :class:`History`;
- :mod:`~nnlib.callbacks.stopping`: ConvergenceStop (the loss-change rule), EarlyStopping, TerminateOnNaN;
- :mod:`~nnlib.callbacks.logging`: ProgressLogger, CSVLogger;
- :mod:`~nnlib.callbacks.checkpoint`: ModelCheckpoint;
- :mod:`~nnlib.callbacks.lr_schedules`: StepDecay, ExponentialDecay, CosineDecay, ReduceLROnPlateau;
- :mod:`~nnlib.callbacks.gradient_monitor`: GradientMonitor, GradientHealthWarning.
"""

from .base import Callback, CallbackList, History
from .checkpoint import ModelCheckpoint
from .gradient_monitor import GradientHealthWarning, GradientMonitor
from .logging import CSVLogger, ProgressLogger
from .lr_schedules import CosineDecay, ExponentialDecay, LearningRateSchedule, ReduceLROnPlateau, StepDecay
from .stopping import ConvergenceStop, EarlyStopping, TerminateOnNaN

__all__ = ["Callback", "CallbackList", "History", "ConvergenceStop", "ProgressLogger", "ModelCheckpoint",
           "EarlyStopping", "TerminateOnNaN", "CSVLogger", "GradientMonitor", "GradientHealthWarning",
           "LearningRateSchedule", "StepDecay", "ExponentialDecay", "CosineDecay", "ReduceLROnPlateau"]
