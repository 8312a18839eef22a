"""Callbacks: History, the loss-change stop rule, progress output, and Keras-like
ModelCheckpoint, EarlyStopping, TerminateOnNaN and CSVLogger.

A callback sees the model only through ``model.stop_training`` (set it to stop
after the current epoch), ``model.stop_reason`` (a sentence saying why), the
public ``get_weights``/``set_weights``/``save`` and the ``logs`` dicts it is
handed. Hooks are called in list order.
"""

from __future__ import annotations

import csv
import math
import os
import string
import sys
import time
from typing import Any

import numpy as np

__all__ = ["Callback", "CallbackList", "History", "ConvergenceStop", "ProgressLogger", "ModelCheckpoint",
           "EarlyStopping", "TerminateOnNaN", "CSVLogger", "GradientMonitor", "GradientHealthWarning",
           "StepDecay", "ExponentialDecay", "CosineDecay", "ReduceLROnPlateau"]


class Callback:
    """Base class; override any hook.

    Attributes
    ----------
    model : Sequential or None
        Set by ``fit`` before ``on_train_begin``.
    params : dict
        ``epochs``, ``initial_epoch``, ``steps`` (batches per epoch), ``samples``,
        ``verbose``, ``metrics`` (the names logged each epoch).
    """

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


class CallbackList:
    """Calls each hook on every callback, in order."""

    def __init__(self, callbacks: list[Callback], model: Any, params: dict[str, Any]) -> None:
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {cb!r}")
        self.callbacks = list(callbacks)
        self.model = model
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


class History(Callback):
    """Records every epoch's logs; ``fit`` returns it.

    Attributes
    ----------
    history : dict[str, list[float]]
        ``loss``, each metric, and ``val_`` entries, one value per epoch.
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
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self) -> str:
        return f"History(epochs_run={self.epochs_run}, stop_reason={self.stop_reason!r})"


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
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol >= 0):
            raise ValueError(f"tol must be a number >= 0 or None, got {tol!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an int >= 1, got {patience!r}")
        self.monitor, self.tol, self.patience = monitor, float(tol), patience
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


def _has_width(stream: Any) -> bool:
    """A terminal that reports 0 columns (some pseudo-terminals) would hide tqdm's bar."""
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):
        return False


def _format_logs(logs: dict[str, Any]) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items() if isinstance(v, float))


class ProgressLogger(Callback):
    """Progress output for ``verbose=1`` and ``verbose=2``.

    With ``verbose=1`` and a terminal, a tqdm bar per epoch shows the running loss,
    metrics and samples per second; otherwise (or with ``verbose=2``) one line per
    epoch. The stop reason is printed at the end.

    Parameters
    ----------
    verbose : int, 1 or 2
    stream : file, default sys.stdout
    """

    def __init__(self, verbose: int = 1, stream: Any = None) -> None:
        super().__init__()
        self.verbose = verbose
        self.stream = stream

    def _out(self):
        return self.stream or sys.stdout

    def on_train_begin(self, logs=None):
        stream = self._out()
        self.use_bar = self.verbose == 1 and hasattr(stream, "isatty") and stream.isatty() and _has_width(stream)

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()
        self.seen, self.sums, self.last_refresh = 0, {}, 0.0
        self.bar = None
        if self.use_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.params["samples"], unit="sample", unit_scale=True, file=self._out(),
                            desc=f"Epoch {epoch + 1}/{self.params['epochs']}", leave=True, dynamic_ncols=True)

    def on_batch_end(self, batch, logs=None):
        if self.bar is None:
            return
        size = logs["size"]
        self.seen += size
        for key, value in logs.items():  # running, sample-weighted means of loss and metrics
            if key != "size":
                self.sums[key] = self.sums.get(key, 0.0) + value * size
        self.bar.update(size)
        now = time.perf_counter()
        if now - self.last_refresh > 0.2:  # formatting every batch would cost more than the step
            self.last_refresh = now
            running = {key: total / self.seen for key, total in self.sums.items()}
            self.bar.set_postfix_str(_format_logs(running), refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.t0
        rate = self.params["samples"] / seconds if seconds > 0 else float("inf")
        text = _format_logs(logs or {})
        if self.bar is not None:
            self.bar.set_postfix_str(f"{text} - {rate:,.0f} samples/s", refresh=True)
            self.bar.close()
        else:
            print(f"Epoch {epoch + 1}/{self.params['epochs']} - {seconds:.2f}s - {rate:,.0f} samples/s - {text}",
                  file=self._out(), flush=True)

    def on_train_end(self, logs=None):
        reason = getattr(self.model, "stop_reason", "")
        if reason:
            print(f"Stopped: {reason}", file=self._out(), flush=True)


# -- Keras-like callbacks: checkpoints, early stopping, NaN handling, CSV logs ---------------
_MODES = ("min", "max")


def _check_monitor_args(owner: str, monitor: Any, mode: Any) -> None:
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"{owner}: monitor must be a non-empty str, got {monitor!r}")
    if mode not in _MODES:
        raise ValueError(f"{owner}: mode must be 'min' or 'max', got {mode!r}")


