"""Callbacks: History, the loss-change stop rule and progress output.

A callback sees the model only through ``model.stop_training`` (set it to stop
after the current epoch), ``model.stop_reason`` (a sentence saying why) and the
``logs`` dicts it is handed. Hooks are called in list order.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

__all__ = ["Callback", "CallbackList", "History", "ConvergenceStop", "ProgressLogger"]


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
        """After each optimizer step; ``logs`` has the batch's ``loss`` and ``size``."""


class CallbackList:
    """Calls each hook on every callback, in order."""

    def __init__(self, callbacks: list[Callback], model: Any, params: dict[str, Any]) -> None:
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {cb!r}")
        self.callbacks = list(callbacks)
        self.model = model
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
        for cb in self.callbacks:
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
        self.use_bar = self.verbose == 1 and hasattr(stream, "isatty") and stream.isatty()

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()
        self.seen, self.loss_sum, self.last_refresh = 0, 0.0, 0.0
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
        self.loss_sum += logs["loss"] * size
        self.bar.update(size)
        now = time.perf_counter()
        if now - self.last_refresh > 0.2:  # formatting every batch would cost more than the step
            self.last_refresh = now
            self.bar.set_postfix_str(f"loss: {self.loss_sum / self.seen:.4f}", refresh=False)

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
