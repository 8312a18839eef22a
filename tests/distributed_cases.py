"""The data-parallel fits that tests/test_distributed.py compares with one process.

Each case is ``case(strategy, rank, size, workdir) -> dict``: it builds a model and data
from fixed seeds, fits with ``strategy`` (None: one process), and returns what the test
compares (weights, the History, the stop, errors). tests/distributed_worker.py runs every
case under ``mpiexec``; the test runs the same case in one process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

import nnlib as nn
from nnlib.data import MemmapDataset, share_of


def _mlp(dtype: str = "float64", batch_norm: bool = False, dropout: bool = False, seed: int | None = 3,
         n_in: int = 6, n_out: int = 3) -> nn.Sequential:
    layers: list[Any] = [nn.Dense(12, input_dim=n_in, activation="relu")]
    if batch_norm:
        layers.append(nn.BatchNormalization(momentum=0.8))
    if dropout:
        layers.append(nn.Dropout(0.3))
    layers += [nn.Dense(8, activation="tanh"), nn.Dense(n_out)]
    return nn.Sequential(layers, seed=seed, dtype=dtype)


def _classes(n: int = 103, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return x, (x[:, 0] + x[:, 1] ** 2 > 0.8).astype(int) + (x[:, 2] > 0.5)


def _result(model: nn.Sequential, history: Any, **extra: Any) -> dict[str, Any]:
    return {"weights": model.get_weights(), "history": {k: list(v) for k, v in history.history.items()},
            "stopped_epoch": history.stopped_epoch, "stop_reason": history.stop_reason, **extra}


def _error(exc: BaseException) -> dict[str, Any]:
    return {"error": [type(exc).__name__, str(exc)]}


def mlp_adam(strategy, rank, size, workdir):
    """Softmax cross-entropy, Adam, a held-out split, an uneven last batch (103 rows, batches of 16)."""
    model = _mlp()
    model.compile("adam", "softmax_cross_entropy", metrics=["accuracy"])
    x, y = _classes()
    history = model.fit(x, y, epochs=6, batch_size=16, validation_split=0.2, tol=None, verbose=0,
                        strategy=strategy)
    return _result(model, history)


def stop_rule(strategy, rank, size, workdir):
    """MSE with momentum until the loss-change rule fires (tol large enough to stop early)."""
    model = _mlp(n_out=2)
    model.compile(nn.Momentum(lr=0.02, momentum=0.9), "mse")
    x, _ = _classes(90)
    y = np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2]], axis=1)
    history = model.fit(x, y, epochs=60, batch_size=8, tol=0.01, patience=2, verbose=0, strategy=strategy)
    return _result(model, history)


def batchnorm_small_batches(strategy, rank, size, workdir):
    """BatchNormalization with batches of 2 (the last of 1): with 3 processes a slice is often empty."""
    model = _mlp(batch_norm=True)
    model.compile(nn.SGD(lr=0.05), "softmax_cross_entropy", metrics=["accuracy"])
    x, y = _classes(11)
    history = model.fit(x, y, epochs=3, batch_size=2, tol=None, verbose=0, strategy=strategy)
    return _result(model, history, state=model.layers[1].get_state()["moving_variance"])


def batchnorm_cnn(strategy, rank, size, workdir):
    """Conv2D, per-channel BatchNormalization, max pooling, validation data, Adam, float64."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 7, 7, 2))
    y = (x[:, :3, :3, 0].mean(axis=(1, 2)) > x[:, 3:, 3:, 1].mean(axis=(1, 2))).astype(int)
    # no bias before BatchNormalization (as Keras users write it): its gradient is zero up to rounding, and Adam
    # turns rounding noise into steps, so it would hold noise, compared to nothing
    model = nn.Sequential([nn.Conv2D(4, 3, padding="same", use_bias=False, input_shape=(7, 7, 2)),
                           nn.BatchNormalization(),
                           nn.ReLU(), nn.MaxPooling2D(2), nn.Flatten(), nn.Dense(2)], seed=5, dtype="float64")
    model.compile("adam", "softmax_cross_entropy", metrics=["accuracy"])
    history = model.fit(x[:24], y[:24], epochs=4, batch_size=7, validation_data=(x[24:], y[24:]), tol=None,
                        verbose=0, strategy=strategy)
    return _result(model, history, state=model.layers[1].get_state()["moving_mean"])


