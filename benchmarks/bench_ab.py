"""A/B two checkouts of nnlib in one process: epochs of the reference MLP, interleaved.

On a shared host whose speed drifts by tens of percent within a minute, two separate runs
cannot settle a difference of a few percent: each sees its own weather. This script loads
two copies of nnlib side by side (each checkout's ``nnlib/`` under its own module name,
so both share NumPy and its one OpenBLAS thread pool), builds the same model in each, and
runs their epochs alternately, ``A B B A A B ...``. Adjacent epochs meet nearly the same
host, so the ratio of each B epoch to the A epochs around it is far steadier than either
time. The verdict is the median of those ratios, with the spread of the middle half.

    python benchmarks/bench_ab.py --a /path/to/old/checkout --b . --optimizer adam --rounds 10
    python benchmarks/bench_ab.py --a OLD --b OLD --set-a optimizers.Momentum.windowed=False --optimizer momentum

Both copies train the reference network 784-256-128-10 (ReLU, softmax cross-entropy,
batch 128, float32, ``metrics=["accuracy"]``) on Fashion-MNIST (random data of its shape if
it is not installed), as ``bench_fit.py`` does; each epoch is one ``fit(initial_epoch=k)``
call, the first (buffers, optimizer state) is a warm-up and not counted.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np

OPTIMIZERS = {"adam": ("Adam", {"lr": 1e-3}), "momentum": ("Momentum", {"lr": 0.05, "momentum": 0.9})}


def load_checkout(root: Path, name: str) -> ModuleType:
    """The package ``root/nnlib`` imported as the top-level module ``name`` (its relative imports follow)."""
    init = root / "nnlib" / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"{root} has no nnlib/__init__.py")
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def set_attribute(package: ModuleType, assignment: str) -> None:
    """Apply ``"optimizers.Momentum.windowed=False"`` to ``package`` (the value is a Python literal)."""
    target, _, literal = assignment.partition("=")
    *path, attr = target.strip().split(".")
    owner = package
    for name in path:
        owner = getattr(owner, name)
    setattr(owner, attr, ast.literal_eval(literal.strip()))


def load_data(nn: ModuleType) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        (x, y), _ = importlib.import_module(f"{nn.__name__}.datasets").load_fashion_mnist()
        return np.ascontiguousarray(x, np.float32), y, "fashion-mnist"
    except (FileNotFoundError, OSError, ValueError):
        rng = np.random.default_rng(0)
        return rng.random((60000, 784), dtype=np.float32), rng.integers(0, 10, 60000), "random data"


def new_model(nn: ModuleType, optimizer: str):
    cls, kwargs = OPTIMIZERS[optimizer]
    model = nn.Sequential([nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"), nn.Dense(10)], seed=0)
    model.compile(getattr(nn, cls)(**kwargs), "softmax_cross_entropy", metrics=["accuracy"])
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="checkout A (the baseline)")
    parser.add_argument("--b", type=Path, required=True, help="checkout B")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
    parser.add_argument("--rounds", type=int, default=10, help="epochs of each, after one warm-up each")
    parser.add_argument("--set-a", action="append", default=[], metavar="ATTR=VALUE",
                        help="set an attribute in A's package first, e.g. optimizers.Momentum.windowed=False")
    parser.add_argument("--set-b", action="append", default=[], metavar="ATTR=VALUE", help="the same for B")
    parser.add_argument("--out", type=Path, help="JSON output path")
    args = parser.parse_args(argv)

    a, b = load_checkout(args.a.resolve(), "nnlib_a"), load_checkout(args.b.resolve(), "nnlib_b")
    for package, assignments in ((a, args.set_a), (b, args.set_b)):
        for assignment in assignments:
            set_attribute(package, assignment)
    x, y, data = load_data(b)
    models = {"A": new_model(a, args.optimizer), "B": new_model(b, args.optimizer)}
    epochs = {"A": 0, "B": 0}
    times: dict[str, list[float]] = {"A": [], "B": []}
    sequence: list[tuple[str, float]] = []

    def epoch(which: str) -> float:
        k = epochs[which]
        start = time.perf_counter()
        models[which].fit(x, y, epochs=k + 1, initial_epoch=k, batch_size=128, verbose=0, tol=None)
        epochs[which] += 1
        return time.perf_counter() - start

    epoch("A"), epoch("B")  # warm-up: buffers and optimizer state
    for r in range(args.rounds):
        for which in ("AB" if r % 2 == 0 else "BA"):
            seconds = epoch(which)
            times[which].append(seconds)
            sequence.append((which, seconds))
    # each B epoch against the mean of the A epochs next to it in the sequence
    ratios = []
    for i, (which, seconds) in enumerate(sequence):
        if which == "B":
            near = [s for w, s in sequence[max(0, i - 1):i + 2] if w == "A"]
            ratios.append(seconds / statistics.fmean(near))
    q1, median, q3 = statistics.quantiles(ratios, n=4)
    result = {
        "a": str(args.a), "b": str(args.b), "set_a": args.set_a, "set_b": args.set_b,
        "optimizer": args.optimizer, "data": data, "rounds": args.rounds,
        "a_epochs_s": times["A"], "b_epochs_s": times["B"], "b_over_a": ratios,
        "median_ratio": median, "quartiles": [q1, q3],
        "min_ratio": min(times["B"]) / min(times["A"]),
        "median_epoch_ratio": statistics.median(times["B"]) / statistics.median(times["A"]),
    }
    print(f"{args.optimizer}, {data}: A {args.a} / B {args.b}, {args.rounds} interleaved epochs each")
    print(f"  A epochs s: {' '.join(f'{t:.3f}' for t in times['A'])}")
    print(f"  B epochs s: {' '.join(f'{t:.3f}' for t in times['B'])}")
    print(f"  B / neighbouring A: median {median:.3f} (middle half {q1:.3f}-{q3:.3f}); "
          f"min/min {result['min_ratio']:.3f}; median/median {result['median_epoch_ratio']:.3f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
