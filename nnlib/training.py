"""The fit loop: inputs checked once, callbacks, epochs of mini-batch steps, the non-finite
policy and Ctrl-C.

:meth:`nnlib.Sequential.fit` calls :func:`fit`. The loop drives the model only through
its public methods (``prepare_inputs``, ``build``, ``train_step``, ``forward``) and its
callbacks only through the :class:`~nnlib.callbacks.Callback` hooks: training stops
through ``model.stop_training`` alone, a non-finite step is offered to the callbacks'
``on_nonfinite_step`` (TerminateOnNaN takes it) before it becomes an error, and
:class:`~nnlib.callbacks.History` is called after every other callback, so it records
what they add to an epoch's logs.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from typing import Any

import numpy as np

from . import _threads
from . import metrics as metrics_module
from ._validation import check_choice, check_int, check_name, check_number, check_positive_int
from .callbacks import Callback, CallbackList, ConvergenceStop, History, ProgressLogger
from .data import BatchIterator, as_batch, chunks, epoch_rng, split_indices

__all__ = ["fit", "evaluate_arrays", "batch_figures", "inference_chunk", "parallel_for", "PREDICT_CHUNK"]

PREDICT_CHUNK = 1024  # the most samples per forward pass in predict/evaluate: BLAS is at full speed by then
INFERENCE_BYTES = 16 << 20  # ... and the most bytes of the widest layer's outputs in one pass


def inference_chunk(model: Any) -> int:
    """Samples per forward pass in predict/evaluate: PREDICT_CHUNK (1024) for MLPs; fewer for images, so the
    widest layer's outputs (and a convolution's patch matrix, a few times larger) stay within tens of MB:
    168 for 28x28x32 float32 feature maps."""
    widest = max(math.prod(layer.output_shape or (1,)) for layer in model.layers) * model.dtype.itemsize
    return max(1, min(PREDICT_CHUNK, INFERENCE_BYTES // widest))


def parallel_for(model: Any) -> contextlib.AbstractContextManager:
    """The context ``model``'s passes run in: a parallel region (batches split over threads, BLAS on one
    thread each) when a layer splits its batch, as Conv2D and pooling do; else nothing changes."""
    if any(layer.splits_batch for layer in model.layers):
        return _threads.parallel_region()
    return contextlib.nullcontext()


def fit(model: Any, x: Any, y: Any, epochs: int = 1, batch_size: int = 32,
        validation_data: tuple[Any, Any] | None = None, validation_split: float | None = None,
        shuffle: bool = True, tol: float | None = 1e-4, patience: int = 5, monitor: str = "loss",
        callbacks: list[Callback] | None = None, verbose: int = 1, initial_epoch: int = 0) -> History:
    """Train ``model`` (a compiled Sequential); see :meth:`nnlib.Sequential.fit` for the arguments.

    Every argument and both arrays are checked before anything changes; the model is
    built only then.
    """
    model.require_compiled("fit")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    initial_epoch = check_int(initial_epoch, "initial_epoch", 0)
    if initial_epoch >= epochs:
        raise ValueError(f"initial_epoch must be an int in [0, epochs={epochs}), got {initial_epoch!r}")
    check_choice(verbose, "verbose", (0, 1, 2))
    check_name(monitor, "monitor")  # its type, whether or not the stop rule is on; its value below
    if validation_data is not None and validation_split is not None:
        raise ValueError("pass validation_data or validation_split, not both")
    if validation_split is not None:
        validation_split = check_number(validation_split, "validation_split", 0.0, 1.0, low_open=True)
    stop_rule = None if tol is None else ConvergenceStop(monitor, tol, patience)
    user_callbacks = list(callbacks or [])
    CallbackList(user_callbacks, model, {})  # type-checks them before anything changes

    x, y = model.prepare_inputs(x, y, build=False, lazy=True)  # a memmap stays in its file: batches are cast
    train_idx = np.arange(x.shape[0])
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a tuple (x_val, y_val)")
        x_val, y_val = model.prepare_inputs(validation_data[0], validation_data[1], "validation x",
                                            "validation y", sample_shape=x.shape[1:], build=False, lazy=True)
        val = (x_val, y_val, None)
    elif validation_split is not None:
        labels = y if y.ndim == 1 else None
        train_idx, val_idx = split_indices(x.shape[0], validation_split, model.seed, labels)
        val = (x, y, val_idx)
    names = ["loss"] + [name for name, _ in model.metrics]
    logged = names + (["val_" + n for n in names] if val is not None else [])
    check_choice(monitor, "monitor", logged)
    if not model.built:  # every check has passed
        model.build(x.shape[1:])

    history = model.history = History()  # as Keras: model.history is the last fit's record
    cbs = [*user_callbacks, *([stop_rule] if stop_rule else []), *([ProgressLogger(verbose)] if verbose else []),
           history]
    n_train = train_idx.shape[0]
    callback_list = CallbackList(cbs, model, {
        "epochs": epochs, "initial_epoch": initial_epoch, "steps": -(-n_train // batch_size), "samples": n_train,
        "verbose": verbose, "metrics": logged,
    })
    batches = BatchIterator(x, y, batch_size, model.dtype)
    model.stop_training, model.stop_reason = False, ""
    callback_list.on_train_begin()
    logs: dict[str, float] = {}
    with _DeferredInterrupt() as interrupt, parallel_for(model):
        for epoch in range(initial_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            order = train_idx[epoch_rng(model.seed, epoch).permutation(n_train)] if shuffle else train_idx
            sums = [0.0] * len(names)
            stopped_mid_epoch = False
            for step, (xb, yb) in enumerate(batches(order)):
                try:
                    loss, out = model.train_step(xb, yb)
                except FloatingPointError as exc:  # nothing was updated in this step
                    handler = callback_list.on_nonfinite_step(epoch, step, exc)
                    if handler is None:
                        raise FloatingPointError(f"epoch {epoch + 1}, batch {step + 1}: {exc}") from None
                    model.stop_training = stopped_mid_epoch = True
                    model.stop_reason = model.stop_reason or (
                        f"non-finite loss or gradient in epoch {epoch + 1}, batch {step + 1}; stopped by "
                        f"{type(handler).__name__}")
                    break
                figures = batch_figures(model, loss, yb, out)
                sums = [total + xb.shape[0] * f for total, f in zip(sums, figures)]
                if callback_list.batch_callbacks:
                    callback_list.on_batch_end(step, {"size": xb.shape[0], **dict(zip(names, figures))})
                if interrupt.requested:
                    model.stop_training = stopped_mid_epoch = True
                    model.stop_reason = (f"interrupted (Ctrl-C) in epoch {epoch + 1} after batch {step + 1}; "
                                         "the weights are those after that batch")
                    break
            if stopped_mid_epoch:  # the unfinished epoch is not logged
                history.stopped_epoch = epoch
                break
            logs = {name: total / n_train for name, total in zip(names, sums)}
            if val is not None:
                logs.update({"val_" + k: v for k, v in evaluate_arrays(model, *val).items()})
            callback_list.on_epoch_end(epoch, logs)
            if model.stop_training:
                history.stopped_epoch = epoch
                break
    if not model.stop_reason:
        model.stop_reason = f"completed all {epochs} epochs"
    history.stop_reason = model.stop_reason
    callback_list.on_train_end(logs)
    return history


def batch_figures(model: Any, loss: float, y: np.ndarray, out: np.ndarray) -> list[float]:
    """``[loss, metric_1, ...]`` of one batch: metrics see the outputs as ``predict`` shows them."""
    figures, shown = [loss], None
    for _, fn in model.metrics:
        if fn is metrics_module.accuracy and model.loss.preserves_argmax and out.shape[1] > 1:
            figures.append(fn(y, out))  # argmax of the raw outputs: no transform needed
            continue
        if shown is None:
            shown = model.loss.transform(out)
        figures.append(fn(y, shown))
    return figures


def evaluate_arrays(model: Any, x: np.ndarray, y: np.ndarray, idx: np.ndarray | None = None,
                    batch_size: int | None = None) -> dict[str, float]:
    """Loss and metrics over the rows ``idx`` (default: all) of checked arrays, in inference mode,
    ``batch_size`` samples per pass (default :func:`inference_chunk`).

    Returns
    -------
    dict
        ``{"loss": float, <metric>: float, ...}``, sample-weighted means over the rows.
    """
    rows = np.arange(x.shape[0]) if idx is None else idx
    batch_size = inference_chunk(model) if batch_size is None else batch_size
    names = ["loss"] + [name for name, _ in model.metrics]
    sums = [0.0] * len(names)
    with parallel_for(model):
        for chunk in chunks(rows, batch_size):
            xb = as_batch(x[chunk] if idx is not None else x[chunk[0]:chunk[-1] + 1], model.dtype)
            yb = y[chunk]
            out = model.forward(xb, training=False)
            figures = batch_figures(model, model.loss.forward(out, yb), yb, out)
            sums = [total + chunk.shape[0] * f for total, f in zip(sums, figures)]
    return {name: total / rows.shape[0] for name, total in zip(names, sums)}


class _DeferredInterrupt:
    """Turn Ctrl-C during ``fit`` into a request honoured at the next step boundary.

    A KeyboardInterrupt raised between two in-place updates would leave the weights
    half-updated; instead the first SIGINT sets ``requested`` and ``fit`` stops after
    the current step. A second SIGINT raises KeyboardInterrupt at once. Outside the
    main thread, signals cannot be caught and nothing changes.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler)