def early_stopping(strategy, rank, size, workdir):
    """EarlyStopping on val_loss with restore_best_weights, and a learning-rate schedule on the epoch logs."""
    model = _mlp()
    model.compile(nn.Adam(lr=0.05), "softmax_cross_entropy")
    x, y = _classes(120)
    callbacks = [nn.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True),
                 nn.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1)]
    history = model.fit(x[:90], y[:90], epochs=40, batch_size=10, validation_data=(x[90:], y[90:]), tol=None,
                        callbacks=callbacks, verbose=0, strategy=strategy)
    return _result(model, history)


def files_and_output(strategy, rank, size, workdir):
    """ModelCheckpoint, CSVLogger and progress lines: written by rank 0 only (each rank names its own paths)."""
    model = _mlp()
    model.compile("adam", "softmax_cross_entropy", metrics=["accuracy"])
    x, y = _classes()
    out = Path(workdir)
    callbacks = [nn.ModelCheckpoint(str(out / f"checkpoint_rank{rank}.nnlib"), monitor="loss"),
                 nn.CSVLogger(str(out / f"log_rank{rank}.csv"))]
    with open(out / f"stdout_rank{rank}.txt", "w") as stream, contextlib.redirect_stdout(stream):
        history = model.fit(x, y, epochs=3, batch_size=16, callbacks=callbacks, verbose=2, tol=None,
                            strategy=strategy)
    if strategy is None or strategy.rank == 0:
        model.save(str(out / f"model_rank{rank}.nnlib"))
    return _result(model, history)


class _Shards:
    """A dataset holding one process's share of every batch of (x, y) in a fixed order."""

    def __init__(self, x, y, batch_size, rank, size):
        self.x, self.y, self.batch_size, self.rank, self.size = x, y, batch_size, rank, size
        self.epochs_ended = 0

    def __len__(self):
        return -(-self.x.shape[0] // self.batch_size)

    def __getitem__(self, i):
        rows = np.arange(i * self.batch_size, min((i + 1) * self.batch_size, self.x.shape[0]))
        rows = rows[share_of(rows.shape[0], self.rank, self.size)]
        return self.x[rows], self.y[rows]

    def on_epoch_end(self):
        self.epochs_ended += 1


def dataset_objects(strategy, rank, size, workdir):
    """A dataset object per process (its shard) for training and for validation."""
    model = _mlp()
    model.compile("adam", "softmax_cross_entropy", metrics=["accuracy"])
    x, y = _classes(100)
    train, val = _Shards(x[:80], y[:80], 9, rank, size), _Shards(x[80:], y[80:], 7, rank, size)
    seen = _SamplesSeen()
    history = model.fit(train, epochs=4, validation_data=val, tol=None, verbose=0, strategy=strategy,
                        callbacks=[seen])
    return _result(model, history, epochs_ended=train.epochs_ended, samples=seen.samples)


class _SamplesSeen(nn.Callback):
    """params["samples"] as callbacks see it: at the start (estimated from batch 0), then after each epoch."""

    def __init__(self):
        super().__init__()
        self.samples = []

    def on_train_begin(self, logs=None):
        self.samples.append(self.params["samples"])

    def on_epoch_end(self, epoch, logs=None):
        self.samples.append(self.params["samples"])


def memmap_shards(strategy, rank, size, workdir):
    """A uint8 .npy file read through MemmapDataset, one shard per process."""
    path = Path(workdir) / "images.npy"
    rng = np.random.default_rng(2)
    if strategy is None or strategy.rank == 0:  # the test's own data file, written once
        x = rng.integers(0, 256, size=(64, 6), dtype=np.uint8)
        np.save(path.with_suffix(".tmp.npy"), x)
        os.replace(path.with_suffix(".tmp.npy"), path)
    if strategy is not None:
        strategy.comm.Barrier()
    x = np.load(path, mmap_mode="r")
    y = (np.asarray(x[:, 0]) > 127).astype(int)
    data = MemmapDataset(x, y, batch_size=12, seed=4, block_rows=8, num_shards=size, shard_index=rank)
    model = _mlp(n_out=2)
    model.compile("adam", "softmax_cross_entropy")
    history = model.fit(data, epochs=3, tol=None, verbose=0, strategy=strategy)
    return _result(model, history)


def float32(strategy, rank, size, workdir):
    """The default dtype: agreement to float32 rounding."""
    model = _mlp(dtype="float32", batch_norm=True)
    model.compile("adam", "softmax_cross_entropy", metrics=["accuracy"])
    x, y = _classes()
    history = model.fit(x, y, epochs=4, batch_size=16, tol=None, verbose=0, strategy=strategy)
    return _result(model, history)


def nonfinite(strategy, rank, size, workdir):
    """A learning rate that overflows: the same FloatingPointError, at the same batch, on every process."""
    model = _mlp(n_out=1)
    model.compile(nn.SGD(lr=1e6), "mse")
    x, _ = _classes(60)
    try:
        model.fit(x, x[:, 0] * 1e3, epochs=5, batch_size=6, tol=None, verbose=0, strategy=strategy)
    except FloatingPointError as exc:
        return {**_error(exc), "weights": model.get_weights()}
    return {"error": None}


def terminate_on_nan(strategy, rank, size, workdir):
    """The same overflow with TerminateOnNaN: a clean stop at the same batch everywhere."""
    model = _mlp(n_out=1)
    model.compile(nn.SGD(lr=1e6), "mse")
    x, _ = _classes(60)
    history = model.fit(x, x[:, 0] * 1e3, epochs=5, batch_size=6, tol=None, verbose=0,
                        callbacks=[nn.TerminateOnNaN()], strategy=strategy)
    return _result(model, history)


class _CtrlC(nn.Callback):
    """Sends this process SIGINT after batch ``batch`` of epoch ``epoch`` (0-based) when ``active``."""

    def __init__(self, epoch, batch, active):
        super().__init__()
        self.epoch, self.batch, self.active, self.current = epoch, batch, active, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_batch_end(self, batch, logs=None):
        if self.active and (self.current, batch) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGINT)


