"""Learning-rate schedules and ReduceLROnPlateau, as callbacks.

Pass them to ``fit(callbacks=[...])``. A schedule sets ``model.optimizer.lr`` at the
start of every epoch from a formula of the epoch number (0-based, as PyTorch's
``StepLR``/``ExponentialLR``/``CosineAnnealingLR`` stepped once per epoch), so a run
resumed with ``initial_epoch=k`` gets the same rates. ``ReduceLROnPlateau`` follows
Keras: it divides the rate when a monitored figure stops improving.

Each puts the rate an epoch ran with into that epoch's logs as ``lr`` (History records
it) and keeps ``lrs``, the rates of the last ``fit``.

>>> import nnlib as nn
>>> model.fit(x, y, epochs=30, callbacks=[nn.StepDecay(step_size=10, gamma=0.5)])  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

from .._validation import check_bool, check_int, check_number
from .base import Callback, check_monitor_args, monitored, require_logged

__all__ = ["LearningRateSchedule", "StepDecay", "ExponentialDecay", "CosineDecay", "ReduceLROnPlateau"]


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
        self.initial_lr = None if initial_lr is None else check_number(initial_lr, "initial_lr", 0.0, low_open=True)
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
        if self.lrs and logs is not None:
            logs["lr"] = self.lrs[-1]  # History, called last, records it

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
        self.step_size = check_int(step_size, "step_size", 1)
        self.gamma = check_number(gamma, "gamma", 0.0, 1.0, low_open=True, high_open=False)

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
        self.gamma = check_number(gamma, "gamma", 0.0, 1.0, low_open=True, high_open=False)

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
        self.T_max = check_int(T_max, "T_max", 1)
        self.eta_min = check_number(eta_min, "eta_min", 0.0)

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
        check_monitor_args("ReduceLROnPlateau", monitor, mode, ("auto", "min", "max"))
        self.monitor, self.mode = monitor, mode
        self.factor = check_number(factor, "factor", 0.0, 1.0, low_open=True)  # (0, 1): the rate must shrink
        self.patience = check_int(patience, "patience", 0)
        self.min_delta = check_number(min_delta, "min_delta", 0.0)
        self.min_lr = check_number(min_lr, "min_lr", 0.0)
        self.cooldown = check_int(cooldown, "cooldown", 0)
        self.verbose = check_bool(verbose, "verbose")
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
        require_logged("ReduceLROnPlateau", self.monitor, self.params)
        self._reset()
        self.lrs, self.reductions = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.lrs.append(float(self.model.optimizer.lr))

    def on_epoch_end(self, epoch, logs=None):
        value = monitored("ReduceLROnPlateau", self.monitor, logs)
        if self.lrs and logs is not None:
            logs["lr"] = self.lrs[-1]  # the rate this epoch ran with; History, called last, records it
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
                    if self.verbose and self.params.get("rank", 0) == 0:  # one line, not one per process
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reduced the learning rate from {old:.4g} "
                              f"to {new:.4g} ({self.monitor} did not improve for {self.wait} epochs)")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def __repr__(self) -> str:
        return (f"ReduceLROnPlateau(monitor={self.monitor!r}, factor={self.factor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta!r}, min_lr={self.min_lr!r}, cooldown={self.cooldown})")
