"""Vanishing and exploding gradients: see them with GradientMonitor, cure them.

1. Vanishing: ten Dense layers with sigmoid activations and a small normal
   initialization (std 0.05). Backpropagation multiplies the gradient by the
   sigmoid's derivative (at most 1/4) and by small weights at every layer, so the
   first layers' gradients are many orders of magnitude smaller than the last
   one's; they never learn and the network stays at chance. The monitor warns.
   The same depth with ReLU, He initialization and BatchNormalization trains.
2. Exploding: ten ReLU layers initialized 1.7x wider than He's std; the forward
   activations and the gradients grow at every layer, the first SGD steps blow the
   weights up and the loss becomes NaN. global_clipnorm=1.0 cures it.

Both use the same optimizer (SGD with momentum) and the same seed. The plot shows
each layer's gradient norm per epoch on a log scale, for both networks of part 1.

    python examples/vanishing_gradients.py [--dataset fashion-mnist] [--epochs N] [--plot gradients.png]

About 4 s on digits (40 epochs), 16 s on Fashion-MNIST (5 epochs), on 2 cores.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import nnlib as nn
from nnlib.callbacks import GradientHealthWarning, GradientMonitor
from nnlib.datasets import load
from nnlib.initializers import Normal
from nnlib.layers import BatchNormalization
from nnlib.optimizers import Momentum
from nnlib.plot import plot_gradient_norms

DEPTH, WIDTH = 10, 64
# 1347 digits training rows: batches of 50 leave a last batch of 47. A last batch of 3
# (batch_size 32 or 64) gives BatchNormalization very noisy statistics for that step.
BATCH = 50


def sigmoid_net(n_classes: int) -> nn.Sequential:
    small = Normal(0.05)
    layers = [nn.Dense(WIDTH, activation="sigmoid", weight_init=small) for _ in range(DEPTH - 1)]
    return nn.Sequential(layers + [nn.Dense(n_classes, weight_init=small)], seed=0, name="sigmoid")


def relu_bn_net(n_classes: int) -> nn.Sequential:
    layers = []
    for _ in range(DEPTH - 1):
        layers += [nn.Dense(WIDTH, weight_init="he_normal"), BatchNormalization(), nn.ReLU()]
    return nn.Sequential(layers + [nn.Dense(n_classes)], seed=0, name="relu_bn")


def wide_init_relu_net(n_classes: int) -> nn.Sequential:
    wide = Normal(0.3)  # He's std for 64 inputs is sqrt(2/64) = 0.18
    layers = [nn.Dense(WIDTH, activation="relu", weight_init=wide) for _ in range(DEPTH - 1)]
    return nn.Sequential(layers + [nn.Dense(n_classes, weight_init=wide)], seed=0, name="wide_init")


def train(model, data, epochs, optimizer, monitor=None):
    """Fit and return (test accuracy or None if training diverged, the monitor's warnings, error text)."""
    (x_train, y_train), (x_test, y_test) = data
    model.compile(optimizer, "softmax_cross_entropy", metrics=["accuracy"])
    callbacks = [monitor] if monitor is not None else []
    error = None
    with warnings.catch_warnings(record=True) as caught, np.errstate(over="ignore", invalid="ignore"):
        warnings.simplefilter("always", GradientHealthWarning)
        try:
            model.fit(x_train, y_train, epochs=epochs, batch_size=BATCH, tol=None, verbose=0, callbacks=callbacks)
        except FloatingPointError as exc:
            error = str(exc)
    accuracy = None if error else model.evaluate(x_test, y_test)["accuracy"]
    return accuracy, [str(w.message) for w in caught if issubclass(w.category, GradientHealthWarning)], error


def show_warnings(messages):
    for m in messages:
        print(f"    GradientHealthWarning: {m[:300]}{'...' if len(m) > 300 else ''}")
    if not messages:
        print("    (no GradientHealthWarning)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=["digits", "fashion-mnist"])
    parser.add_argument("--epochs", type=int, default=None, help="default: 40 on digits, 5 on fashion-mnist")
    parser.add_argument("--plot", default="vanishing_gradients.png", help="PNG of the gradient norms")
    args = parser.parse_args()
    t0 = time.perf_counter()
    if args.epochs is None:
        args.epochs = 40 if args.dataset == "digits" else 5
    data = load(args.dataset)
    n_classes = int(data[0][1].max()) + 1

    print(f"Part 1: vanishing gradients, {DEPTH} Dense layers of {WIDTH} on {args.dataset}, "
          f"SGD momentum 0.9, lr 0.05, {args.epochs} epochs")
    results = {}
    networks = [("sigmoid, normal(0.05) init", sigmoid_net), ("ReLU, He init, BatchNormalization", relu_bn_net)]
    for label, make in networks:
        monitor = GradientMonitor()
        acc, messages, _ = train(make(n_classes), data, args.epochs, Momentum(lr=0.05, momentum=0.9), monitor)
        results[label] = monitor
        first, last = monitor.layer_names[0], monitor.layer_names[-1]
        g_first = monitor.history[f"grad_norm/{first}"][-1]
        g_last = monitor.history[f"grad_norm/{last}"][-1]
        print(f"  {label}: test accuracy {acc:.4f}")
        print(f"    last epoch's mean gradient norm: {first} {g_first:.2e}, {last} {g_last:.2e} "
              f"(ratio {g_first / g_last:.1e}); update ratio of {first}: "
              f"{monitor.history[f'update_ratio/{first}'][-1]:.1e}")
        show_warnings(messages)
    if args.plot:
        plot_gradient_norms(results, args.plot, title="Gradient norm per layer (dark: input side, light: output)")
        print(f"  plot written to {args.plot}")

    print("\nPart 2: exploding gradients, 10 ReLU layers with normal(0.3) init, SGD momentum 0.9, lr 0.02")
    for label, clip in [("no clipping", None), ("global_clipnorm=1.0", 1.0)]:
        monitor = GradientMonitor()
        acc, messages, error = train(wide_init_relu_net(n_classes), data, args.epochs,
                                     Momentum(lr=0.02, momentum=0.9, global_clipnorm=clip), monitor)
        outcome = f"diverged: {error.split(';')[0]}" if error else f"test accuracy {acc:.4f}"
        print(f"  {label}: {outcome}")
        show_warnings(messages)
    print(f"\n{time.perf_counter() - t0:.1f} s in all")


if __name__ == "__main__":
    main()
