"""The reference MLP on Fashion-MNIST: 784-256-128-10, ReLU, Adam (lr 1e-3), batch 128.

Trains on all 60,000 training images for a fixed 25 epochs and reports accuracy on the
10,000 test images, the time per epoch, and a PNG of the loss and accuracy curves.
Expect about 0.89 (target >= 0.885): from epoch ~15 on, the test accuracy wobbles by
about +-0.005 from one epoch to the next around 0.891, and the exact figure depends on
the seed and, in float32, on how many threads BLAS uses.

The test set is passed as ``validation_data=(x_test, y_test)`` only to draw the
validation curves: nothing is chosen from it while training (``tol=None`` turns the
stop rule off). Stopping on ``val_loss`` would be a poor choice here: the test loss
bottoms out after about 8-12 epochs, as the network grows over-confident on the
images it gets wrong, while the test accuracy still creeps up.

Run (needs the data: ``apt-get install dataset-fashion-mnist``; about 20-35 s on 2 cores)::

    python examples/fashion_mnist_mlp.py [--epochs 25] [--plot fashion_mnist_curves.png]
"""

import argparse
import sys
import time

import numpy as np

import nnlib as nn
from nnlib.datasets import load_fashion_mnist
from nnlib.plot import MISSING_MATPLOTLIB, plot_history


class EpochTimer(nn.Callback):
    """Wall-clock seconds of each epoch (training steps plus the validation pass)."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--plot", default="fashion_mnist_curves.png", help="PNG file for the curves")
    args = parser.parse_args()

    try:
        (x_train, y_train), (x_test, y_test) = load_fashion_mnist()  # float32 in [0, 1], shape (N, 784)
    except FileNotFoundError as exc:
        sys.exit(f"Fashion-MNIST is not installed.\n{exc}")  # prints to stderr, exit status 1

    model = nn.Sequential([
        nn.Dense(256, activation="relu"),
        nn.Dense(128, activation="relu"),
        nn.Dense(10),
    ], seed=0)
    model.compile(optimizer=nn.Adam(lr=1e-3), loss="softmax_cross_entropy", metrics=["accuracy"])

    timer = EpochTimer()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=128,
                        validation_data=(x_test, y_test), tol=None, callbacks=[timer], verbose=2)

    accuracy = model.evaluate(x_test, y_test)["accuracy"]
    seconds = np.array(timer.seconds)
    print(f"\ntest accuracy: {accuracy:.4f} (target >= 0.885)")
    print(f"time per epoch: median {np.median(seconds):.2f} s, min {seconds.min():.2f} s, "
          f"total {seconds.sum():.1f} s for {len(seconds)} epochs")
    print(f"stop reason: {history.stop_reason}")

    try:
        path = plot_history(history, args.plot, title="784-256-128-10 MLP on Fashion-MNIST (validation = test set)")
        print(f"curves plot: {path}")
    except ImportError:
        print(MISSING_MATPLOTLIB)


if __name__ == "__main__":
    main()
