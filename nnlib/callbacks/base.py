"""The callback protocol: :class:`Callback`, :class:`CallbackList` and :class:`History`.

A callback sees the model only through ``model.stop_training`` (set it to stop after
the current epoch), ``model.stop_reason`` (a sentence saying why), the public
``get_weights``/``set_weights``/``save`` and the ``logs`` dicts it is handed; it may add
its own figures to an epoch's ``logs``, which :class:`History` (called last) records.
Hooks are called in list order.
"""

from __future__ import annotations

import math
from typing import Any

from .._validation import check_choice, check_name

__all__ = ["Callback", "CallbackList", "History", "check_monitor_args", "monitored", "require_logged"]


class Callback:
    """Base class; override any hook.

    Attributes
    ----------
    model : Sequential or None
        Set by ``fit`` before ``on_train_begin``.
    params : dict
        ``epochs``, ``initial_epoch``, ``steps`` (batches per epoch), ``samples``,
        ``verbose``, ``metrics`` (the names logged each epoch), ``rank`` (this process's index
        in a data-parallel fit; 0 otherwise: a callback that prints should print on rank 0 only).
    """

    #: True for a callback that only writes (files, progress output): in a data-parallel fit
    #: (:class:`nnlib.distributed.DataParallel`) only rank 0 runs it. One that changes the
    #: model or its logs must run on every process, and keeps False.
    rank_zero_only: bool = False

    def __init__(self) -> None:
        self.model = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Before the first epoch."""

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """After the last epoch; ``logs`` holds the last epoch's figures."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Before epoch ``epoch`` (0-based)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """After epoch ``epoch``; ``logs`` has ``loss``, metrics and ``val_`` entries."""

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """After each optimizer step; ``logs`` has the batch's ``size``, ``loss`` and metrics."""

    def on_nonfinite_step(self, epoch: int, batch: int, error: FloatingPointError) -> bool:
        """Step ``batch`` of ``epoch`` (both 0-based) met a non-finite loss or gradient.

        ``fit`` checks every step before the optimizer touches the weights. Return True
        to have ``fit`` stop cleanly there, after the weights are made finite if they are
        not (``fit`` then sets ``model.stop_training``, and a ``model.stop_reason`` naming
        this callback unless it set one); if no callback returns True, ``fit`` raises
        ``error`` with the epoch and batch in its message.

        Parameters
        ----------
        epoch, batch : int
            Where the step failed, 0-based.
        error : FloatingPointError
            What the step's check found (the loss or the parameter whose gradient).

        Returns
        -------
        bool
            True when this callback handled it; the default declines.
        """
        return False


class CallbackList:
    """Calls each hook on every callback, in order."""

    def __init__(self, callbacks: list[Callback], model: Any, params: dict[str, Any]) -> None:
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {cb!r}")
        self.callbacks = list(callbacks)
        self.model = model
        self.params = params  # shared with every callback: fit may update an entry (a dataset's sample count)
        #: the callbacks that override on_batch_end: fit builds batch logs only for them
        self.batch_callbacks = [cb for cb in self.callbacks if type(cb).on_batch_end is not Callback.on_batch_end]
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)
            if getattr(self.model, "stop_training", False) and not self.model.stop_reason:
                self.model.stop_reason = f"stopped by {type(cb).__name__} after epoch {epoch + 1}"

    def on_batch_end(self, batch, logs=None):
        for cb in self.batch_callbacks:
            cb.on_batch_end(batch, logs)

    def on_nonfinite_step(self, epoch: int, batch: int, error: FloatingPointError) -> Callback | None:
        """Offer the failure to every callback in turn; the first that handles it (returns True), or None.

        The callbacks after the one that handled it are not asked.
        """
        return next((cb for cb in self.callbacks if cb.on_nonfinite_step(epoch, batch, error)), None)


class History(Callback):
    """Records every epoch's logs; ``fit`` returns it.

    ``fit`` calls it after every other callback (as Keras does), so what they add to an
    epoch's ``logs`` (a schedule's ``lr``, GradientMonitor's ``grad_norm/<layer>``) is
    recorded too. Every list stays aligned with :attr:`epoch`: a key missing from an
    epoch's logs gets NaN there (before it first appeared, or when a callback skipped
    that epoch).

    Attributes
    ----------
    history : dict[str, list[float]]
        ``loss``, each metric, ``val_`` entries and what callbacks added, one value per epoch.
    epoch : list[int]
        The 0-based epoch numbers run.
    stopped_epoch : int or None
        The epoch after which training stopped early, or None if all epochs ran.
    stop_reason : str
        Why training ended, as a sentence.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.stopped_epoch: int | None = None
        self.stop_reason = ""

    @property
    def epochs_run(self) -> int:
        """How many epochs this ``fit`` call ran."""
        return len(self.epoch)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for key in logs:
            self.history.setdefault(key, [math.nan] * len(self.epoch))
        self.epoch.append(epoch)
        for key, values in self.history.items():
            values.append(logs.get(key, math.nan))

    def __repr__(self) -> str:
        return f"History(epochs_run={self.epochs_run}, stop_reason={self.stop_reason!r})"


# -- helpers for the callbacks that watch one figure of the epoch logs ---------------------
def check_monitor_args(owner: str, monitor: Any, mode: Any, modes: tuple[str, ...] = ("min", "max")) -> None:
    """Validate a ``monitor`` name and a ``mode`` for ``owner`` (a class name, for the message)."""
    check_name(monitor, f"{owner}: monitor")
    check_choice(mode, f"{owner}: mode", modes)


def monitored(owner: str, monitor: str, logs: dict[str, Any] | None) -> float:
    """``logs[monitor]`` as a float, or a ValueError listing the keys that do exist."""
    logs = logs or {}
    if monitor not in logs:
        raise ValueError(f"{owner} monitors {monitor!r}, which is not in the epoch logs; available keys: "
                         f"{sorted(logs)} (the val_ keys need validation_data or validation_split)")
    return float(logs[monitor])


def require_logged(owner: str, monitor: str, params: dict[str, Any]) -> None:
    """Fail at the start of ``fit``, not after the first epoch, when ``monitor`` will never be logged."""
    logged = params.get("metrics")
    if logged is not None and monitor not in logged:
        raise ValueError(f"{owner} monitors {monitor!r}, which fit does not log; available keys: {sorted(logged)} "
                         "(the val_ keys need validation_data or validation_split)")
