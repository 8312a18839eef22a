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

import array
import collections.abc
import contextlib
import functools
import math
import signal
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import _threads
from . import metrics as metrics_module
from ._validation import check_choice, check_int, check_name, check_number, check_positive_int
from .callbacks import Callback, CallbackList, ConvergenceStop, History, ProgressLogger
from .data import BatchIterator, as_batch, chunks, epoch_rng, split_indices

__all__ = ["fit", "Strategy", "evaluate_arrays", "evaluate_dataset", "dataset_sums", "metric_names", "batch_figures",
           "inference_chunk", "parallel_for", "PREDICT_CHUNK"]

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


def is_dataset(obj: Any) -> bool:
    """Whether ``obj`` is a Keras ``PyDataset``-like object: ``len(obj)`` batches, ``obj[i] -> (x_batch, y_batch)``.

    Arrays, sequences of rows (lists, tuples, ``range``, ``deque``, ``array.array``) and anything with a
    ``shape`` (memmaps, DataFrames, sparse matrices) are data, not datasets."""
    return (not isinstance(obj, (np.ndarray, dict, str, range, array.array, collections.abc.Sequence))
            and not hasattr(obj, "shape") and hasattr(obj, "__len__") and hasattr(obj, "__getitem__"))


def dataset_length(data: Any, what: str) -> int:
    try:
        n = len(data)
    except Exception as exc:  # noqa: BLE001 - the user's __len__; named in the error
        raise ValueError(f"len({what}) failed: {exc}") from exc
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what} must have at least one batch (len() >= 1), got {n!r}")
    return n


def dataset_item(data: Any, index: int, what: str) -> Any:
    try:
        return data[index]
    except Exception as exc:  # noqa: BLE001 - the user's __getitem__; named in the error
        raise ValueError(f"{what}[{index}] could not be read: {type(exc).__name__}: {exc}") from exc


