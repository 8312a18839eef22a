"""Data-parallel training over MPI: :class:`DataParallel`, a strategy for ``fit``.

MPI is the engine (through mpi4py); nnlib only decides what to send. Every gradient
lives in one flat buffer (:attr:`nnlib.Sequential.gradient_buffer`), so a step costs one
``Allreduce`` of it, plus one of a few numbers (the batch's loss and metrics, the Ctrl-C
flag), one more with a dataset (the batch's row count and read errors) and, per
BatchNormalization layer, three small ones.

``import nnlib.distributed`` does not import mpi4py; ``DataParallel()`` does.
"""

from __future__ import annotations

import copy
import math
import zlib
from typing import Any, NoReturn

import numpy as np

from .callbacks import Callback
from .data import share_of
from .layers import BatchNormalization, Dropout
from .training import Strategy, batch_figures, dataset_sums, evaluate_arrays, metric_names

__all__ = ["DataParallel", "INSTALL_HINT"]

INSTALL_HINT = ('DataParallel needs mpi4py and an MPI library: pip install "nnlib[mpi]" (mpi4py, and the mpich '
                'wheel, which puts mpiexec in the virtual environment)')


class DataParallel(Strategy):
    """Train one model over K MPI processes, each taking its slice of every batch.

    ``model.fit(x, y, strategy=DataParallel())``, launched as
    ``mpiexec -n K python -m mpi4py train.py`` (``-m mpi4py`` makes an uncaught error on one
    process abort them all, rather than leave the others waiting).

    A K-process fit is the one-process fit with the same seed and ``batch_size``, to
    rounding (float64 runs agree to about 1e-12; float32 ones to float32 rounding):

    - every process draws the same epoch order (rank 0's seed), splits each batch of
      ``batch_size`` rows into K contiguous slices (sizes differ by at most one; a slice
      is empty when the batch has fewer than K rows), runs forward and backward on its
      slice, and the gradients are summed over the processes in place on the flat buffer
      before every process takes the same optimizer step;
    - BatchNormalization's batch statistics and backward sums are taken over the whole
      batch, across processes (synchronized batch normalization);
    - epoch losses, metrics and validation figures are over the whole batch and the whole
      validation set (split over the processes), so every decision taken on them (the
      stop rule, EarlyStopping, ReduceLROnPlateau, the non-finite guard) is the same on
      every process; Ctrl-C on any process stops all of them after the same step, and a
      callback that sets ``model.stop_training`` on one process stops them all after the
      epoch; an error on one process, in a callback's epoch or batch hook, in validation or
      in a dataset's ``on_epoch_end``, raises on every process (the others' error names it);
    - a batch's figures are sample-weighted means of the processes' slices, as an epoch's are
      of its batches: exact for the loss and the built-in metrics, an approximation for a
      metric of your own that is not a mean over samples;
    - before anything changes, the processes compare fit's settings (epochs, batch size,
      shuffle, the stop rule, validation data, the data's sizes, the layers' configurations,
      loss, optimizer, metrics, the callbacks that run everywhere) and the optimizers' states,
      and refuse a difference on every process, naming it; then rank 0's seed, weights and
      layer states are copied to the others (a model built with ``seed=None`` draws a
      different one on each process), and given back if ``on_train_begin`` fails; after
      every epoch a checksum of the weights, the optimizer state and the layers' states
      is compared, and a difference raises RuntimeError on every process.

    Dropout draws different masks from the one-process run (each process draws its own,
    independent of the others): the replicas stay identical, the result is not the
    one-process result.

    Only rank 0 prints progress and runs the callbacks that write (those with
    ``rank_zero_only = True``: ModelCheckpoint, CSVLogger, the progress output); saving
    after ``fit`` is the caller's: ``if strategy.rank == 0: model.save(path)``.

    Data: either every process holds the same arrays (or opens the same memory-mapped
    file), and ``fit`` gives each its rows of every batch, or each process passes its own
    dataset object (``len`` batches, ``ds[i] -> (x_batch, y_batch)``) holding its share of
    every batch: the batch is then the union of the processes' ``ds[i]``, and every
    process's dataset must have the same number of batches.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm, optional
        The processes to train over; default ``MPI.COMM_WORLD``.

    Attributes
    ----------
    comm : mpi4py.MPI.Intracomm
    rank : int
        This process's index in ``comm``: 0 is the one that prints and writes.
    size : int
        The number of processes.

    Raises
    ------
    ImportError
        Without mpi4py, saying how to install it.

    Examples
    --------
    >>> from nnlib.distributed import DataParallel                # doctest: +SKIP
    >>> strategy = DataParallel()                                 # doctest: +SKIP
    >>> history = model.fit(x, y, epochs=10, batch_size=256, strategy=strategy)  # doctest: +SKIP
    >>> if strategy.rank == 0:                                    # doctest: +SKIP
    ...     model.save("model.nnlib")
    """

    def __init__(self, comm: Any = None) -> None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ImportError(INSTALL_HINT) from exc
        if comm is None:
            comm = MPI.COMM_WORLD
        elif not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
            raise TypeError(f"comm must be an mpi4py intracommunicator such as MPI.COMM_WORLD, got {comm!r}")
        self._mpi = MPI
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._interrupted = False
        self._synchronized: list[BatchNormalization] = []
        self._own_seed: int | None = None
        self._snapshot: tuple[Any, list[np.ndarray], list[dict[str, np.ndarray]]] | None = None

    def __repr__(self) -> str:
        return f"DataParallel(rank={self.rank}, size={self.size})"

    # -- collectives ------------------------------------------------------------------
    def _sum(self, values: np.ndarray) -> None:
        """Sum ``values`` (a contiguous array) over the processes, in place."""
        self.comm.Allreduce(self._mpi.IN_PLACE, values, op=self._mpi.SUM)

    def _fail_everywhere(self, error: BaseException | None, what: str) -> NoReturn:
        """Once the processes know that one of them failed: a process raises its own ``error``,
        the others a RuntimeError naming the first that failed and its error."""
        failed = [(rank, text) for rank, text in enumerate(self.comm.allgather(_describe(error))) if text is not None]
        if error is not None:
            raise error
        rank, text = failed[0]
        raise RuntimeError(f"{what} on rank {rank} of {self.size}: {text}")

    # -- the hooks fit calls ------------------------------------------------------------
    def shared_seed(self, seed: int) -> int:
        self._own_seed = seed  # given back if the fit is refused
        return int(self.comm.bcast(seed, root=0))  # a Python int: seeds of any size

    def agree(self, error: BaseException | None, settings: dict[str, str] | None = None) -> None:
        gathered = self.comm.allgather((_describe(error), settings))
        failed = [(rank, text) for rank, (text, _) in enumerate(gathered) if text is not None]
        if failed:
            self._undo()
            if error is None:
                rank, text = failed[0]
                raise RuntimeError(f"fit's checks failed on rank {rank} of {self.size}: {text}")
            return  # the caller raises its own error
        mine = gathered[0][1] or {}  # rank 0's settings, to which every process's are compared
        for rank, (_, other) in enumerate(gathered):
            theirs = other or {}
            for key in [*mine, *(k for k in theirs if k not in mine)]:  # in order: the same message everywhere
                if mine.get(key) != theirs.get(key):
                    raise ValueError(f"every process must call fit with the same settings and model: {key} is "
                                     f"{mine.get(key)} on rank 0 and {theirs.get(key)} on rank {rank}")

    def guarded(self, fn: Any, *args: Any) -> Any:
        error, result = None, None
        try:
            result = fn(*args)
        except Exception as exc:  # noqa: BLE001 - every process must hear of it before it raises
            error = exc
        flag = np.array([error is not None], dtype=np.int64)
        self._sum(flag)
        if flag[0]:
            self._fail_everywhere(error, "fit failed")
        return result

    def total(self, n: int) -> int:
        value = np.array([n], dtype=np.int64)
        self._sum(value)
        return int(value[0])

    def _undo(self) -> None:
        """Give a refused fit's model back as it was: its own seed, weights and layer states."""
        if self._snapshot is None:
            return
        model, weights, states = self._snapshot
        self._snapshot = None
        for p, value in zip(model.parameters(), weights):
            p.value[...] = value
        for layer, state in zip(model.layers, states):
            if state:
                layer.set_state(state)
        if self._own_seed is not None:
            model.seed = self._own_seed

    def callbacks(self, callbacks: list[Callback]) -> list[Callback]:
        if self.rank == 0:
            return callbacks
        return [cb for cb in callbacks if not getattr(cb, "rank_zero_only", False)]

    def begin(self, model: Any, steps: int, samples: int | None) -> None:
        params = model.parameters()
        layout = (f"{model.dtype.name} parameters {[tuple(p.shape) for p in params]}, loss "
                  f"{type(model.loss).__name__}, optimizer {type(model.optimizer).__name__}, {steps} batches "
                  "an epoch" + ("" if samples is None else f" over {samples} samples"))
        layouts = self.comm.allgather(layout)
        for rank, other in enumerate(layouts):
            if other != layouts[0]:
                raise ValueError(f"every process must train the same model on data of the same size: rank 0 has "
                                 f"{layouts[0]}; rank {rank} has {other}")
        optimizer_sum = _checksum(_optimizer_arrays(model))
        if len(set(self.comm.allgather(optimizer_sum))) > 1:
            raise ValueError("the optimizers' states differ between processes (did one process train before?): "
                             "give every process the same model and optimizer, or a fresh optimizer (compile)")
        # what the broadcasts and forks below change, given back if on_train_begin fails somewhere
        self._snapshot = (model, [p.value.copy() for p in params],
                          [copy.deepcopy(layer.get_state()) for layer in model.layers])
        for p in params:  # rank 0's weights and states on every process
            self.comm.Bcast(p.value, root=0)
        for layer in model.layers:
            state = layer.get_state() if layer.replicated_state else {}
            if state:
                for value in state.values():
                    self.comm.Bcast(value, root=0)
                layer.set_state(state)
        for layer in model.layers:
            if isinstance(layer, Dropout):
                layer.fork_generator(self.rank)
            elif isinstance(layer, BatchNormalization):
                layer.replica_sum = self._sum
                self._synchronized.append(layer)
        self._interrupted = False

    def end(self, model: Any) -> None:
        self._snapshot = None
        for layer in self._synchronized:
            layer.replica_sum = None
        self._synchronized = []

    def local_rows(self, n: int) -> slice:
        return share_of(n, self.rank, self.size)

    def read_batch(self, read: Any) -> tuple[np.ndarray, np.ndarray, int]:
        try:
            xb, yb = read()
            error, counts = None, np.array([xb.shape[0], 0], dtype=np.int64)
        except Exception as exc:  # noqa: BLE001 - every process must hear of it before it raises
            error, counts = exc, np.array([0, 1], dtype=np.int64)
        self._sum(counts)
        if counts[1]:
            self._fail_everywhere(error, "a batch could not be read")
        return xb, yb, int(counts[0])

    def train_step(self, model: Any, xb: np.ndarray, yb: np.ndarray, size: int, interrupt: Any) -> list[float]:
        n = xb.shape[0]
        n_figures = 1 + len(model.metrics)
        out = model.forward(xb, training=True)  # joins the BatchNormalization sums even with no rows
        totals = np.zeros(n_figures + 1)  # n * [loss, metrics...] here, then the Ctrl-C flag
        if n:
            loss = model.loss.forward(out, yb)
            totals[:n_figures] = batch_figures(model, loss, yb, out) if math.isfinite(loss) else loss
            totals[:n_figures] *= n
        totals[-1] = interrupt.requested
        self._sum(totals)
        self._interrupted = bool(totals[-1])
        figures = [float(v) / size for v in totals[:n_figures]]
        model.check_loss(figures[0])  # the same loss on every process: all raise, or none
        if n:
            grad = model.loss.backward()
            grad *= n / size  # this slice's share of the whole batch's mean
        else:
            grad = np.zeros(out.shape, dtype=out.dtype)
        model.backward(grad)
        if model.gradient_buffer is not None:
            self._sum(model.gradient_buffer)
        model.check_gradients()
        model.optimizer.step(model.parameters())
        return figures

    def interrupted(self, interrupt: Any) -> bool:
        return self._interrupted  # any process's Ctrl-C, as of this step's sums

    def evaluate(self, model: Any, val: Any) -> dict[str, float]:
        n_figures = 1 + len(model.metrics)
        totals = np.zeros(n_figures + 2)  # sample-weighted sums, the sample count, then a failure flag
        error = None
        try:
            if isinstance(val, tuple):
                x, y, rows = val
                rows = np.arange(x.shape[0]) if rows is None else rows
                mine = rows[self.local_rows(rows.shape[0])]
                if mine.shape[0]:
                    totals[:n_figures] = list(evaluate_arrays(model, x, y, mine).values())
                    totals[:n_figures] *= mine.shape[0]
                    totals[-2] = mine.shape[0]
            else:
                sums, seen = dataset_sums(model, val, "validation_data")
                totals[:n_figures], totals[-2] = sums, seen
        except Exception as exc:  # noqa: BLE001 - every process must hear of it before it raises
            error = exc
            totals[:] = 0
            totals[-1] = 1
        self._sum(totals)
        if totals[-1]:
            self._fail_everywhere(error, "validation failed")
        totals = totals[:-1]
        return {name: float(total / totals[-1]) for name, total in zip(metric_names(model), totals[:n_figures])}

    def end_epoch(self, model: Any, epoch: int) -> None:
        replica = _checksum([p.value for p in model.parameters()] + _optimizer_arrays(model) + [
            value for layer in model.layers if layer.replicated_state for value in layer.get_state().values()])
        reason = model.stop_reason if model.stop_training else None
        gathered = self.comm.allgather((replica, reason))
        sums = [replica for replica, _ in gathered]
        if len(set(sums)) > 1:
            raise RuntimeError(f"the processes' models drifted apart in epoch {epoch + 1}: checksums of weights, "
                               f"optimizer state and layer states by rank: {sums} (a callback that changes the "
                               "weights on one process only does this)")
        stops = [(rank, why) for rank, (_, why) in enumerate(gathered) if why is not None]
        if stops and not model.stop_training:
            rank, why = stops[0]
            model.stop_training = True
            model.stop_reason = f"{why or 'stopped'} (on rank {rank})"


def _describe(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"


def _optimizer_arrays(model: Any) -> list[np.ndarray]:
    """The optimizer's state in parameter order, and its step count."""
    optimizer = model.optimizer
    state = optimizer.state
    arrays = [np.array([optimizer.iterations], dtype=np.int64)]
    for p in model.parameters():
        slots = state.get(p, {})
        arrays += [slots[name] for name in sorted(slots)]
    return arrays


def _checksum(arrays: list[np.ndarray]) -> int:
    """CRC-32 of the arrays' bytes: replicas must be bit-identical (every process applies the same sums)."""
    crc = 0
    for a in arrays:
        crc = zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8), crc)
    return crc
