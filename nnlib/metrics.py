"""Metrics by name: ``metric(y_true, y_out) -> float``.

``y_out`` is what the user sees: the loss's :meth:`~nnlib.losses.Loss.transform` of
the raw outputs (probabilities for the cross-entropies), of shape (N, D_out).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .registry import Registry

__all__ = ["accuracy", "mse", "mae", "registry", "get"]

registry = Registry("metric")


@registry.register("accuracy", "acc")
def accuracy(y_true: np.ndarray, y_out: np.ndarray) -> float:
    """Fraction of correct predictions.

    With several outputs, the predicted class is the argmax and ``y_true`` holds
    integer labels (N,) or one-hot rows (N, C). With one output (binary), the
    prediction is ``y_out > 0.5``.
    """
    y_out = np.asarray(y_out)
    y_true = np.asarray(y_true)
    if y_out.ndim == 2 and y_out.shape[1] > 1:
        # (N,) or (N, 1) integer labels, else one-hot / probability rows
        labels = y_true.reshape(-1) if y_true.ndim == 1 or y_true.shape[1] == 1 else y_true.argmax(axis=1)
        hits = y_out.argmax(axis=1) == labels
    else:
        hits = (y_out.reshape(-1) > 0.5) == (y_true.reshape(-1) > 0.5)
    if hits.size == 0:
        raise ValueError("accuracy of an empty batch is undefined")
    return int(np.count_nonzero(hits)) / hits.size  # a third of np.mean's time on a batch


def _errors(y_true: np.ndarray, y_out: np.ndarray) -> np.ndarray:
    """``y_out - y_true`` in float64, targets reshaped to the outputs' shape (N,) -> (N, 1)."""
    return np.asarray(y_out, dtype=np.float64) - np.asarray(y_true, dtype=np.float64).reshape(np.shape(y_out))


@registry.register("mse", "mean_squared_error")
def mse(y_true: np.ndarray, y_out: np.ndarray) -> float:
    """Mean squared error over all elements."""
    diff = _errors(y_true, y_out)
    return float(np.mean(diff * diff))


@registry.register("mae", "mean_absolute_error")
def mae(y_true: np.ndarray, y_out: np.ndarray) -> float:
    """Mean absolute error over all elements."""
    return float(np.mean(np.abs(_errors(y_true, y_out))))


def get(identifier: Any) -> tuple[str, Callable[[np.ndarray, np.ndarray], float]]:
    """Resolve a metric name or function to ``(name, function)``."""
    if isinstance(identifier, str):
        return registry.canonical(identifier), registry.lookup(identifier)
    if callable(identifier):
        return getattr(identifier, "registered_name", getattr(identifier, "__name__", "metric")), identifier
    raise TypeError(f"metric must be a name or a callable, got {identifier!r}")
