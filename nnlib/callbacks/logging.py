"""Callbacks that report: the progress bar or lines of ``verbose=1/2``, and a CSV file per run."""

from __future__ import annotations

import csv
import os
import sys
import time
from typing import Any

from .._validation import check_bool, check_path
from .base import Callback

__all__ = ["ProgressLogger", "CSVLogger"]


def _has_width(stream: Any) -> bool:
    """A terminal that reports 0 columns (some pseudo-terminals) would hide tqdm's bar."""
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):
        return False


def _format_logs(logs: dict[str, Any]) -> str:
    """``loss: 0.1234 - accuracy: 0.9500 - lr: 0.0010``; per-layer figures (``grad_norm/dense_0``) stay in History."""
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items() if isinstance(v, float) and "/" not in k)


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

    rank_zero_only = True  # it only writes: in a data-parallel fit, rank 0 alone runs it

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


class CSVLogger(Callback):
    """Write one CSV row per epoch: ``epoch`` (0-based, as Keras and ``History.epoch``) then what ``fit`` logs.

    The columns are ``epoch`` followed by the names ``fit`` logs (``loss``, the
    metrics, then the ``val_`` entries), written as a header line; figures other
    callbacks add to the logs (``lr``, ``grad_norm/...``) are in History, not here. Each row is
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

    rank_zero_only = True  # it only writes: in a data-parallel fit, rank 0 alone runs it

    def __init__(self, path: str | os.PathLike[str], append: bool = False) -> None:
        super().__init__()
        self.path = check_path(path, "CSVLogger: path")
        self.append = check_bool(append, "CSVLogger: append")
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
