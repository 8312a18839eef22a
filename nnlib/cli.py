"""The ``nnlib`` command: train, evaluate and predict on MNIST-style data.

    nnlib train --data digits
    nnlib train --data fashion-mnist --hidden 256,128 --batch-size 128 --save model.nnlib --plot curves.png
    nnlib train --data fashion-mnist --arch cnn --batch-size 128 --epochs 10 --tol none
    nnlib evaluate model.nnlib --data fashion-mnist
    nnlib predict model.nnlib --data fashion-mnist --out predictions.csv
    nnlib export model.nnlib model.onnx

A bad argument prints one line ``nnlib: error: ...`` and exits with status 2; a
problem with the data or a model file exits with status 1; neither shows a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from . import datasets
from . import optimizers as optimizers_module
from .layers import Conv2D, Dense, Flatten, Layer, MaxPooling2D, Reshape, activations
from .model import Sequential
from .onnx import OPSET, describe
from .optimizers import registry as optimizer_registry
from .plot import MISSING_MATPLOTLIB, plot_history
from .saving import load_model

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        self.exit(2, f"nnlib: error: {message} (see nnlib {self.prog.split()[-1]} --help)\n")


def _hidden(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden must be comma-separated positive ints, got {text!r}") from None
    if any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"--hidden sizes must be > 0, got {text!r}")
    return sizes


def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def _fraction(text: str) -> float:
    value = _positive(float)(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text!r}")
    return value


def _tol(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'none', got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'none', got {text!r}")
    return value


def _data_help() -> str:
    return f"{', '.join(datasets.DATASETS)} or a directory of the four MNIST-style IDX files"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nnlib", description="Train and use NumPy neural networks on MNIST-style data.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train an MLP or a CNN, print its test accuracy, optionally save it")
    train.add_argument("--data", default="digits", help=f"dataset: {_data_help()} (default: digits)")
    train.add_argument("--arch", default="mlp", choices=["mlp", "cnn"],
                       help="mlp: Dense layers of --hidden sizes; cnn: the reference CNN, Conv2D(32, 3, same) - "
                            "MaxPooling2D - Conv2D(64, 3, same) - MaxPooling2D - Dense(128) (default: mlp)")
    train.add_argument("--hidden", type=_hidden, default=[256, 128],
                       help="hidden layer sizes of the mlp (default: 256,128)")
    train.add_argument("--activation", default="relu", choices=[n for n in activations.names() if n != "linear"])
    train.add_argument("--optimizer", default="adam", choices=optimizer_registry.names())
    train.add_argument("--lr", type=_positive(float), default=1e-3, help="learning rate (default: 1e-3)")
    train.add_argument("--epochs", type=_positive(int), default=20, help="maximum epochs (default: 20)")
    train.add_argument("--batch-size", type=_positive(int), default=32, help="(default: 32)")
    train.add_argument("--tol", type=_tol, default=1e-4, help="loss-change stop threshold, or 'none' (default: 1e-4)")
    train.add_argument("--patience", type=_positive(int), default=3, help="epochs without improvement (default: 3)")
    train.add_argument("--validation-split", type=_fraction, default=0.1, help="held-out fraction (default: 0.1)")
    train.add_argument("--seed", type=int, default=0, help="seed for init, split and shuffles (default: 0)")
    train.add_argument("--save", metavar="PATH", help="save the trained model to PATH")
    train.add_argument("--plot", metavar="PNG", help="draw loss and accuracy curves to PNG (needs matplotlib)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    train.add_argument("--distributed", action="store_true",
                       help="train over the processes of `mpiexec -n K nnlib train ...` (data-parallel, MPI; needs "
                            "nnlib[mpi]); rank 0 alone prints and saves")

    for name, what in (("evaluate", "loss and accuracy of a saved model on the test split"),
                       ("predict", "write a saved model's predictions on the test split to CSV")):
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("model", help="a file written by nnlib train --save")
        cmd.add_argument("--data", default="digits", help=f"dataset: {_data_help()} (default: digits)")
        if name == "predict":
            cmd.add_argument("--out", default="predictions.csv", help="CSV path (default: predictions.csv)")

    export = sub.add_parser("export", help='write a saved model as an ONNX file (needs pip install "nnlib[onnx]")')
    export.add_argument("model", help="a file written by nnlib train --save")
    export.add_argument("out", help="the ONNX file to write, e.g. model.onnx")
    export.add_argument("--dtype", choices=["float32", "float64"],
                        help="the graph's float dtype (default: the model's)")
    return parser


def _layers(args: argparse.Namespace, n_features: int, n_classes: int) -> list[Layer]:
    if args.arch == "mlp":
        return [Dense(h, activation=args.activation) for h in args.hidden] + [Dense(n_classes)]
    side = math.isqrt(n_features)
    if side * side != n_features or side < 4:
        raise ValueError(f"--arch cnn needs square images of at least 4x4 pixels; {args.data} has "
                         f"{n_features} features per sample")
    # The data sets come as rows of pixels: the model's first layer makes them (side, side, 1) images, so
    # the saved model takes the same rows as an MLP would (nnlib evaluate and predict work unchanged).
    return [Reshape((side, side, 1)),
            Conv2D(32, 3, padding="same", activation=args.activation), MaxPooling2D(2),
            Conv2D(64, 3, padding="same", activation=args.activation), MaxPooling2D(2),
            Flatten(), Dense(128, activation=args.activation), Dense(n_classes)]


def _train(args: argparse.Namespace) -> int:
    strategy = None
    if args.distributed:  # the processes mpiexec started; rank 0 alone prints and writes
        from .distributed import DataParallel

        strategy = DataParallel()
    say = print if strategy is None or strategy.rank == 0 else (lambda *_: None)
    (x_train, y_train), (x_test, y_test) = datasets.load(args.data)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    say(f"data: {args.data}, {x_train.shape[0]} train and {x_test.shape[0]} test samples, "
        f"{x_train.shape[1]} features, {n_classes} classes"
        + ("" if strategy is None else f"; {strategy.size} processes"))
    model = Sequential(_layers(args, x_train.shape[1], n_classes), seed=args.seed)
    model.compile(optimizer=optimizers_module.get(args.optimizer, lr=args.lr),
                  loss="softmax_cross_entropy", metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_split=args.validation_split, tol=args.tol, patience=args.patience,
                        verbose=0 if args.quiet else 1, strategy=strategy)
    seconds = time.perf_counter() - start
    result = model.evaluate(x_test, y_test)
    say(f"trained {history.epochs_run} epochs in {seconds:.1f}s; {history.stop_reason}")
    say(f"test accuracy: {result['accuracy']:.4f} (test loss {result['loss']:.4f})")
    if say is not print:
        return 0
    if args.save:
        model.save(args.save)
        print(f"saved the model to {args.save}")
    if args.plot:
        try:
            plot_history(history, args.plot, title=f"nnlib on {args.data}")
            print(f"wrote the curves to {args.plot}")
        except ImportError:
            print(MISSING_MATPLOTLIB)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    _, (x_test, y_test) = datasets.load(args.data)
    result = model.evaluate(x_test, y_test)
    print(" - ".join(f"test {k}: {v:.4f}" for k, v in result.items()))
    return 0


def _predict(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    _, (x_test, _) = datasets.load(args.data)
    probs = model.predict(x_test)
    table = np.column_stack([np.arange(len(probs)), probs.argmax(axis=1), probs])
    header = "index,predicted," + ",".join(f"p{c}" for c in range(probs.shape[1]))
    fmt = ["%d", "%d"] + ["%.6f"] * probs.shape[1]
    np.savetxt(args.out, table, delimiter=",", header=header, comments="", fmt=fmt)
    print(f"wrote {len(probs)} predictions to {args.out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    proto = model.export(args.out, dtype=args.dtype)  # without onnx, main reports the ImportError's advice
    print(f"wrote {args.out}: ONNX opset {OPSET}, {len(proto.graph.node)} nodes")
    print(describe(proto))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nnlib`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return {"train": _train, "evaluate": _evaluate, "predict": _predict,
                "export": _export}[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, FloatingPointError, ImportError) as exc:
        print(f"nnlib: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nnlib: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