def dataset_batch(model: Any, data: Any, index: int, what: str, sample_shape: tuple[int, ...] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``index`` of a dataset, checked and cast as ``fit`` checks arrays (errors name ``what[index]``)."""
    item = dataset_item(data, index, what)
    if not isinstance(item, tuple) or len(item) != 2:
        raise ValueError(f"{what}[{index}] must be a tuple (x_batch, y_batch), got {type(item).__name__}")
    # cast whole (lazy=False): a batch is small, and a slice of a memmap is a memmap in the file's dtype
    return model.prepare_inputs(item[0], item[1], f"{what}[{index}] x", f"{what}[{index}] y",
                                sample_shape=sample_shape, build=False)


def dataset_sums(model: Any, data: Any, what: str = "x") -> tuple[list[float], int]:
    """Sample-weighted sums of ``[loss, metric, ...]`` over every batch of a dataset in inference mode,
    and the number of samples."""
    sums, seen = [0.0] * (1 + len(model.metrics)), 0
    with parallel_for(model):
        for i in range(dataset_length(data, what)):
            xb, yb = dataset_batch(model, data, i, what, model.input_shape)
            for chunk in chunks(np.arange(xb.shape[0]), inference_chunk(model)):
                out = model.forward(xb[chunk[0]:chunk[-1] + 1], training=False)  # cast by dataset_batch
                figures = batch_figures(model, model.loss.forward(out, yb[chunk]), yb[chunk], out)
                sums = [total + chunk.shape[0] * f for total, f in zip(sums, figures)]
            seen += xb.shape[0]
    return sums, seen


def evaluate_dataset(model: Any, data: Any, what: str = "x") -> dict[str, float]:
    """Loss and metrics over every batch of a dataset, in inference mode: sample-weighted means."""
    sums, seen = dataset_sums(model, data, what)
    return {name: total / seen for name, total in zip(metric_names(model), sums)}


def metric_names(model: Any) -> list[str]:
    """``["loss", <metric>, ...]``: the figures of a batch, as :func:`batch_figures` lists them."""
    return ["loss"] + [name for name, _ in model.metrics]


class Strategy:
    """How :func:`fit` spreads its work over processes. This base class is one process:
    every hook does the plain thing. :class:`nnlib.distributed.DataParallel` overrides
    them to split each batch over MPI processes.

    ``fit`` calls :meth:`shared_seed` first, :meth:`agree` once its checks have run (passed
    or failed, with the fit's settings), :meth:`begin` after ``build``, :meth:`callbacks` on
    its callback list, :meth:`agree` again after the callbacks' ``on_train_begin``, then
    per epoch :meth:`local_rows` (array inputs) or :meth:`read_batch` (a dataset) and
    :meth:`train_step` for every batch, :meth:`evaluate` for the validation data and
    :meth:`end_epoch` after the callbacks; :meth:`end` last, once :meth:`begin` has run.
    The callbacks' epoch and batch hooks, the validation and the dataset's ``on_epoch_end``
    run inside :meth:`guarded`, so an error on one process reaches all of them.
    """

    #: this process's index and the number of processes
    rank: int = 0
    size: int = 1

    def shared_seed(self, seed: int) -> int:
        """The seed every process uses (fit's first call)."""
        return seed

    def agree(self, error: BaseException | None, settings: dict[str, str] | None = None) -> None:
        """Called after fit's checks with the error they raised, or None and the fit's settings
        (:meth:`_Plan.settings`), and after ``on_train_begin``; raises when any process failed or
        the settings differ between processes."""

    def guarded(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)``; raises on every process when it raised on any."""
        return fn(*args)

    def total(self, n: int) -> int:
        """The sum of ``n`` over the processes."""
        return n

    def callbacks(self, callbacks: list[Callback]) -> list[Callback]:
        """The callbacks this process runs."""
        return callbacks

    def begin(self, model: Any, steps: int, samples: int | None) -> None:
        """Before the first epoch, on the built model: ``steps`` batches an epoch, over ``samples``
        training rows (None for a dataset)."""

    def end(self, model: Any) -> None:
        """After the last epoch, or when the epochs raised (not when the checks or :meth:`begin` did)."""

    def local_rows(self, n: int) -> slice:
        """This process's share of a batch of ``n`` rows."""
        return slice(0, n)

    def read_batch(self, read: Any) -> tuple[np.ndarray, np.ndarray, int]:
        """``(x_batch, y_batch, samples in the whole batch)`` from ``read() -> (x_batch, y_batch)``."""
        xb, yb = read()
        return xb, yb, xb.shape[0]

    def train_step(self, model: Any, xb: np.ndarray, yb: np.ndarray, size: int, interrupt: Any) -> list[float]:
        """One step on this process's rows of a batch of ``size`` samples: the batch's figures
        (:func:`metric_names`). ``interrupt.requested`` says whether Ctrl-C was pressed here."""
        loss, out = model.train_step(xb, yb)
        return batch_figures(model, loss, yb, out)

    def interrupted(self, interrupt: Any) -> bool:
        """Whether fit stops after this step for Ctrl-C (after the step's callbacks)."""
        return interrupt.requested

    def evaluate(self, model: Any, val: Any) -> dict[str, float]:
        """Loss and metrics on the validation data: a dataset, or ``(x, y, rows or None)``."""
        if isinstance(val, tuple):
            return evaluate_arrays(model, *val)
        return evaluate_dataset(model, val, "validation_data")

    def end_epoch(self, model: Any, epoch: int) -> None:
        """After the epoch's callbacks."""


def fit(model: Any, x: Any, y: Any = None, epochs: int = 1, batch_size: int = 32,
        validation_data: tuple[Any, Any] | None = None, validation_split: float | None = None,
        shuffle: bool = True, tol: float | None = 1e-4, patience: int = 5, monitor: str = "loss",
        callbacks: list[Callback] | None = None, verbose: int = 1, initial_epoch: int = 0,
        strategy: Strategy | None = None) -> History:
    """Train ``model`` (a compiled Sequential); see :meth:`nnlib.Sequential.fit` for the arguments.

    Every argument and both arrays are checked before anything changes; the model is
    built only then. ``strategy`` (default: one process) spreads the work over processes.
    """
    if strategy is None:
        strategy = Strategy()
    elif not isinstance(strategy, Strategy):
        raise TypeError(f"strategy must be None or a Strategy such as nnlib.distributed.DataParallel(), "
                        f"got {strategy!r}")
    seed = strategy.shared_seed(model.seed)
    try:
        plan = _Plan(model, x, y, epochs, batch_size, validation_data, validation_split, tol, patience, monitor,
                     callbacks, verbose, initial_epoch, seed)
        settings = plan.settings(model, shuffle)
    except Exception as exc:
        strategy.agree(exc)
        raise
    strategy.agree(None, settings)
    model.seed = seed  # every check has passed, on every process: rank 0's seed orders every epoch
    if not model.built:
        model.build(plan.x.shape[1:])
    strategy.begin(model, plan.steps, None if plan.dataset is not None else plan.train_idx.shape[0])
    try:
        return _run(model, plan, shuffle, strategy)
    finally:
        strategy.end(model)


class _Plan:
    """fit's arguments, checked: nothing in the model changes here."""

    def __init__(self, model: Any, x: Any, y: Any, epochs: int, batch_size: int, validation_data: Any,
                 validation_split: float | None, tol: float | None, patience: int, monitor: str,
                 callbacks: list[Callback] | None, verbose: int, initial_epoch: int, seed: int) -> None:
        model.require_compiled("fit")
        self.epochs = check_positive_int(epochs, "epochs")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.initial_epoch = check_int(initial_epoch, "initial_epoch", 0)
        if self.initial_epoch >= self.epochs:
            raise ValueError(f"initial_epoch must be an int in [0, epochs={epochs}), got {initial_epoch!r}")
        self.verbose = check_choice(verbose, "verbose", (0, 1, 2))
        check_name(monitor, "monitor")  # its type, whether or not the stop rule is on; its value below
        if validation_data is not None and validation_split is not None:
            raise ValueError("pass validation_data or validation_split, not both")
        if validation_split is not None:
            validation_split = check_number(validation_split, "validation_split", 0.0, 1.0, low_open=True)
        self.stop_rule = None if tol is None else ConvergenceStop(monitor, tol, patience)
        self.user_callbacks = list(callbacks or [])
        CallbackList(self.user_callbacks, model, {})  # type-checks them before anything changes

        self.dataset = x if is_dataset(x) else None
        self.n_batches = 0
        if self.dataset is not None:
            if y is not None:
                raise ValueError("y must be None when x is a dataset: its batches hold the targets")
            if validation_split is not None:
                raise ValueError("validation_split needs arrays; with a dataset, give validation_data")
            self.n_batches = dataset_length(self.dataset, "x")
            # the first batch: shapes, and build; fit hands it over as the epoch's batch 0
            x, y = dataset_batch(model, self.dataset, 0, "x", model.input_shape)
        else:
            if y is None:
                raise TypeError("fit() needs y with array inputs (only a dataset holds its own targets)")
            x, y = model.prepare_inputs(x, y, build=False, lazy=True)  # a memmap stays in its file: batches are cast
        self.x, self.y = x, y
        self.train_idx = np.arange(x.shape[0])
        self.val: Any = None
        if validation_data is not None and is_dataset(validation_data):
            dataset_length(validation_data, "validation_data")
            self.val = validation_data
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (x_val, y_val)")
            x_val, y_val = model.prepare_inputs(validation_data[0], validation_data[1], "validation x",
                                                "validation y", sample_shape=x.shape[1:], build=False, lazy=True)
            self.val = (x_val, y_val, None)
        elif validation_split is not None:
            labels = y if y.ndim == 1 else None
            self.train_idx, val_idx = split_indices(x.shape[0], validation_split, seed, labels)
            self.val = (x, y, val_idx)
        # a dataset's epoch: its batches in order (shuffling is the dataset's own business, as in Keras)
        self.steps = self.n_batches if self.dataset is not None else -(-self.train_idx.shape[0] // self.batch_size)
        self.names = metric_names(model)
        self.logged = self.names + (["val_" + n for n in self.names] if self.val is not None else [])
        check_choice(monitor, "monitor", self.logged)
        self.tol, self.patience, self.monitor = tol, patience, monitor

    def settings(self, model: Any, shuffle: bool) -> dict[str, str]:
        """What must be the same on every process of a data-parallel fit, as text: the loop's
        arguments, the data's sizes, the model's layers (names aside), loss, optimizer and the
        callbacks that run on every process."""
        if self.val is None:
            val = "none"
        elif isinstance(self.val, tuple):
            rows = self.val[0].shape[0] if self.val[2] is None else self.val[2].shape[0]
            val = f"{rows} rows of arrays"
        else:
            val = "a dataset"  # each process's own: their lengths may differ
        layers = [{k: v for k, v in layer.get_config().items() if k != "name"} | {"type": type(layer).__name__}
                  for layer in model.layers]
        return {
            "epochs": repr(self.epochs), "initial_epoch": repr(self.initial_epoch),
            "batch_size": repr(self.batch_size) if self.dataset is None else "the dataset's",
            "shuffle": repr(bool(shuffle)), "stop rule (tol, patience, monitor)": repr((self.tol, self.patience,
                                                                                      self.monitor)),
            "batches an epoch": repr(self.steps),
            "training rows": "per dataset" if self.dataset is not None else repr(self.train_idx.shape[0]),
            "sample shape": repr(tuple(self.x.shape[1:])), "validation data": val, "logged figures": repr(self.logged),
            "dtype": model.dtype.name, "layers": repr(layers),
            "loss": repr((type(model.loss).__name__, model.loss.get_config())),
            "optimizer": repr((type(model.optimizer).__name__, model.optimizer.get_config())),
            "callbacks on every process": repr([type(cb).__name__ for cb in self.user_callbacks
                                                if not getattr(cb, "rank_zero_only", False)]),
        }


def _run(model: Any, plan: _Plan, shuffle: bool, strategy: Strategy) -> History:
    """fit's epochs, on a built model and checked arguments."""
    dataset, names, epochs = plan.dataset, plan.names, plan.epochs
    history = model.history = History()  # as Keras: model.history is the last fit's record
    cbs = strategy.callbacks([*plan.user_callbacks, *([plan.stop_rule] if plan.stop_rule else []),
                              *([ProgressLogger(plan.verbose)] if plan.verbose else []), history])
    n_train = plan.train_idx.shape[0]
    callback_list = CallbackList(cbs, model, {
        "epochs": epochs, "initial_epoch": plan.initial_epoch, "steps": plan.steps,
        # a dataset's: estimated from its first batch (over every process) until the first epoch ends
        "samples": strategy.total(n_train) * plan.n_batches if dataset is not None else n_train,
        "verbose": plan.verbose, "metrics": plan.logged, "rank": strategy.rank,
    })
    batches = BatchIterator(plan.x, plan.y, plan.batch_size, model.dtype)
    first_batch: tuple[np.ndarray, np.ndarray] | None = (plan.x, plan.y)  # a dataset's batch 0, checked already

    def epoch_batches(order: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        nonlocal first_batch
        if dataset is None:
            for idx in chunks(order, plan.batch_size):
                rows = idx[strategy.local_rows(idx.shape[0])]
                yield batches.gather(rows), plan.y[rows], idx.shape[0]
            return
        for i in range(plan.n_batches):  # every batch is checked before its step: a bad one changes nothing
            if i == 0 and first_batch is not None:
                batch, first_batch = first_batch, None
                yield strategy.read_batch(lambda checked=batch: checked)
            else:
                yield strategy.read_batch(functools.partial(dataset_batch, model, dataset, i, "x", model.input_shape))

    model.stop_training, model.stop_reason = False, ""
    try:  # callbacks check their arguments here, and some run on one process only: agree on the outcome
        callback_list.on_train_begin()
    except Exception as exc:
        strategy.agree(exc)
        raise
    strategy.agree(None)
    # batch hooks run where any process has one (the progress bar is rank 0's): all must join their guard
    batch_hooks = strategy.total(int(bool(callback_list.batch_callbacks))) > 0
    logs: dict[str, float] = {}
    with _DeferredInterrupt() as interrupt, parallel_for(model):
        for epoch in range(plan.initial_epoch, epochs):
            strategy.guarded(callback_list.on_epoch_begin, epoch)
            order = plan.train_idx[epoch_rng(model.seed, epoch).permutation(n_train)] if shuffle else plan.train_idx
            sums = [0.0] * len(names)
            seen = 0
            stopped_mid_epoch = False
            for step, (xb, yb, size) in enumerate(epoch_batches(order)):
                try:
                    figures = strategy.train_step(model, xb, yb, size, interrupt)
                except FloatingPointError as exc:  # nothing was updated in this step
                    handler = callback_list.on_nonfinite_step(epoch, step, exc)
                    if handler is None:
                        raise FloatingPointError(f"epoch {epoch + 1}, batch {step + 1}: {exc}") from None
                    model.stop_training = stopped_mid_epoch = True
                    model.stop_reason = model.stop_reason or (
                        f"non-finite loss or gradient in epoch {epoch + 1}, batch {step + 1}; stopped by "
                        f"{type(handler).__name__}")
                    break
                sums = [total + size * f for total, f in zip(sums, figures)]
                seen += size
                if batch_hooks:
                    strategy.guarded(callback_list.on_batch_end, step, {"size": size, **dict(zip(names, figures))})
                if strategy.interrupted(interrupt):
                    model.stop_training = stopped_mid_epoch = True
                    model.stop_reason = (f"interrupted (Ctrl-C) in epoch {epoch + 1} after batch {step + 1}; "
                                         "the weights are those after that batch")
                    break
            if stopped_mid_epoch:  # the unfinished epoch is not logged
                history.stopped_epoch = epoch
                break
            logs = {name: total / seen for name, total in zip(names, sums)}
            if dataset is not None:
                callback_list.params["samples"] = seen  # the epoch's true count (batches may differ in size)
            strategy.guarded(_end_of_epoch, model, plan, strategy, callback_list, epoch, logs)
            strategy.end_epoch(model, epoch)
            if model.stop_training:
                history.stopped_epoch = epoch
                break
    if not model.stop_reason:
        model.stop_reason = f"completed all {epochs} epochs"
    history.stop_reason = model.stop_reason
    callback_list.on_train_end(logs)
    return history


def _end_of_epoch(model: Any, plan: _Plan, strategy: Strategy, callback_list: CallbackList, epoch: int,
                  logs: dict[str, float]) -> None:
    """Validation, the dataset's ``on_epoch_end`` and the callbacks' (which add to ``logs``)."""
    if plan.val is not None:
        logs.update({"val_" + k: v for k, v in strategy.evaluate(model, plan.val).items()})
    if plan.dataset is not None and callable(getattr(plan.dataset, "on_epoch_end", None)):
        plan.dataset.on_epoch_end()  # Keras's hook: after the epoch's batches and validation
    callback_list.on_epoch_end(epoch, logs)


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
    names = metric_names(model)
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