def interrupt(strategy, rank, size, workdir):
    """Ctrl-C on the last rank only, in batch 3 of epoch 2's callbacks: the others hear of it in the next
    step's sums, so every process stops after batch 4, the batch one process stops after when Ctrl-C
    comes during batch 4's callbacks."""
    model = _mlp()
    model.compile("adam", "softmax_cross_entropy")
    x, y = _classes()
    history = model.fit(x, y, epochs=5, batch_size=16, tol=None, verbose=0, strategy=strategy,
                        callbacks=[_CtrlC(1, 2 if strategy is not None else 3, rank == size - 1)])
    return _result(model, history)


class _StopOnOneRank(nn.Callback):
    def __init__(self, active):
        super().__init__()
        self.active = active

    def on_epoch_end(self, epoch, logs=None):
        if self.active and epoch == 1:
            self.model.stop_training = True
            self.model.stop_reason = "stopped by a callback on one rank"


def stop_on_one_rank(strategy, rank, size, workdir):
    """A callback that stops training on one process only: all stop after the same epoch."""
    model = _mlp()
    model.compile("adam", "softmax_cross_entropy")
    x, y = _classes()
    history = model.fit(x, y, epochs=6, batch_size=16, tol=None, verbose=0, strategy=strategy,
                        callbacks=[_StopOnOneRank(rank == size - 1)])
    return _result(model, history)


class _Nudge(nn.Callback):
    """Changes a weight on one process only: the replicas drift apart."""

    def __init__(self, active):
        super().__init__()
        self.active = active

    def on_batch_end(self, batch, logs=None):
        if self.active and batch == 0:
            weights = self.model.get_weights()
            weights[0][0, 0] += 1e-9
            self.model.set_weights(weights)


def drift(strategy, rank, size, workdir):
    model = _mlp()
    model.compile("adam", "softmax_cross_entropy")
    x, y = _classes()
    try:
        model.fit(x, y, epochs=3, batch_size=16, tol=None, verbose=0, strategy=strategy,
                  callbacks=[_Nudge(rank == size - 1)])
    except RuntimeError as exc:
        return _error(exc)
    return {"error": None}


