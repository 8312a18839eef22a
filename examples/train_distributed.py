"""Data-parallel training over MPI processes, the two ways to give them the data.

    mpiexec -n 2 python -m mpi4py examples/train_distributed.py               # every process holds the arrays
    mpiexec -n 2 python -m mpi4py examples/train_distributed.py --shards      # each reads its shard of a .npy
    python examples/train_distributed.py                                      # one process: the same result

Needs ``pip install "nnlib[mpi]"`` (mpi4py and the mpich wheel, which puts ``mpiexec`` in the
virtual environment). Without ``mpiexec`` the script runs as one process, and prints the same
losses to rounding. Fashion-MNIST when it is installed (``apt-get install dataset-fashion-mnist``),
else scikit-learn's digits. Only rank 0 prints and saves.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import nnlib as nn
from nnlib.data import MemmapDataset
from nnlib.distributed import DataParallel


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    try:
        (x, y), (xt, yt) = nn.datasets.load_fashion_mnist()
        return x[:20000], y[:20000], xt, yt, "Fashion-MNIST (20000 training rows)"
    except FileNotFoundError:
        (x, y), (xt, yt) = nn.datasets.load_digits()
        return x, y, xt, yt, "digits"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", action="store_true", help="each process reads its shard of a .npy file")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    strategy = DataParallel()  # MPI.COMM_WORLD: one process when not started by mpiexec
    say = print if strategy.rank == 0 else (lambda *_: None)
    x, y, x_test, y_test, source = load()
    model = nn.Sequential([nn.Dense(256, activation="relu"), nn.BatchNormalization(), nn.Dense(128, activation="relu"),
                           nn.Dense(10)], seed=0)
    model.compile(nn.Adam(lr=1e-3), "softmax_cross_entropy", metrics=["accuracy"])

    if not args.shards:
        # 1. every process holds the same arrays (or opens the same memmap); fit hands each its rows
        history = model.fit(x, y, epochs=args.epochs, batch_size=256, validation_split=0.1, verbose=2,
                            strategy=strategy)
    else:
        # 2. one dataset per process: here each reads its shard of every batch from one .npy file
        folder = Path(tempfile.gettempdir()) / "nnlib-train-distributed"
        if strategy.rank == 0:
            folder.mkdir(exist_ok=True)
            np.save(folder / "x.npy", x)
        strategy.comm.Barrier()  # the file is complete before anyone opens it
        data = MemmapDataset(folder / "x.npy", y, batch_size=256, seed=0,
                             num_shards=strategy.size, shard_index=strategy.rank)
        history = model.fit(data, epochs=args.epochs, verbose=2, strategy=strategy)

    result = model.evaluate(x_test, y_test)  # every process holds the same model
    say(f"{source}, {strategy.size} process(es): final loss {history.history['loss'][-1]:.6f}, "
        f"test accuracy {result['accuracy']:.4f}")
    if strategy.rank == 0:
        model.save(str(Path(tempfile.gettempdir()) / "nnlib-distributed.nnlib"))


if __name__ == "__main__":
    main()
