"""How nnlib's epoch time grows with the work: ratio to the GEMM floor against width and batch.

What is measured
----------------
nnlib trains an MLP 784-w-(w/2)-10 (ReLU, softmax cross-entropy, ``Adam(lr=1e-3)``,
float32, ``metrics=["accuracy"]`` as in ``bench_fit.py``) on random data: by default 20000
rows of 784 uniform [0, 1) features and 10 random classes (the timing of dense layers does
not depend on the values, and a subset of Fashion-MNIST's 60000 rows keeps the run short).
The second hidden layer is half the first, so width 256 is the reference network
784-256-128-10 of ``bench_fit.py``. Two sweeps:

* hidden width w in 64, 128, 256, 512, 1024, 2048 at batch 128;
* batch size in 32, 64, 128, 256, 512, 1024 at width 256.

For each point: epoch wall time (median and min of epochs 2..N, default N=3) and the ratio
to that point's own GEMM floor (the epoch's products alone, ``_common.TrainingFloor``:
3 forward, 3 weight-gradient and 2 input-gradient products per batch), timed in the same
worker process. ``overhead/step`` is (median epoch - median floor) / steps: the time per
batch spent outside the products (Python, elementwise work, the optimizer), which is what
makes the ratio grow when products get small (narrow layers, small batches).

How
---
Each point runs in its own process (this script with ``--worker``); the points of the
two sweeps are interleaved, for ``--repeats`` rounds (medians over rounds).

    python benchmarks/bench_scaling.py            # ~1-2 minutes; JSON to results/bench_scaling.json
    python benchmarks/bench_scaling.py --quick    # smoke test, seconds
    python benchmarks/bench_scaling.py --rows 60000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

INPUT_DIM = 784
N_CLASSES = 10
WIDTHS = (64, 128, 256, 512, 1024, 2048)
BATCHES = (32, 64, 128, 256, 512, 1024)
REF_WIDTH, REF_BATCH = 256, 128


def hidden_for(width: int) -> tuple[int, int]:
    return (width, max(1, width // 2))


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One (width, batch) point: floor samples, then a fit, then more floor samples."""
    import nnlib as nn

    width, batch, rows, epochs = spec["width"], spec["batch_size"], spec["rows"], spec["epochs"]
    rng = np.random.default_rng(0)
    x = rng.random((rows, INPUT_DIM), dtype=np.float32)
    y = rng.integers(0, N_CLASSES, rows, dtype=np.int64)

    hidden = hidden_for(width)
    dims = C.layer_dims(INPUT_DIM, hidden, N_CLASSES)
    batches = C.epoch_batch_sizes(rows, batch)
    probe_before = C.machine_probe()
    floor = C.TrainingFloor(dims, batches)
    n_floor = spec["floor_samples"]
    floor_times = floor.sample((n_floor + 1) // 2)

    model = nn.Sequential([nn.Dense(hidden[0]), nn.ReLU(), nn.Dense(hidden[1]), nn.ReLU(), nn.Dense(N_CLASSES)],
                          seed=0)
    model.compile(optimizer=nn.Adam(lr=1e-3), loss="softmax_cross_entropy",
                  metrics=["accuracy"] if spec["metrics"] else None)
    timer = C.epoch_timer()
    model.fit(x, y, epochs=epochs, batch_size=batch, tol=None, verbose=0, callbacks=[timer])

    floor_times += floor.sample(n_floor // 2)
    timed = timer.times[1:] or timer.times
    fl = C.summarize(floor_times)
    flops = C.training_flops(dims, batches)
    return {
        "sweep": spec["sweep"], "width": width, "hidden": hidden, "batch_size": batch, "rows": rows,
        "steps": len(batches), "params": model.count_params(),
        "epoch_times": timer.times, "epoch_median_s": statistics.median(timed), "epoch_min_s": min(timed),
        "floor_s": fl, "floor_flops": flops, "floor_gflops": flops / fl["min"] / 1e9,
        "ratio_min": min(timed) / fl["min"], "ratio_median": statistics.median(timed) / fl["median"],
        "overhead_per_step_ms": (statistics.median(timed) - fl["median"]) / len(batches) * 1e3,
        "probe_before": probe_before, "probe_after": C.machine_probe(),
    }


def points(widths, batch_sizes) -> list[dict[str, Any]]:
    """The two sweeps' points, interleaved (w64, b32, w128, b64, ...)."""
    w_points = [{"sweep": "width", "width": w, "batch_size": REF_BATCH} for w in widths]
    b_points = [{"sweep": "batch", "width": REF_WIDTH, "batch_size": b} for b in batch_sizes]
    return [p for pair in zip_longest(w_points, b_points) for p in pair if p is not None]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="See the module docstring (or benchmarks/README.md) for what is measured.")
    p.add_argument("--rows", type=int, default=20000, help="random training rows (default 20000)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per point; figures use epochs 2..N (default 3)")
    p.add_argument("--repeats", type=int, default=1, help="interleaved rounds; medians over rounds (default 1)")
    p.add_argument("--floor-samples", type=int, default=3, help="GEMM floor samples per point (default 3)")
    p.add_argument("--widths", type=lambda s: tuple(int(v) for v in s.split(",") if v.strip()), default=WIDTHS,
                   help="comma-separated hidden widths (default %(default)s)")
    p.add_argument("--batches", type=lambda s: tuple(int(v) for v in s.split(",") if v.strip()), default=BATCHES,
                   help="comma-separated batch sizes (default %(default)s)")
    p.add_argument("--no-metrics", action="store_true",
                   help="compile without metrics=['accuracy'] (skips the per-batch training accuracy)")
    p.add_argument("--quick", action="store_true", help="smoke test: 2048 rows, 2 epochs, 2 floor samples")
    p.add_argument("--out", help="JSON output path (default benchmarks/results/bench_scaling[_quick].json)")
    C.add_runner_options(p)
    args = p.parse_args(argv)
    if args.worker:
        C.emit(worker(json.loads(args.worker)))
        return 0
    for name in ("rows", "epochs", "repeats", "floor_samples"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.quick:
        args.rows, args.epochs, args.floor_samples = 2048, 2, 2
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.quick else 60.0
    if args.busy_retries is None:
        args.busy_retries = 0 if args.quick else 1

    base = {"rows": args.rows, "epochs": args.epochs, "floor_samples": args.floor_samples,
            "metrics": not args.no_metrics}
    info = C.machine_info()
    todo = points(args.widths, args.batches)
    t0 = time.perf_counter()
    runs: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for round_ in range(args.repeats):
        for pt in todo:
            C.progress(f"[round {round_ + 1}/{args.repeats}] {pt['sweep']} sweep: width {pt['width']}, "
                       f"batch {pt['batch_size']} ...")
            res = C.run_worker(__file__, {**base, **pt}, args.quiet_wait, args.busy_retries)
            if "error" in res:
                C.progress(f"  FAILED: {res['error']}")
            else:
                C.progress(f"  epochs {' '.join(f'{t:.3f}' for t in res['epoch_times'])} s, "
                           f"floor min {res['floor_s']['min']:.3f} s -> {res['ratio_min']:.2f}× floor; "
                           f"other processes' CPUs {C.fmt(res['other_cpus'], 2)}; {C.probe_text(res)}")
            runs.setdefault((pt["sweep"], pt["width"], pt["batch_size"]), []).append(res)
    C.rerun_slow(__file__, runs, args.quiet_wait, args.busy_retries, slow_wait=args.slow_wait)
    total = time.perf_counter() - t0

    summary = []
    for (sweep, width, batch), rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            summary.append({"sweep": sweep, "width": width, "batch_size": batch, "failed": True})
            continue
        s = {"sweep": sweep, "width": width, "hidden": ok[0]["hidden"], "batch_size": batch,
             "steps": ok[0]["steps"], "rounds": len(ok)}
        for key in ("epoch_median_s", "epoch_min_s", "ratio_min", "ratio_median", "floor_gflops",
                    "overhead_per_step_ms"):
            s[key] = C.median_of(ok, key)
        s["floor_min_s"] = statistics.median(r["floor_s"]["min"] for r in ok)
        summary.append(s)

    print(f"bench_scaling: nnlib Adam, MLP 784-w-(w/2)-10 ReLU, float32, random data {args.rows}x{INPUT_DIM} "
          f"(timings do not depend on the values), {args.epochs} epochs (figures from epochs 2..{args.epochs}), "
          f"median over {args.repeats} round(s)\n")
    head = ["sweep", "hidden", "batch", "steps", "floor s (min)", "floor GFLOP/s", "median epoch s",
            "× floor (min/min)", "× floor (median)", "overhead/step ms"]
    for sweep in ("width", "batch"):
        rows = []
        for s in sorted((s for s in summary if s["sweep"] == sweep), key=lambda s: (s["width"], s["batch_size"])):
            if s.get("failed"):
                rows.append([sweep, s["width"], s["batch_size"], "failed", "", "", "", "", "", ""])
                continue
            rows.append([sweep, "-".join(map(str, s["hidden"])), s["batch_size"], s["steps"], C.fmt(s["floor_min_s"]),
                         C.fmt(s["floor_gflops"], 0), C.fmt(s["epoch_median_s"]), C.fmt(s["ratio_min"], 2),
                         C.fmt(s["ratio_median"], 2), C.fmt(s["overhead_per_step_ms"], 2)])
        if rows:
            print(C.markdown_table(head, rows) + "\n")
    print(C.probe_line([r for rs in runs.values() for r in rs if "error" not in r]))
    print(C.machine_line(info) + f". Total wall time {total:.0f} s.")
    note = C.busy_note([r for rs in runs.values() for r in rs if "error" not in r])
    if note:
        print(note)
    out = Path(args.out) if args.out else C.RESULTS_DIR / ("bench_scaling_quick.json" if args.quick
                                                           else "bench_scaling.json")
    C.write_json(out, {"benchmark": "bench_scaling", "argv": sys.argv[1:], "settings": base,
                       "network": "784-w-(w/2)-10, ReLU, Adam lr 1e-3", "repeats": args.repeats,
                       "machine": info, "total_wall_s": total, "summary": summary,
                       "runs": [r for rs in runs.values() for r in rs]})
    print(f"\nJSON written to {out}")
    return 1 if any(s.get("failed") for s in summary) else 0


if __name__ == "__main__":
    sys.exit(main())
