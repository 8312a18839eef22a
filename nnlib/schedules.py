"""Learning-rate schedules and ReduceLROnPlateau, as callbacks.

Pass them to ``fit(callbacks=[...])``. A schedule sets ``model.optimizer.lr`` at the
start of every epoch from a formula of the epoch number (0-based, as PyTorch's
``StepLR``/``ExponentialLR``/``CosineAnnealingLR`` stepped once per epoch), so a run
resumed with ``initial_epoch=k`` gets the same rates. ``ReduceLROnPlateau`` follows
Keras: it divides the rate when a monitored figure stops improving.

Every one of them keeps ``lrs``, the rate used in each epoch of the last ``fit``
(History records its logs before the other callbacks run, so the rate cannot be
slipped into those logs; if the model exposes the History as ``model.history``,
an ``lr`` entry is added there too).

>>> import nnlib as nn
>>> from nnlib.schedules import StepDecay
>>> model.fit(x, y, epochs=30, callbacks=[StepDecay(step_size=10, gamma=0.5)])  # doctest: +SKIP
"""

from __future__ import annotations

import math
import operator
from typing import Any

from .callbacks import Callback, History

__all__ = ["LearningRateSchedule", "StepDecay", "ExponentialDecay", "CosineDecay", "ReduceLROnPlateau",
           "record_in_history"]


def _positive_number(value: Any, what: str, *, allow_zero: bool = False, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0) and (high is None or v <= high)
    if not ok:
        low = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{what} must be a finite number {low}{'' if high is None else f' and <= {high:g}'}, "
                         f"got {value!r}")
    return v


def _int(value: Any, what: str, low: int) -> int:
    try:
        n = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an int >= {low}, got {value!r}") from None
    if isinstance(value, bool) or n < low:
        raise ValueError(f"{what} must be an int >= {low}, got {value!r}")
    return n


def record_in_history(model: Any, key: str, value: float) -> bool:
    """Append ``value`` under ``key`` to ``model.history`` (a History) for the epoch it just recorded.

    Earlier epochs without a value are padded with NaN so the list stays aligned
    with ``History.epoch``. Returns False (and does nothing) when the model has no
    ``history`` attribute holding a History.
    """
    history = getattr(model, "history", None)
    if not isinstance(history, History):
        return False
    values = history.history.setdefault(key, [])
    while len(values) < len(history.epoch) - 1:
        values.append(math.nan)
    values.append(value)
    return True


def _optimizer(model: Any, owner: str) -> Any:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "lr"):
        raise RuntimeError(f"{owner} needs a compiled model: call model.compile(optimizer=...) before fit()")
    return optimizer


