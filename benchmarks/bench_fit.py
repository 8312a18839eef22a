"""Training speed of the reference MLP: nnlib against its GEMM floor and scikit-learn.

What is measured
----------------
The reference network 784-256-128-10 (ReLU, softmax cross-entropy, batch 128, float32)
trained on Fashion-MNIST (60000 training rows; random data of the same shape, with a
printed note, when the data is not installed). Workloads:

* ``nnlib-adam``        nnlib, ``Adam(lr=1e-3)``
* ``nnlib-momentum``    nnlib, ``Momentum(lr=0.05, momentum=0.9)``
* ``sklearn-adam``      ``MLPClassifier(solver="adam", learning_rate_init=1e-3)``
* ``sklearn-momentum``  ``MLPClassifier(solver="sgd", learning_rate_init=0.05, momentum=0.9,
  nesterovs_momentum=False)``

all with ``alpha=0`` (no L2), shuffling, seed 0. For each: the wall time of every epoch
(figures use epochs 2..N: epoch 1 allocates buffers and optimizer state), test accuracy on
the 10000 test rows, the time of ``predict`` on the test rows (nnlib ``predict``, sklearn
``predict_proba``: both return probabilities; median of several calls), and the peak
resident memory of the worker process, also less the bytes of the loaded dataset.

The GEMM floor (see ``_common.py``) is the epoch's matrix products alone: per batch, the
3 forward products, the 3 weight-gradient products and the input-gradient products of
layers 2 and 3, at the epoch's batch sizes (468 batches of 128 and one of 96), timed with
``np.matmul(..., out=)``. Every worker times its own floor, half of the samples before
training and half after, so ratios compare figures from one process. The headline ratio
is the fastest epoch over the fastest floor sample (noise on a shared machine only ever
slows things down); the ratio of the medians is printed beside it. ``predict × floor``
is the fastest predict call over the fastest run of the 3 forward products over all test
rows at once (the median predict time is shown; both ratios are in the JSON).

How
---
Each workload runs in its own process (this script with ``--worker``); workloads run
round-robin for ``--repeats`` rounds and the table shows medians over rounds.

    python benchmarks/bench_fit.py                 # the table; JSON to results/bench_fit.json
    python benchmarks/bench_fit.py --repeats 3     # three interleaved rounds
    python benchmarks/bench_fit.py --quick         # smoke test, seconds
    python benchmarks/bench_fit.py --accuracy      # 20 Adam epochs, pass if test accuracy >= 0.88
    python benchmarks/bench_fit.py --profile adam  # cProfile of nnlib epochs, top entries
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

HIDDEN = (256, 128)
N_CLASSES = 10
INPUT_DIM = 784
ACCURACY_EPOCHS = 20
ACCURACY_TARGET = 0.88
WORKLOADS = ("nnlib-adam", "nnlib-momentum", "sklearn-adam", "sklearn-momentum")
QUICK_ROWS = (6000, 2000)  # train, test rows in --quick mode


# -- data -----------------------------------------------------------------------------
def load_data(random_data: bool, train_rows: int | None, test_rows: int | None, seed: int = 0):
    """Fashion-MNIST, or random data of the same shape.

    Returns (x, y, x_test, y_test, source, loaded_mb): ``loaded_mb`` counts the arrays as
    loaded, before any subset is taken (copies, so the full arrays are freed).
    """
    source = "fashion-mnist"
    if not random_data:
        from nnlib.datasets import load_fashion_mnist

        try:
            (x, y), (xt, yt) = load_fashion_mnist()
        except FileNotFoundError:
            random_data, source = True, "random (Fashion-MNIST not found)"
    if random_data:
        source = "random" if source == "fashion-mnist" else source
        rng = np.random.default_rng(seed)
        x = rng.random((60000, INPUT_DIM), dtype=np.float32)
        xt = rng.random((10000, INPUT_DIM), dtype=np.float32)
        y = rng.integers(0, N_CLASSES, 60000, dtype=np.int64)
        yt = rng.integers(0, N_CLASSES, 10000, dtype=np.int64)
    loaded_mb = (x.nbytes + y.nbytes + xt.nbytes + yt.nbytes) / C.MB
    if train_rows:
        x, y = x[:train_rows].copy(), y[:train_rows].copy()
    if test_rows:
        xt, yt = xt[:test_rows].copy(), yt[:test_rows].copy()
    return x, y, xt, yt, source, loaded_mb


# -- the workloads, each run inside a worker --------------------------------------------
def _nnlib_model(optimizer: str, metrics: bool):
    import nnlib as nn

    model = nn.Sequential([nn.Dense(HIDDEN[0]), nn.ReLU(), nn.Dense(HIDDEN[1]), nn.ReLU(), nn.Dense(N_CLASSES)],
                          seed=0)
    opt = nn.Adam(lr=1e-3) if optimizer == "adam" else nn.Momentum(lr=0.05, momentum=0.9)
    model.compile(optimizer=opt, loss="softmax_cross_entropy", metrics=["accuracy"] if metrics else None)
    return model


def train_nnlib(optimizer: str, x, y, epochs: int, batch_size: int, metrics: bool):
    """Fit; returns (epoch seconds, predict function, accuracy function, final train loss)."""
    model = _nnlib_model(optimizer, metrics)
    timer = C.epoch_timer()
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, tol=None, verbose=0, callbacks=[timer])

    def accuracy(xt, yt):
        return float(np.mean(np.argmax(model.predict(xt), axis=1) == yt))

    return timer.times, model.predict, accuracy, float(history.history["loss"][-1])


def train_sklearn(optimizer: str, x, y, epochs: int, batch_size: int):
    """Fit MLPClassifier one epoch per ``partial_fit`` call, timing each call.

    ``partial_fit`` runs exactly one pass over the data and keeps the optimizer's state
    between calls, so each call is one epoch of an ordinary ``fit``. (``warm_start`` with
    ``max_iter=1`` would not do: every ``fit`` call builds a new optimizer, resetting
    Adam's moments and the momentum velocity.) Each call also validates X
    (``check_array``, a finite check over X); its cost is measured and reported
    as ``validation_s``. ``random_state`` is a RandomState instance, not an int: sklearn
    re-seeds from an int on every call, which would shuffle every epoch in the same order.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.utils import check_array

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    common = dict(hidden_layer_sizes=HIDDEN, activation="relu", batch_size=batch_size, alpha=0.0, tol=0.0,
                  n_iter_no_change=10**9, shuffle=True, random_state=np.random.RandomState(0), max_iter=epochs)
    if optimizer == "adam":
        clf = MLPClassifier(solver="adam", learning_rate_init=1e-3, **common)
    else:
        clf = MLPClassifier(solver="sgd", learning_rate="constant", learning_rate_init=0.05, momentum=0.9,
                            nesterovs_momentum=False, **common)
    classes = np.arange(N_CLASSES)
    times = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        if epoch == 0:
            clf.partial_fit(x, y, classes=classes)
        else:
            clf.partial_fit(x, y)
        times.append(time.perf_counter() - t0)
    validation = C.time_calls(lambda: check_array(x, dtype=(np.float64, np.float32)), 3)

    def accuracy(xt, yt):
        return float(clf.score(xt, yt))

    return times, clf.predict_proba, accuracy, float(clf.loss_), statistics.median(validation)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One workload in this process: floor, training, accuracy, predict, memory."""
    workload = spec["workload"]
    library, optimizer = workload.split("-")
    if library == "sklearn":
        import sklearn  # noqa: F401 - imported before the baseline reading, as nnlib is
    import nnlib  # noqa: F401

    out: dict[str, Any] = {"workload": workload, "spec": spec, "rss_after_imports_mb": C.rss_mb()}
    t0 = time.perf_counter()
    x, y, xt, yt, source, loaded_mb = load_data(spec["random_data"], spec.get("train_rows"), spec.get("test_rows"))
    out.update(data=source, load_s=time.perf_counter() - t0, train_rows=len(x), test_rows=len(xt))
    data_mb = (x.nbytes + y.nbytes + xt.nbytes + yt.nbytes) / C.MB  # what training and evaluation use
    out.update(data_mb=data_mb, loaded_data_mb=loaded_mb, rss_after_load_mb=C.rss_mb())

    # Memory, step 1: the peak so far (imports, loading) before the benchmark's own arrays.
    load_peak = C.ru_maxrss_mb()
    dims = C.layer_dims(INPUT_DIM, HIDDEN, N_CLASSES)
    batches = C.epoch_batch_sizes(len(x), spec["batch_size"])
    out["probe_before"] = C.machine_probe()
    floor = C.TrainingFloor(dims, batches)
    n_floor = spec["floor_samples"]
    floor_times = floor.sample((n_floor + 1) // 2)
    del floor  # freed: not part of the training's memory

    # Step 2: reset the high-water mark, so it covers only fit, evaluation and predict.
    reset_ok = C.reset_peak_rss()
    if library == "nnlib":
        epoch_times, predict, accuracy, loss = train_nnlib(optimizer, x, y, spec["epochs"], spec["batch_size"],
                                                           spec["metrics"])
    else:
        epoch_times, predict, accuracy, loss, out["sklearn_validation_s"] = train_sklearn(
            optimizer, x, y, spec["epochs"], spec["batch_size"])
    fit_peak = C.hwm_mb() if reset_ok else None

    out["test_accuracy"] = accuracy(xt, yt)
    out["final_train_loss"] = loss
    predict_times = C.time_calls(lambda: predict(xt), spec["predict_samples"])
    # Step 3: the library's work ends here, before the benchmark allocates more floors.
    peak_rss = max(load_peak, C.hwm_mb() if reset_ok else C.ru_maxrss_mb())

    floor = C.TrainingFloor(dims, batches)
    floor_times += floor.sample(n_floor // 2)
    del floor
    pfloor = C.ForwardFloor(dims, len(xt), x=xt)
    predict_floor_times = pfloor.sample(spec["predict_samples"])
    del pfloor
    out["probe_after"] = C.machine_probe()

    timed = epoch_times[1:] or epoch_times  # epochs 2..N
    fl = C.summarize(floor_times)
    out.update(
        epoch_times=epoch_times,
        epoch_median_s=statistics.median(timed),
        epoch_min_s=min(timed),
        floor_s=fl,
        floor_flops=C.training_flops(dims, batches),
        floor_gflops=C.training_flops(dims, batches) / fl["min"] / 1e9,
        ratio_min=min(timed) / fl["min"],
        ratio_median=statistics.median(timed) / fl["median"],
        predict_s=C.summarize(predict_times),
        predict_floor_s=C.summarize(predict_floor_times),
        predict_ratio=min(predict_times) / min(predict_floor_times),
        predict_ratio_median=statistics.median(predict_times) / statistics.median(predict_floor_times),
        peak_rss_mb=peak_rss,
        fit_peak_rss_mb=fit_peak,
        n_batches=len(batches),
    )
    out["peak_over_data_mb"] = out["peak_rss_mb"] - loaded_mb
    out["fit_peak_over_data_mb"] = None if fit_peak is None else fit_peak - data_mb
    return out


# -- the parent: spawn, collect, print --------------------------------------------------
def run_benchmark(args: argparse.Namespace) -> int:
    workloads = args.workloads
    epochs = 2 if args.quick else args.epochs
    train_rows, test_rows = QUICK_ROWS if args.quick else (args.train_rows, None)
    spec_base = dict(epochs=epochs, batch_size=args.batch_size, random_data=args.random_data,
                     train_rows=train_rows, test_rows=test_rows, metrics=not args.no_metrics,
                     floor_samples=3 if args.quick else args.floor_samples,
                     predict_samples=3 if args.quick else args.predict_samples)
    info = C.machine_info()
    t_start = time.perf_counter()
    results: dict[str, list[dict[str, Any]]] = {w: [] for w in workloads}
    for round_ in range(args.repeats):
        for w in workloads:  # round-robin: noise spreads over all workloads alike
            C.progress(f"[round {round_ + 1}/{args.repeats}] {w} ...")
            res = C.run_worker(__file__, {**spec_base, "workload": w}, args.quiet_wait, args.busy_retries)
            if "error" in res:
                C.progress(f"  {w} FAILED: {res['error']}")
            else:
                C.progress(f"  {w}: epochs {' '.join(f'{t:.3f}' for t in res['epoch_times'])} s, "
                           f"floor min {res['floor_s']['min']:.3f} s, acc {res['test_accuracy']:.4f}, "
                           f"other processes' CPUs {C.fmt(res['other_cpus'], 2)}; {C.probe_text(res)}")
            results[w].append(res)
    C.rerun_slow(__file__, results, args.quiet_wait, args.busy_retries, slow_wait=args.slow_wait)
    total = time.perf_counter() - t_start

    ok = {w: [r for r in rs if "error" not in r] for w, rs in results.items()}
    summary = {w: _summarize_workload(rs) for w, rs in ok.items() if rs}
    print(_report(summary, ok, info, epochs, args, total))
    out_path = Path(args.out) if args.out else C.RESULTS_DIR / ("bench_fit_quick.json" if args.quick else
                                                               "bench_fit.json")
    C.write_json(out_path, {"benchmark": "bench_fit", "argv": sys.argv[1:], "settings": spec_base,
                            "repeats": args.repeats, "machine": info, "total_wall_s": total,
                            "summary": summary, "runs": results})
    print(f"\nJSON written to {out_path}")
    return 1 if any("error" in r for rs in results.values() for r in rs) else 0


def _summarize_workload(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("epoch_median_s", "epoch_min_s", "ratio_min", "ratio_median", "test_accuracy", "predict_ratio",
            "peak_rss_mb", "peak_over_data_mb", "fit_peak_over_data_mb", "floor_gflops")
    s = {k: C.median_of(runs, k) for k in keys}
    s["predict_median_s"] = statistics.median(r["predict_s"]["median"] for r in runs)
    s["floor_min_s"] = statistics.median(r["floor_s"]["min"] for r in runs)
    s["floor_median_s"] = statistics.median(r["floor_s"]["median"] for r in runs)
    s["predict_floor_min_s"] = statistics.median(r["predict_floor_s"]["min"] for r in runs)
    s["rounds"] = len(runs)
    return s


def _report(summary, runs, info, epochs, args, total) -> str:
    first = next((rs[0] for rs in runs.values() if rs), None)
    if first is None:
        return "All workloads failed; see the messages above."
    lines = []
    if first["data"] != "fashion-mnist":
        lines.append(f"NOTE: data is {first['data']}: timings are valid, accuracies are chance level.\n")
    lines.append(f"bench_fit: 784-256-128-10 ReLU MLP, softmax CE, batch {args.batch_size}, float32, "
                 f"{first['data']} ({first['train_rows']} train / {first['test_rows']} test rows), "
                 f"{epochs} epochs (figures from epochs 2..{epochs}), median over {args.repeats} round(s)\n")
    head = ["workload", "median epoch s", "min epoch s", "× floor (min/min)", "× floor (median)", "test acc",
            f"predict {first['test_rows'] // 1000}k s", "predict × floor", "peak MB over data"]
    rows = []
    for w, s in summary.items():
        rows.append([w, C.fmt(s["epoch_median_s"]), C.fmt(s["epoch_min_s"]), C.fmt(s["ratio_min"], 2),
                     C.fmt(s["ratio_median"], 2), C.fmt(s["test_accuracy"], 4), C.fmt(s["predict_median_s"], 4),
                     C.fmt(s["predict_ratio"], 2), C.fmt(s["peak_over_data_mb"], 0)])
    lines.append(C.markdown_table(head, rows))
    floors_min = [r["floor_s"]["min"] for rs in runs.values() for r in rs]
    floors_med = [r["floor_s"]["median"] for rs in runs.values() for r in rs]
    pfloor = [r["predict_floor_s"]["min"] for rs in runs.values() for r in rs]
    gflops = first["floor_flops"] / statistics.median(floors_min) / 1e9
    lines.append(
        f"\nGEMM floor per epoch ({first['n_batches']} batches, 8 products each, "
        f"{first['floor_flops'] / 1e9:.1f} GFLOP): fastest {statistics.median(floors_min):.3f} s "
        f"({gflops:.0f} GFLOP/s), median {statistics.median(floors_med):.3f} s "
        f"(medians over the {len(floors_min)} workers; fastest seen {min(floors_min):.3f} s, "
        f"slowest worker's fastest {max(floors_min):.3f} s). "
        f"Predict floor ({first['test_rows']} rows, 3 products): {statistics.median(pfloor) * 1e3:.1f} ms.")
    lines.append(f"Data: {first['loaded_data_mb']:.0f} MB loaded"
                 + (f", {first['data_mb']:.0f} MB used" if first["data_mb"] != first["loaded_data_mb"] else "")
                 + f"; peak RSS {_mem_line(summary)}.")
    sk = {o: (summary.get(f"nnlib-{o}"), summary.get(f"sklearn-{o}")) for o in ("adam", "momentum")}
    speed = [f"{o}: nnlib {s_[1]['epoch_median_s'] / s_[0]['epoch_median_s']:.2f}× as fast as sklearn"
             for o, s_ in sk.items() if s_[0] and s_[1]]
    if speed:
        lines.append("Median epoch, " + "; ".join(speed) + ".")
    val = [r.get("sklearn_validation_s") for rs in runs.values() for r in rs if r.get("sklearn_validation_s")]
    if val:
        lines.append(f"sklearn epochs are partial_fit calls; each includes ~{statistics.median(val) * 1e3:.0f} ms "
                     "of input validation that one fit() call would do once.")
    lines.append(C.probe_line([r for rs in runs.values() for r in rs]))
    lines.append(C.machine_line(info) + f". Total wall time {total:.0f} s.")
    note = C.busy_note([r for rs in runs.values() for r in rs if "error" not in r])
    if note:
        lines.append(note)
    return "\n".join(lines)


def _mem_line(summary) -> str:
    parts = []
    for w, s in summary.items():
        fit = s.get("fit_peak_over_data_mb")
        parts.append(f"{w} {s['peak_rss_mb']:.0f} MB" + (f" (during fit alone: data used + {fit:.0f} MB)"
                                                          if fit is not None else ""))
    return "; ".join(parts)


# -- --accuracy and --profile -------------------------------------------------------------
def run_accuracy(args: argparse.Namespace) -> int:
    spec = dict(workload="nnlib-adam", epochs=ACCURACY_EPOCHS, batch_size=args.batch_size,
                random_data=args.random_data, train_rows=args.train_rows, test_rows=None,
                metrics=not args.no_metrics, floor_samples=2, predict_samples=3)
    t0 = time.perf_counter()
    C.progress(f"nnlib-adam, {ACCURACY_EPOCHS} epochs ...")
    res = C.run_worker(__file__, spec, args.quiet_wait, args.busy_retries)
    if "error" in res:
        print(f"FAILED: {res['error']}")
        return 1
    acc = res["test_accuracy"]
    passed = acc >= ACCURACY_TARGET
    if res["data"] != "fashion-mnist":
        print(f"NOTE: data is {res['data']}: the accuracy target does not apply.")
    print(f"Adam lr 1e-3, batch {args.batch_size}, {ACCURACY_EPOCHS} epochs (tol=None) on {res['data']}: "
          f"test accuracy {acc:.4f} -> {'PASS' if passed else 'FAIL'} (target >= {ACCURACY_TARGET}); "
          f"final train loss {res['final_train_loss']:.4f}; median epoch {res['epoch_median_s']:.3f} s "
          f"({res['ratio_median']:.2f}× floor); total {time.perf_counter() - t0:.0f} s")
    out_path = Path(args.out) if args.out else C.RESULTS_DIR / "bench_fit_accuracy.json"
    C.write_json(out_path, {"benchmark": "bench_fit --accuracy", "target": ACCURACY_TARGET, "passed": passed,
                            "machine": C.machine_info(), "run": res})
    print(f"JSON written to {out_path}")
    return 0 if passed else 1


def run_profile(args: argparse.Namespace) -> int:
    """cProfile of nnlib epochs 2..N in this process, top entries by own time."""
    import cProfile
    import pstats

    x, y, _, _, source, _ = load_data(args.random_data, QUICK_ROWS[0] if args.quick else args.train_rows, None)
    model = _nnlib_model(args.profile, not args.no_metrics)
    model.fit(x, y, epochs=1, batch_size=args.batch_size, tol=None, verbose=0)  # warm-up: buffers and state
    epochs = max(1, (2 if args.quick else args.epochs) - 1)
    prof = cProfile.Profile()
    prof.enable()
    model.fit(x, y, epochs=epochs, batch_size=args.batch_size, tol=None, verbose=0)
    prof.disable()
    print(f"cProfile of {epochs} nnlib-{args.profile} epoch(s) on {source} ({len(x)} rows), "
          "after one warm-up epoch (profiling adds overhead per Python call):")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(args.profile_top)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="See the module docstring (or benchmarks/README.md) for what is measured.")
    p.add_argument("--epochs", type=int, default=6, help="epochs per workload; figures use epochs 2..N (default 6)")
    p.add_argument("--repeats", type=int, default=1, help="interleaved rounds; medians over rounds (default 1)")
    p.add_argument("--workloads", type=lambda s: tuple(s.split(",")), default=WORKLOADS,
                   help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--train-rows", type=int, default=None, help="use only the first N training rows")
    p.add_argument("--floor-samples", type=int, default=6, help="GEMM floor samples per worker (default 6)")
    p.add_argument("--predict-samples", type=int, default=7, help="timed predict calls per worker (default 7)")
    p.add_argument("--random-data", action="store_true", help="random data of Fashion-MNIST's shape")
    p.add_argument("--no-metrics", action="store_true",
                   help="compile nnlib without metrics=['accuracy'] (skips the per-batch training accuracy)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: 2 epochs on {QUICK_ROWS[0]} train / {QUICK_ROWS[1]} test rows")
    p.add_argument("--accuracy", action="store_true",
                   help=f"{ACCURACY_EPOCHS} Adam epochs; pass if test accuracy >= {ACCURACY_TARGET} (exit 1 if not)")
    p.add_argument("--profile", choices=("adam", "momentum"), help="cProfile nnlib epochs in this process")
    p.add_argument("--profile-top", type=int, default=15, help="entries shown by --profile")
    p.add_argument("--out", help="JSON output path (default benchmarks/results/bench_fit*.json)")
    C.add_runner_options(p)
    return C.check_runner_args(p, p.parse_args(argv), WORKLOADS,
                               ("epochs", "repeats", "batch_size", "floor_samples", "predict_samples"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        C.emit(worker(json.loads(args.worker)))
        return 0
    if args.profile:
        return run_profile(args)
    if args.accuracy:
        return run_accuracy(args)
    return run_benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