def _check_bool(owner: str, what: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {what} must be True or False, got {value!r}")
    return value


def _monitored(owner: str, monitor: str, logs: dict[str, Any] | None) -> float:
    """``logs[monitor]`` as a float, or a ValueError listing the keys that do exist."""
    logs = logs or {}
    if monitor not in logs:
        raise ValueError(f"{owner} monitors {monitor!r}, which is not in the epoch logs; available keys: "
                         f"{sorted(logs)} (the val_ keys need validation_data or validation_split)")
    return float(logs[monitor])


def _require_logged(owner: str, monitor: str, params: dict[str, Any]) -> None:
    """Fail at the start of ``fit``, not after the first epoch, when ``monitor`` will never be logged."""
    logged = params.get("metrics")
    if logged is not None and monitor not in logged:
        raise ValueError(f"{owner} monitors {monitor!r}, which fit does not log; available keys: {sorted(logged)} "
                         "(the val_ keys need validation_data or validation_split)")


class ModelCheckpoint(Callback):
    """Save the model after an epoch, optionally only when the monitored value improves.

    Every save goes through ``model.save``: the file is written to a temporary
    file in the same folder and moved into place with ``os.replace``, so a crash
    mid-save leaves the previous checkpoint intact.

    Parameters
    ----------
    path : str or os.PathLike
        Where to save. May hold ``str.format`` fields: ``{epoch}`` (1-based, as
        Keras) and any key of the epoch logs, e.g. ``"ckpt-{epoch:03d}-{val_loss:.3f}.nnlib"``.
        A missing folder is created.
    monitor : str, default "val_loss"
        Key of the epoch logs compared between epochs (only with ``save_best_only``).
    save_best_only : bool, default True
        Save only when ``monitor`` beats the best value seen so far by this
        callback (strictly; as Keras, the best value is kept across ``fit`` calls);
        otherwise save after every epoch.
    mode : {"min", "max"}, default "min"
        Whether lower or higher values of ``monitor`` are better.

    Attributes
    ----------
    best : float
        The best monitored value seen so far.
    best_epoch : int or None
        The 0-based epoch that reached ``best``.
    last_saved : str or None
        The path written by the most recent save.

    Examples
    --------
    >>> import nnlib as nn
    >>> ckpt = nn.ModelCheckpoint("best.nnlib", monitor="val_loss")  # doctest: +SKIP
    >>> model.fit(x, y, validation_split=0.2, callbacks=[ckpt])  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str], monitor: str = "val_loss", save_best_only: bool = True,
                 mode: str = "min") -> None:
        super().__init__()
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ValueError(f"ModelCheckpoint: path must be a non-empty str or os.PathLike, got {path!r}")
        self.path = os.fspath(path)
        try:
            self._fields = {field for _, field, _, _ in string.Formatter().parse(self.path) if field is not None}
        except ValueError as exc:
            raise ValueError(f"ModelCheckpoint: path {self.path!r} is not a valid format string ({exc})") from None
        for field in self._fields:
            if not field or field.isdigit() or not field.isidentifier():
                raise ValueError(f"ModelCheckpoint: path {self.path!r} has the field {{{field}}}; only named fields "
                                 "such as {epoch} or {val_loss} are allowed (write {{ and }} for literal braces)")
        _check_monitor_args("ModelCheckpoint", monitor, mode)
        self.monitor, self.mode = monitor, mode
        self.save_best_only = _check_bool("ModelCheckpoint", "save_best_only", save_best_only)
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.last_saved: str | None = None

    def on_train_begin(self, logs=None):
        if self.save_best_only:
            _require_logged("ModelCheckpoint", self.monitor, self.params)
        logged = self.params.get("metrics")
        unknown = sorted(self._fields - {"epoch"} - set(logged or self._fields))
        if unknown:
            raise ValueError(f"ModelCheckpoint: path {self.path!r} names {unknown}, which fit does not log; "
                             f"available: ['epoch'] + {sorted(logged)}")
        if logged is not None and self._fields:
            try:  # a bad format spec such as {loss:d} fails now, not after the first epoch
                self.path.format(epoch=1, **dict.fromkeys(logged, 0.5))
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                raise ValueError(f"ModelCheckpoint: cannot format path {self.path!r} ({exc})") from None

    def _better(self, value: float) -> bool:
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = _monitored("ModelCheckpoint", self.monitor, logs)
            if not self._better(value):  # NaN is never better
                return
            self.best, self.best_epoch = value, epoch
        path = self.path.format(epoch=epoch + 1, **logs) if self._fields else self.path
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self.model.save(path)
        self.last_saved = path


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
        _check_monitor_args("EarlyStopping", monitor, mode)
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not (
                math.isfinite(min_delta) and min_delta >= 0):
            raise ValueError(f"EarlyStopping: min_delta must be a finite number >= 0, got {min_delta!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        self.monitor, self.mode, self.min_delta, self.patience = monitor, mode, float(min_delta), patience
        self.restore_best_weights = _check_bool("EarlyStopping", "restore_best_weights", restore_best_weights)
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
        _require_logged("EarlyStopping", self.monitor, self.params)
        self._reset()

    def on_epoch_begin(self, epoch, logs=None):
        self._mid_epoch = True

    def on_epoch_end(self, epoch, logs=None):
        self._mid_epoch = False
        value = _monitored("EarlyStopping", self.monitor, logs)
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
        self.raise_error = _check_bool("TerminateOnNaN", "raise_error", raise_error)
        self._snapshot: list | None = None

    def on_epoch_begin(self, epoch, logs=None):
        # One copy per epoch: the fallback if an update itself overflowed the weights.
        self._snapshot = self.model.get_weights()

    def on_train_end(self, logs=None):
        self._snapshot = None

    def handle_nonfinite(self, epoch: int, batch: int, error: BaseException) -> None:
        """Called by ``fit`` when step ``batch`` of ``epoch`` (both 0-based) met a non-finite value.

        Sets ``model.stop_training`` and ``model.stop_reason``; restores the
        start-of-epoch weights if the current ones are not all finite.
        """
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


class CSVLogger(Callback):
    """Write one CSV row per epoch: ``epoch`` (0-based, as Keras and ``History.epoch``) then every logged value.

    The columns are ``epoch`` followed by the names ``fit`` logs (``loss``, the
    metrics, then the ``val_`` entries), written as a header line. Each row is
    written and flushed when its epoch ends (the file is opened and closed each
    time), so the log survives a crash. Values are written with ``repr``, so they
    read back as the exact floats in ``History``.

    Parameters
    ----------
    path : str or os.PathLike
    append : bool, default False
        Add rows to an existing file (its header must have the same columns,
        else ValueError) instead of starting a new one, e.g. to resume a run.
    """

    def __init__(self, path: str | os.PathLike[str], append: bool = False) -> None:
        super().__init__()
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ValueError(f"CSVLogger: path must be a non-empty str or os.PathLike, got {path!r}")
        self.path = os.fspath(path)
        self.append = _check_bool("CSVLogger", "append", append)
        self.columns: list[str] | None = None

    def _existing_header(self) -> list[str] | None:
        if not self.append or not os.path.exists(self.path) or os.path.getsize(self.path) == 0:
            return None
        with open(self.path, newline="") as f:
            return next(csv.reader(f), None)

    def on_train_begin(self, logs=None):
        logged = self.params.get("metrics")
        self.columns = None if logged is None else ["epoch", *logged]
        header = self._existing_header()
        if header is not None and self.columns is not None and header != self.columns:
            raise ValueError(f"CSVLogger: {self.path} has columns {header}, but this fit logs {self.columns}; "
                             "use append=False or another file")
        if header is None:
            with open(self.path, "w", newline="") as f:
                if self.columns is not None:
                    csv.writer(f).writerow(self.columns)
        elif self.columns is None:
            self.columns = header

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.columns is None:  # driven outside fit: take the columns from the first logs
            self.columns = ["epoch", *logs]
            with open(self.path, "a", newline="") as f:
                csv.writer(f).writerow(self.columns)
        row = [epoch] + [repr(float(logs[k])) if k in logs else "" for k in self.columns[1:]]
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(row)
            f.flush()


# Gradient-health and learning-rate callbacks live in their own modules (they import Callback
# from here); re-exported so ``nn.callbacks.GradientMonitor`` and friends work.
from .monitor import GradientHealthWarning, GradientMonitor  # noqa: E402
from .schedules import CosineDecay, ExponentialDecay, ReduceLROnPlateau, StepDecay  # noqa: E402