class LearningRateSchedule(Callback):
    """Base class: ``lr(epoch) = schedule(epoch, initial_lr)``, set at each epoch's start.

    Subclasses implement :meth:`lr_at`.

    Parameters
    ----------
    initial_lr : float > 0, optional
        The rate at epoch 0. By default the optimizer's ``lr`` the first time this
        schedule sees the model (kept afterwards, so a second ``fit`` continues
        from the same base); pass it when resuming a run whose optimizer already
        holds a decayed rate.

    Attributes
    ----------
    lrs : list of float
        The rate used in each epoch of the last ``fit``.
    """

    def __init__(self, initial_lr: float | None = None) -> None:
        super().__init__()
        self.initial_lr = None if initial_lr is None else _positive_number(initial_lr, "initial_lr")
        self.lrs: list[float] = []

    def lr_at(self, epoch: int, initial_lr: float) -> float:
        """The learning rate for 0-based ``epoch``."""
        raise NotImplementedError

    def on_train_begin(self, logs=None):
        optimizer = _optimizer(self.model, type(self).__name__)
        if self.initial_lr is None:
            self.initial_lr = float(optimizer.lr)
        self.lrs = []

    def on_epoch_begin(self, epoch, logs=None):
        lr = float(self.lr_at(epoch, self.initial_lr))
        self.model.optimizer.lr = lr
        self.lrs.append(lr)

    def on_epoch_end(self, epoch, logs=None):
        if self.lrs:
            record_in_history(self.model, "lr", self.lrs[-1])

    def get_config(self) -> dict[str, Any]:
        return {"initial_lr": self.initial_lr}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class StepDecay(LearningRateSchedule):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs (PyTorch's ``StepLR``).

    ``lr(epoch) = initial_lr * gamma ** (epoch // step_size)``

    Parameters
    ----------
    step_size : int >= 1
    gamma : float in (0, 1], default 0.1
    initial_lr : float, optional
        See :class:`LearningRateSchedule`.
    """

    def __init__(self, step_size: int, gamma: float = 0.1, initial_lr: float | None = None) -> None:
        super().__init__(initial_lr)
        self.step_size = _int(step_size, "step_size", 1)
        self.gamma = _positive_number(gamma, "gamma", high=1.0)

    def lr_at(self, epoch, initial_lr):
        return initial_lr * self.gamma ** (epoch // self.step_size)

    def get_config(self):
        return {"step_size": self.step_size, "gamma": self.gamma, **super().get_config()}


class ExponentialDecay(LearningRateSchedule):
    """Multiply the rate by ``gamma`` every epoch (PyTorch's ``ExponentialLR``).

    ``lr(epoch) = initial_lr * gamma ** epoch``

    Parameters
    ----------
    gamma : float in (0, 1]
    initial_lr : float, optional
        See :class:`LearningRateSchedule`.
    """

    def __init__(self, gamma: float, initial_lr: float | None = None) -> None:
        super().__init__(initial_lr)
        self.gamma = _positive_number(gamma, "gamma", high=1.0)

    def lr_at(self, epoch, initial_lr):
        return initial_lr * self.gamma ** epoch

    def get_config(self):
        return {"gamma": self.gamma, **super().get_config()}


class CosineDecay(LearningRateSchedule):
    """Half a cosine from ``initial_lr`` down to ``eta_min`` over ``T_max`` epochs.

    ``lr(epoch) = eta_min + (initial_lr - eta_min) * (1 + cos(pi * min(epoch, T_max) / T_max)) / 2``

    PyTorch's ``CosineAnnealingLR`` formula; after ``T_max`` epochs the rate stays at
    ``eta_min`` (as Keras's ``CosineDecay``) instead of rising again.

    Parameters
    ----------
    T_max : int >= 1
        Epochs to reach ``eta_min``.
    eta_min : float >= 0, default 0
        The final rate. An optimizer with ``lr = 0`` leaves the weights unchanged.
    initial_lr : float, optional
        See :class:`LearningRateSchedule`.
    """

    def __init__(self, T_max: int, eta_min: float = 0.0, initial_lr: float | None = None) -> None:  # noqa: N803
        super().__init__(initial_lr)
        self.T_max = _int(T_max, "T_max", 1)
        self.eta_min = _positive_number(eta_min, "eta_min", allow_zero=True)

    def lr_at(self, epoch, initial_lr):
        t = min(epoch, self.T_max)
        return self.eta_min + (initial_lr - self.eta_min) * (1.0 + math.cos(math.pi * t / self.T_max)) / 2.0

    def get_config(self):
        return {"T_max": self.T_max, "eta_min": self.eta_min, **super().get_config()}


class ReduceLROnPlateau(Callback):
    """Multiply the rate by ``factor`` when ``monitor`` has stopped improving (Keras's rule).

    After each epoch: an improvement is ``value < best - min_delta`` (mode "min") or
    ``value > best + min_delta`` (mode "max"); it sets ``best`` and resets ``wait``.
    Otherwise, outside a cooldown, ``wait`` grows by one, and when it reaches
    ``patience`` the rate becomes ``max(lr * factor, min_lr)`` (if ``lr > min_lr``),
    ``wait`` returns to 0 and a cooldown of ``cooldown`` epochs starts, during which
    ``wait`` stays at 0. State is reset at the start of each ``fit``.

    Parameters
    ----------
    monitor : str, default "val_loss"
        Key of the epoch logs.
    factor : float in (0, 1), default 0.1
    patience : int >= 0, default 10
    min_delta : float >= 0, default 1e-4
    min_lr : float >= 0, default 0
    cooldown : int >= 0, default 0
    mode : {"auto", "min", "max"}, default "auto"
        "auto" maximizes names containing "acc", minimizes the rest (as Keras).
    verbose : bool, default False
        Print a line when the rate is reduced.

    Attributes
    ----------
    best : float
    wait : int
    cooldown_counter : int
    lrs : list of float
        The rate used in each epoch of the last ``fit``.
    reductions : list of tuple (epoch, old_lr, new_lr)
        0-based epochs after which the rate was reduced.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, min_delta: float = 1e-4,
                 min_lr: float = 0.0, cooldown: int = 0, mode: str = "auto", verbose: bool = False) -> None:
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be a non-empty str, got {monitor!r}")
        factor = _positive_number(factor, "factor")
        if factor >= 1.0:
            raise ValueError(f"factor must be in (0, 1): the rate must shrink, got {factor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if not isinstance(verbose, bool):
            raise ValueError(f"verbose must be True or False, got {verbose!r}")
        self.monitor = monitor
        self.factor = factor
        self.patience = _int(patience, "patience", 0)
        self.min_delta = _positive_number(min_delta, "min_delta", allow_zero=True)
        self.min_lr = _positive_number(min_lr, "min_lr", allow_zero=True)
        self.cooldown = _int(cooldown, "cooldown", 0)
        self.mode = mode
        self.verbose = verbose
        self._maximize = mode == "max" or (mode == "auto" and "acc" in monitor)
        self.lrs: list[float] = []
        self.reductions: list[tuple[int, float, float]] = []
        self._reset()

    def _reset(self) -> None:
        self.best = -math.inf if self._maximize else math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def _improved(self, value: float) -> bool:
        if self._maximize:
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def on_train_begin(self, logs=None):
        _optimizer(self.model, "ReduceLROnPlateau")
        logged = self.params.get("metrics")
        if logged is not None and self.monitor not in logged:
            raise ValueError(f"ReduceLROnPlateau monitors {self.monitor!r}, which fit does not log; available keys: "
                             f"{sorted(logged)} (the val_ keys need validation_data or validation_split)")
        self._reset()
        self.lrs, self.reductions = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.lrs.append(float(self.model.optimizer.lr))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(f"ReduceLROnPlateau monitors {self.monitor!r}, which is not in the epoch logs; "
                             f"available keys: {sorted(logs)}")
        if self.lrs:
            record_in_history(self.model, "lr", self.lrs[-1])
        value = float(logs[self.monitor])
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(value):
            self.best, self.wait = value, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                optimizer = self.model.optimizer
                old = float(optimizer.lr)
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    optimizer.lr = new
                    self.reductions.append((epoch, old, new))
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reduced the learning rate from {old:.4g} "
                              f"to {new:.4g} ({self.monitor} did not improve for {self.wait} epochs)")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def __repr__(self) -> str:
        return (f"ReduceLROnPlateau(monitor={self.monitor!r}, factor={self.factor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta!r}, min_lr={self.min_lr!r}, cooldown={self.cooldown})")