def bad_labels_on_one_rank(strategy, rank, size, workdir):
    """One process's labels are out of range: it raises its ValueError, the others a RuntimeError naming it."""
    model = _mlp()
    model.compile("adam", "softmax_cross_entropy")
    x, y = _classes()
    if rank == size - 1 and strategy is not None:
        y = y.copy()
        y[5] = 7
    before = model.get_weights()
    try:
        model.fit(x, y, epochs=2, batch_size=16, verbose=0, strategy=strategy)
    except (ValueError, RuntimeError) as exc:
        return {**_error(exc), "unchanged": all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))}
    return {"error": None}


def different_sizes(strategy, rank, size, workdir):
    """Processes holding arrays of different lengths are refused on every process."""
    model = _mlp()
    model.compile("adam", "softmax_cross_entropy")
    x, y = _classes(100 + (rank if strategy is not None else 0))
    try:
        model.fit(x, y, epochs=2, batch_size=16, verbose=0, strategy=strategy)
    except ValueError as exc:
        return _error(exc)
    return {"error": None}


def cnn_tiny_batches(strategy, rank, size, workdir):
    """A convnet with Flatten on batches of 2 (the last of 1): with 3 processes a slice has no rows."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 6, 6, 1))
    y = (x[:, :3].mean(axis=(1, 2, 3)) > 0).astype(int)
    model = nn.Sequential([nn.Conv2D(3, 3, input_shape=(6, 6, 1), activation="relu"), nn.MaxPooling2D(2),
                           nn.Flatten(), nn.Dense(2)], seed=4, dtype="float64")
    model.compile("adam", "softmax_cross_entropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=2, tol=None, verbose=0, strategy=strategy)
    return _result(model, history)


def _mismatches():
    """(what differs, fit keyword changes, model changes) for the last process of a run."""
    return [
        ("epochs", {"epochs": 3}, None),
        ("batch_size", {"batch_size": 8}, None),
        ("shuffle", {"shuffle": False}, None),
        ("stop rule", {"tol": 0.5}, None),
        ("validation data", {"validation_split": 0.2}, None),
        ("layers", {}, "activation"),
        ("optimizer", {}, "lr"),
        ("logged figures", {}, "metrics"),
    ]


def mismatched_settings(strategy, rank, size, workdir):
    """One process calls fit with a different setting or model: every process refuses, and nothing changes."""
    x, y = _classes(60)
    errors = []
    for what, changes, model_change in _mismatches():
        last = strategy is not None and rank == size - 1
        layers = [nn.Dense(12, input_dim=6, activation="tanh" if last and model_change == "activation" else "relu"),
                  nn.Dense(3)]
        model = nn.Sequential(layers, seed=3, dtype="float64")
        model.compile(nn.Adam(lr=0.01 if last and model_change == "lr" else 0.001), "softmax_cross_entropy",
                      metrics=["accuracy"] if last and model_change == "metrics" else None)
        before = model.get_weights()
        kwargs = {"epochs": 2, "batch_size": 16, "tol": None, "verbose": 0, **(changes if last else {})}
        try:
            model.fit(x, y, strategy=strategy, **kwargs)
            errors.append([what, None, None, True])
        except ValueError as exc:
            unchanged = all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
            errors.append([what, type(exc).__name__, str(exc), unchanged])
    return {"mismatches": errors}


class _FailOn(nn.Callback):
    """Raises in one hook (epoch 2's on_epoch_begin/on_epoch_end, batch 3's on_batch_end) on one process."""

    def __init__(self, hook, active):
        super().__init__()
        self.hook, self.active = hook, active

    def _maybe(self, hook, index):
        if self.active and hook == self.hook and index == (3 if hook == "on_batch_end" else 1):
            raise OSError(f"disk full in {hook}")

    def on_train_begin(self, logs=None):
        self._maybe("on_train_begin", 1)

    def on_epoch_begin(self, epoch, logs=None):
        self._maybe("on_epoch_begin", epoch)

    def on_batch_end(self, batch, logs=None):
        self._maybe("on_batch_end", batch)

    def on_epoch_end(self, epoch, logs=None):
        self._maybe("on_epoch_end", epoch)


class _BadValidation(_Shards):
    """A validation dataset whose batch 1 cannot be read on one process."""

    def __init__(self, *args, active):
        super().__init__(*args)
        self.active = active

    def __getitem__(self, i):
        if self.active and i == 1:
            raise KeyError("missing file")
        return super().__getitem__(i)


def errors_on_one_rank(strategy, rank, size, workdir):
    """An error on one process, in a callback hook, in validation or in on_train_begin, raises on every
    process (no hang); a fit refused in on_train_begin leaves each process's own model as it was."""
    x, y = _classes(64)
    last = strategy is not None and rank == size - 1
    outcomes = {}
    for hook in ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "validation"):
        model = _mlp(dropout=True, seed=None if strategy is not None else 3)
        model.compile("adam", "softmax_cross_entropy")
        model.build((6,))
        before, seed = model.get_weights(), model.seed
        rng_before = model.layers[1].get_state()["rng_state"].copy()
        callbacks = [_FailOn(hook, last)] if hook != "validation" else []
        val = _BadValidation(x[48:], y[48:], 4, rank, size, active=last) if hook == "validation" else None
        try:
            model.fit(x[:48], y[:48], epochs=3, batch_size=8, tol=None, verbose=0, strategy=strategy,
                      callbacks=callbacks, validation_data=val)
            outcomes[hook] = [None, None]
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            outcomes[hook] = [type(exc).__name__, str(exc)]
        if hook == "on_train_begin":
            outcomes["restored"] = (all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
                                    and model.seed == seed
                                    and np.array_equal(model.layers[1].get_state()["rng_state"], rng_before))
    return {"outcomes": outcomes}


