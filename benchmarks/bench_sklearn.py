"""nnlib's drop-in estimators against scikit-learn's own MLPClassifier, same data, same settings.

What is measured
----------------
``nnlib.estimators.NeuralNetClassifier`` and ``sklearn.neural_network.MLPClassifier`` with
identical arguments (the point of the drop-in: only the class differs), on the first
``--train-rows`` Fashion-MNIST training images (default 10000, scaled to [0, 1], float32,
so both compute in float32) and scored on the 10000 test images (random data of the same
shape, with a note, when Fashion-MNIST is not installed). The network is the reference
MLP's, ``hidden_layer_sizes=(256, 128)``, ReLU, ``alpha=1e-4``, ``batch_size="auto"``
(200), ``random_state=0``. Workloads:

* ``nnlib-adam`` / ``sklearn-adam``    ``solver="adam"``, ``learning_rate_init=1e-3``,
  ``max_iter=--epochs`` with ``n_iter_no_change=np.inf``: both run exactly that many epochs;
* ``nnlib-lbfgs`` / ``sklearn-lbfgs``  ``solver="lbfgs"``, ``max_iter=--lbfgs-iter``,
  ``tol=1e-4``: each stops where L-BFGS-B stops it (iterations are reported).

For each: the wall time of ``fit`` (the ConvergenceWarning at ``max_iter`` is expected and
silenced), seconds per epoch or per L-BFGS iteration, ``n_iter_``, ``loss_``, the test
accuracy, and ``predict_proba`` on the test rows (median of 3 calls). Each workload runs in
its own process; workloads run round-robin for ``--repeats`` rounds, and the table shows
medians over rounds with the ratio of scikit-learn's time to nnlib's (above 1: nnlib is
faster). Every worker records the machine probe (``_common.machine_probe``) before and after.

    python benchmarks/bench_sklearn.py              # the table; JSON to results/bench_sklearn.json
    python benchmarks/bench_sklearn.py --repeats 3  # three interleaved rounds
    python benchmarks/bench_sklearn.py --quick      # smoke test, seconds
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
from bench_fit import load_data  # noqa: E402 - the same Fashion-MNIST rows (float32, [0, 1])

WORKLOADS = ("nnlib-adam", "sklearn-adam", "nnlib-lbfgs", "sklearn-lbfgs")
HIDDEN = (256, 128)


def estimator(workload: str, spec: dict[str, Any]) -> Any:
    library, solver = workload.split("-")
    if library == "nnlib":
        from nnlib.estimators import NeuralNetClassifier as Classifier
    else:
        from sklearn.neural_network import MLPClassifier as Classifier
    common = dict(hidden_layer_sizes=HIDDEN, activation="relu", alpha=1e-4, batch_size="auto", random_state=0)
    if solver == "adam":
        return Classifier(solver="adam", learning_rate_init=1e-3, max_iter=spec["epochs"], n_iter_no_change=np.inf,
                          **common)
    return Classifier(solver="lbfgs", max_iter=spec["lbfgs_iter"], tol=1e-4, **common)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    from sklearn.exceptions import ConvergenceWarning

    out: dict[str, Any] = {"workload": spec["workload"]}
    x, y, xt, yt, source, _ = load_data(spec["random_data"], spec["train_rows"], spec.get("test_rows"))
    out.update(data=source, train_rows=len(x), test_rows=len(xt), probe_before=C.machine_probe())
    clf = estimator(spec["workload"], spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter ends the Adam fits by design
        t0 = time.perf_counter()
        clf.fit(x, y)
        out["fit_s"] = time.perf_counter() - t0
    out.update(n_iter=int(clf.n_iter_), loss=float(clf.loss_), test_accuracy=float(clf.score(xt, yt)),
               predict_s=C.summarize(C.time_calls(lambda: clf.predict_proba(xt), 3)),
               per_iter_s=out["fit_s"] / max(int(clf.n_iter_), 1), probe_after=C.machine_probe())
    return out


def run_benchmark(args: argparse.Namespace) -> int:
    spec_base = dict(epochs=args.epochs, lbfgs_iter=args.lbfgs_iter, train_rows=args.train_rows,
                     test_rows=args.test_rows, random_data=args.random_data)
    runs: dict[str, list[dict[str, Any]]] = {w: [] for w in args.workloads}
    for r in range(args.repeats):
        for workload in args.workloads:
            C.progress(f"[round {r + 1}/{args.repeats}] {workload} ...")
            result = C.run_worker(__file__, {**spec_base, "workload": workload}, quiet_wait=args.quiet_wait,
                                  busy_retries=args.busy_retries)
            if "error" in result:
                C.progress(f"  {workload} failed: {result['error']}")
                return 1
            C.progress(f"  {workload}: fit {result['fit_s']:.2f} s, {result['n_iter']} iterations, "
                       f"accuracy {result['test_accuracy']:.4f}; {C.probe_text(result)}")
            runs[workload].append(result)
    rows, summary = [], {}
    for workload, results in runs.items():
        s = {k: statistics.median(r[k] for r in results) for k in ("fit_s", "per_iter_s", "n_iter", "loss",
                                                                   "test_accuracy")}
        s["predict_s"] = statistics.median(r["predict_s"]["median"] for r in results)
        summary[workload] = s
    for workload, s in summary.items():
        library, solver = workload.split("-")
        other = summary.get(f"{'sklearn' if library == 'nnlib' else 'nnlib'}-{solver}")
        ratio = "" if other is None or library != "nnlib" else C.fmt(other["per_iter_s"] / s["per_iter_s"], 2)
        rows.append([workload, C.fmt(s["fit_s"], 2), f"{s['per_iter_s'] * 1e3:.0f}", f"{s['n_iter']:.0f}",
                     f"{s['loss']:.4f}", f"{s['test_accuracy']:.4f}", f"{s['predict_s'] * 1e3:.0f}", ratio])
    first = next(iter(runs.values()))[0]
    print(f"\nbench_sklearn: hidden {HIDDEN}, ReLU, alpha 1e-4, batch 'auto', float32, {first['data']} "
          f"({first['train_rows']} train / {first['test_rows']} test rows); Adam {args.epochs} epochs, L-BFGS "
          f"max_iter {args.lbfgs_iter}; medians over {args.repeats} round(s)\n")
    print(C.markdown_table(["workload", "fit s", "ms per epoch / iteration", "n_iter_", "loss_", "test acc",
                            "predict_proba ms", "sklearn / nnlib (per iteration)"], rows))
    every = [r for results in runs.values() for r in results]
    print("\n" + C.probe_line(every))
    print(C.machine_line(C.machine_info()))
    note = C.busy_note(every)
    if note:
        print(note)
    path = C.write_json(args.out, {"args": vars(args), "runs": runs, "summary": summary,
                                   "machine": C.machine_info()})
    print(f"\nJSON written to {path}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", type=lambda s: s.split(","), default=list(WORKLOADS),
                   help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--epochs", type=int, default=10, help="Adam epochs (default 10)")
    p.add_argument("--lbfgs-iter", type=int, default=100, help="L-BFGS max_iter (default 100)")
    p.add_argument("--train-rows", type=int, default=10000, help="training rows (default 10000)")
    p.add_argument("--test-rows", type=int, default=None, help="test rows (default all 10000)")
    p.add_argument("--repeats", type=int, default=1, help="interleaved rounds (default 1)")
    p.add_argument("--random-data", action="store_true", help="random data of Fashion-MNIST's shape")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 epochs, 5 L-BFGS iterations, 1000 rows")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "bench_sklearn.json"))
    C.add_runner_options(p)
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.lbfgs_iter, args.train_rows, args.test_rows = 2, 5, 1000, 1000
    return C.check_runner_args(p, args, WORKLOADS, ("epochs", "lbfgs_iter", "train_rows", "repeats"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        C.emit(worker(json.loads(args.worker)))
        return 0
    return run_benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
