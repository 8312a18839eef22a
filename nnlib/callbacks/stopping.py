"""Callbacks that end training: the loss-change stop rule, Keras's EarlyStopping, TerminateOnNaN.

Each stops only through ``model.stop_training`` (``fit`` ends after the current epoch)
or, for a non-finite step, through :meth:`~nnlib.callbacks.Callback.on_nonfinite_step`.
"""

from __future__ import annotations

import math

import numpy as np

from .._validation import check_bool, check_int, check_name, check_number
from .base import Callback, check_monitor_args, monitored, require_logged

__all__ = ["ConvergenceStop", "EarlyStopping", "TerminateOnNaN"]


class ConvergenceStop(Callback):
    """Stop when the monitored loss stops improving by at least ``tol`` (scikit-learn's rule).

    An epoch is "no improvement" when ``value > best - tol``; ``best`` is the lowest
    value seen. Training stops after ``patience`` such epochs in a row.

    Parameters
    ----------
    monitor : str, default "loss"
        A key of the epoch logs, such as ``"val_loss"``.
    tol : float >= 0, default 1e-4
    patience : int >= 1, default 5
    """

    def __init__(self, monitor: str = "loss", tol: float = 1e-4, patience: int = 5) -> None:
        super().__init__()
        self.monitor = check_name(monitor, "monitor")
        self.tol = check_number(tol, "tol", 0.0)
        self.patience = check_int(patience, "patience", 1)
        self.best = math.inf
        self.wait = 0

    def on_train_begin(self, logs=None):
        self.best, self.wait = math.inf, 0

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(f"ConvergenceStop monitors {self.monitor!r}, not in the epoch logs {sorted(logs or {})}")
        self.wait = self.wait + 1 if value > self.best - self.tol else 0
        self.best = min(self.best, value)
        if self.wait >= self.patience:
            self.model.stop_training = True
            self.model.stop_reason = (
                f"converged: {self.monitor} improved by less than tol={self.tol:g} "
                f"for {self.patience} epochs in a row"
            )


class EarlyStopping(Callback):
    """Stop training when the monitored value has stopped improving (Keras's rule).

    After each epoch: an improvement is ``value < best - min_delta`` (mode
    "min") or ``value > best + min_delta`` (mode "max"); it resets the count of
    epochs without improvement, otherwise the count grows by one, and training
    stops once it reaches ``patience`` (so ``patience=0`` stops at the first
    epoch without improvement). NaN is never an improvement. The state is reset
    at the start of every ``fit``.

    Parameters
    ----------
    monitor : str, default "val_loss"
        Key of the epoch logs.
    min_delta : float >= 0, default 0.0
        Smallest change that counts as an improvement.
    patience : int >= 0, default 0
        Epochs without improvement to allow before stopping.
    restore_best_weights : bool, default False
        At the end of training, put back the weights of the best epoch (as Keras 3,
        also when all epochs ran), using ``get_weights``/``set_weights``. Not done
        when training was cut short inside an epoch (Ctrl-C, a non-finite loss):
        then the weights stay as ``stop_reason`` describes them.
    mode : {"min", "max"}, default "min"

    Attributes
    ----------
    best : float
    best_epoch : int or None
        0-based epoch of ``best``.
    wait : int
        Epochs in a row without improvement.
    stopped_epoch : int or None
        0-based epoch after which this callback stopped training.
    restored_epoch : int or None
        0-based epoch whose weights were restored at the end of training.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 restore_best_weights: bool = False, mode: str = "min") -> None:
        super().__init__()
        check_monitor_args("EarlyStopping", monitor, mode)
        self.monitor, self.mode = monitor, mode
        self.min_delta = check_number(min_delta, "EarlyStopping: min_delta", 0.0)
        self.patience = check_int(patience, "EarlyStopping: patience", 0)
        self.restore_best_weights = check_bool(restore_best_weights, "EarlyStopping: restore_best_weights")
        self._reset()

    def _reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.best_weights: list | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.restored_epoch: int | None = None
        self._mid_epoch = False

    def on_train_begin(self, logs=None):
        require_logged("EarlyStopping", self.monitor, self.params)
        self._reset()

    def on_epoch_begin(self, epoch, logs=None):
        self._mid_epoch = True

    def on_epoch_end(self, epoch, logs=None):
        self._mid_epoch = False
        value = monitored("EarlyStopping", self.monitor, logs)
        better = (value < self.best - self.min_delta if self.mode == "min"
                  else value > self.best + self.min_delta)
        if better:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            best = "no finite value yet" if self.best_epoch is None else \
                f"best {self.monitor}={self.best:.6g} at epoch {self.best_epoch + 1}"
            restore = "; the weights of that epoch are restored" if self.best_weights is not None else ""
            self.model.stop_reason = (f"early stopping: {self.monitor} did not improve by more than "
                                      f"min_delta={self.min_delta:g} for {self.wait} epoch(s); {best}{restore}")

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None and not self._mid_epoch:
            self.model.set_weights(self.best_weights)
            self.restored_epoch = self.best_epoch


class TerminateOnNaN(Callback):
    """Turn a non-finite loss or gradient during ``fit`` into a clean stop (or a clear error).

    ``fit`` checks the loss and the gradients of every step before the optimizer
    touches the weights. Without this callback a non-finite value raises
    ``FloatingPointError``; with it, training stops there: ``fit`` returns the
    History of the finished epochs, ``model.stop_reason`` names the epoch and
    batch, and the weights are the last finite ones (those before that step; if
    an update had already overflowed them, those from the start of the epoch).

    Parameters
    ----------
    raise_error : bool, default False
        Raise ``FloatingPointError`` (naming the epoch, batch and layer) instead
        of stopping quietly.
    """

    def __init__(self, raise_error: bool = False) -> None:
        super().__init__()
        self.raise_error = check_bool(raise_error, "TerminateOnNaN: raise_error")
        self._snapshot: list | None = None

    def on_epoch_begin(self, epoch, logs=None):
        # One copy per epoch: the fallback if an update itself overflowed the weights.
        self._snapshot = self.model.get_weights()

    def on_train_end(self, logs=None):
        self._snapshot = None

    def on_nonfinite_step(self, epoch: int, batch: int, error: FloatingPointError) -> bool:
        """Stop cleanly (unless ``raise_error``): set ``model.stop_training`` and ``model.stop_reason``,
        and restore the start-of-epoch weights if the current ones are not all finite."""
        if self.raise_error:
            return False
        where = f"epoch {epoch + 1}, batch {batch + 1}"
        weights = self.model.get_weights()
        if all(np.isfinite(w).all() for w in weights):
            kept = "the weights are the last finite ones, from before that batch"
        elif self._snapshot is not None:
            self.model.set_weights(self._snapshot)
            kept = (f"the weights had already become non-finite, so those from the start of epoch {epoch + 1} "
                    "were restored")
        else:  # cannot happen inside fit: on_epoch_begin always ran
            kept = "the weights are not finite and no finite copy was kept"
        detail = str(error).split(";")[0]  # e.g. "the loss became nan", "the gradient of dense_0/weight ..."
        self.model.stop_training = True
        self.model.stop_reason = f"non-finite loss or gradient in {where} ({detail}); stopped by TerminateOnNaN: {kept}"
        return True