def big_seed(strategy, rank, size, workdir):
    """A seed beyond int64 is shared as it is."""
    model = _mlp(seed=2**64 + 7)
    model.compile("adam", "softmax_cross_entropy")
    x, y = _classes(40)
    history = model.fit(x, y, epochs=2, batch_size=16, tol=None, verbose=0, strategy=strategy)
    return _result(model, history, seed=str(model.seed))


def dropout(strategy, rank, size, workdir):
    """Dropout: each process draws its own masks; the replicas stay identical (checked every epoch)."""
    model = _mlp(dropout=True)
    model.compile("adam", "softmax_cross_entropy")
    x, y = _classes()
    history = model.fit(x, y, epochs=3, batch_size=16, tol=None, verbose=0, strategy=strategy)
    return _result(model, history, rng=model.layers[1].get_state()["rng_state"].tolist())


def seed_none(strategy, rank, size, workdir):
    """seed=None draws a different seed on each process: rank 0's seed and weights are used."""
    model = _mlp(seed=None)
    model.compile("adam", "softmax_cross_entropy")
    x, y = _classes()
    history = model.fit(x, y, epochs=2, batch_size=16, tol=None, verbose=0, strategy=strategy)
    return _result(model, history, seed=model.seed)


def unsynchronized_batchnorm(strategy, rank, size, workdir):
    """The control for the BatchNormalization cases: with the statistics left local, the replicas drift
    apart (their running statistics differ) and the weights leave the one-process ones."""
    if strategy is not None:
        begin = strategy.begin

        def begin_without_sync(model, steps, samples):
            begin(model, steps, samples)
            strategy.end(model)  # detaches the synchronized sums

        strategy.begin = begin_without_sync
    model = _mlp(batch_norm=True)
    model.compile(nn.SGD(lr=0.05), "softmax_cross_entropy")
    x, y = _classes(40)
    try:
        history = model.fit(x, y, epochs=2, batch_size=8, tol=None, verbose=0, strategy=strategy)
    except RuntimeError as exc:  # the replica check catches the local statistics
        return {**_error(exc), "weights": model.get_weights()}
    return _result(model, history)


CASES = {f.__name__: f for f in (
    mlp_adam, stop_rule, batchnorm_small_batches, batchnorm_cnn, early_stopping, files_and_output, dataset_objects,
    memmap_shards, float32, nonfinite, terminate_on_nan, interrupt, stop_on_one_rank, drift, bad_labels_on_one_rank,
    different_sizes, dropout, seed_none, unsynchronized_batchnorm, cnn_tiny_batches, mismatched_settings,
    errors_on_one_rank, big_seed)}


if __name__ == "__main__":  # pragma: no cover - a quick look: python tests/distributed_cases.py NAME
    print(CASES[sys.argv[1]](None, 0, 1, "."))
