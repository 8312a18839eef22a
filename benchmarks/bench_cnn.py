"""Training speed of two small CNNs: nnlib against the GEMM floor of their im2col products.

What is measured
----------------
Two convolutional networks trained on Fashion-MNIST images (60000 training images,
28x28x1 NHWC float32; random data of the same shape, with a printed note, when the data
is not installed), Adam(lr=1e-3), softmax cross-entropy, batch 128, seed 0:

* ``keras-convnet``  Conv2D(32, 3, relu) - MaxPooling2D(2) - Conv2D(64, 3, relu) -
  MaxPooling2D(2) - Flatten - Dropout(0.5) - Dense(10)   (the Keras MNIST convnet)
* ``reference-cnn``  Conv2D(32, 3, same, relu) - MaxPooling2D(2) - Conv2D(64, 3, same, relu) -
  MaxPooling2D(2) - Flatten - Dense(128, relu) - Dense(10)

For each, in its own worker process: the wall time of every epoch (figures use epochs
2..N: epoch 1 allocates buffers and optimizer state), test accuracy on the 10000 test
images, the time of ``predict`` on them (median of several calls), and the peak resident
memory of the process, also less the bytes of the loaded dataset.

The GEMM floor is the matrix products of the im2col formulation alone, timed with
``np.matmul(..., out=)`` on preallocated float32 arrays, one product per layer and batch
at the epoch's batch sizes (468 of 128 and one of 96). A convolution with kernel KH x KW,
C_in input and C_out output channels and an OH x OW output is, for a batch of N,

    forward      (N*OH*OW, KH*KW*C_in) @ (KH*KW*C_in, C_out)     every conv layer
    weight grad  (KH*KW*C_in, N*OH*OW) @ (N*OH*OW, C_out)        every conv layer
    input grad   (N*OH*OW, C_out) @ (C_out, KH*KW*C_in)          every conv layer but the first

and a Dense layer is the same with OH*OW = 1 (as in ``bench_fit.py``). Building the patch
matrix (im2col), scattering its gradient back (col2im), bias, activations, pooling,
dropout, loss and optimizer are not in the floor: they are what the framework adds, and
``epoch / floor`` measures it. Every worker times its own floor, half of the samples before
training and half after. The headline ratio is the fastest epoch over the fastest floor
sample (the ratio of the medians is printed beside it); ``predict × floor`` is the fastest
predict call over the fastest run of the forward products alone over the test images, in
predict's chunks (``nnlib.training.inference_chunk``: 193 and 167 images for these networks).

How
---
    python benchmarks/bench_cnn.py                          # the table; JSON to results/bench_cnn.json
    python benchmarks/bench_cnn.py --repeats 3              # three interleaved rounds
    python benchmarks/bench_cnn.py --quick                  # smoke test, seconds
    python benchmarks/bench_cnn.py --accuracy               # reference CNN, 10 epochs, pass if test acc >= 0.91
    python benchmarks/bench_cnn.py --profile reference-cnn --train-rows 5000   # cProfile of an epoch
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

IMAGE_SHAPE = (28, 28, 1)
N_CLASSES = 10
ACCURACY_WORKLOAD = "reference-cnn"
ACCURACY_EPOCHS = 10
ACCURACY_TARGET = 0.91
QUICK_ROWS = (512, 256)  # train, test images in --quick mode
FLOOR_WARMUP_BATCHES = 20  # untimed batches before each set of floor samples (page faults, BLAS threads)

# Each layer: (kind, options). Both the nnlib model and the floor's product shapes are built from these.
ARCHITECTURES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "keras-convnet": [
        ("conv", dict(filters=32, kernel=3, padding="valid", activation="relu")),
        ("maxpool", dict(pool=2)),
        ("conv", dict(filters=64, kernel=3, padding="valid", activation="relu")),
        ("maxpool", dict(pool=2)),
        ("flatten", {}),
        ("dropout", dict(rate=0.5)),
        ("dense", dict(units=N_CLASSES, activation=None)),
    ],
    "reference-cnn": [
        ("conv", dict(filters=32, kernel=3, padding="same", activation="relu")),
        ("maxpool", dict(pool=2)),
        ("conv", dict(filters=64, kernel=3, padding="same", activation="relu")),
        ("maxpool", dict(pool=2)),
        ("flatten", {}),
        ("dense", dict(units=128, activation="relu")),
        ("dense", dict(units=N_CLASSES, activation=None)),
    ],
}
WORKLOADS = tuple(ARCHITECTURES)
# What the issue quotes for one epoch of 60000 images (TFLOP); the printed count is checked against it.
QUOTED_TFLOP = {"keras-convnet": 0.86, "reference-cnn": 1.50}


def describe(workload: str) -> str:
    parts = []
    for kind, o in ARCHITECTURES[workload]:
        if kind == "conv":
            parts.append(f"Conv{o['filters']}x{o['kernel']}" + ("s" if o["padding"] == "same" else ""))
        elif kind == "maxpool":
            parts.append(f"Pool{o['pool']}")
        elif kind == "dropout":
            parts.append(f"Drop{o['rate']}")
        elif kind == "dense":
            parts.append(f"Dense{o['units']}")
    return "-".join(parts)


# -- the products ----------------------------------------------------------------------
def gemm_layers(workload: str, input_shape: tuple[int, int, int] = IMAGE_SHAPE) -> list[dict[str, Any]]:
    """The product shapes of each layer with weights, per sample.

    ``rows``: patch-matrix rows per sample (OH*OW for a conv, 1 for a Dense layer); ``k``:
    its columns (KH*KW*C_in, or D_in); ``f``: output channels or units; ``dx``: whether the
    input gradient is computed (every layer with weights but the first).
    """
    h, w, c = input_shape
    flat = None
    out = []
    for kind, o in ARCHITECTURES[workload]:
        if kind == "conv":
            kk = o["kernel"]
            if o["padding"] == "valid":
                h, w = h - kk + 1, w - kk + 1
            out.append(dict(name=f"conv{kk}x{kk}/{o['filters']} ({h}x{w} out)", rows=h * w, k=kk * kk * c,
                            f=o["filters"], dx=bool(out)))
            c = o["filters"]
        elif kind == "maxpool":
            h, w = h // o["pool"], w // o["pool"]
        elif kind == "flatten":
            flat = h * w * c
        elif kind == "dense":
            d_in = flat if flat is not None else c
            out.append(dict(name=f"dense {d_in}->{o['units']}", rows=1, k=d_in, f=o["units"], dx=bool(out)))
            flat = o["units"]
    return out


def layer_flops(layer: dict[str, Any], training: bool) -> int:
    """Floating-point operations (2 per multiply-add) of one sample through one layer's products."""
    one = 2 * layer["rows"] * layer["k"] * layer["f"]
    return one * ((3 if layer["dx"] else 2) if training else 1)


def chunk_sizes(n: int, size: int) -> list[int]:
    return C.epoch_batch_sizes(n, size)


class GemmFloor:
    """The products of one epoch (``training=True``) or one prediction pass (forward only).

    Buffers are preallocated once for the largest batch; a smaller batch uses the leading
    rows of each (still C-contiguous), so both sizes run on the same memory.
    """

    def __init__(self, layers: list[dict[str, Any]], batch_sizes: list[int], training: bool = True,
                 seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.layers, self.batch_sizes, self.training = layers, list(batch_sizes), training
        self.flops = sum(self.batch_sizes) * sum(layer_flops(lay, training) for lay in layers)
        n_max = max(self.batch_sizes)

        def randn(*shape: int) -> np.ndarray:  # normal values: no denormals, no zeros
            return rng.standard_normal(shape, dtype=np.float32)

        self.bufs = []
        for lay in layers:
            m, k, f = n_max * lay["rows"], lay["k"], lay["f"]
            b = dict(rows=lay["rows"], a=randn(m, k), w=randn(k, f) * np.float32(1 / math.sqrt(k)),
                     y=np.empty((m, f), np.float32))
            if training:
                b.update(g=randn(m, f), dw=np.empty((k, f), np.float32),
                         da=np.empty((m, k), np.float32) if lay["dx"] else None)
            self.bufs.append(b)

    def run(self, batch_sizes: list[int] | None = None) -> None:
        bufs = self.bufs
        for n in self.batch_sizes if batch_sizes is None else batch_sizes:
            for b in bufs:  # forward: y = a W
                m = n * b["rows"]
                np.matmul(b["a"][:m], b["w"], out=b["y"][:m])
            if not self.training:
                continue
            for b in reversed(bufs):  # backward: dW = a^T g; da = g W^T
                m = n * b["rows"]
                np.matmul(b["a"][:m].T, b["g"][:m], out=b["dw"])
                if b["da"] is not None:
                    np.matmul(b["g"][:m], b["w"].T, out=b["da"][:m])

    def sample(self, count: int, warmup_batches: int | None = FLOOR_WARMUP_BATCHES) -> list[float]:
        """Seconds of ``count`` full passes, each timed alone, after an untimed warm-up."""
        if count <= 0:
            return []
        self.run(self.batch_sizes[:warmup_batches] if warmup_batches else None)
        return C.time_calls(self.run, count, warmup=0)


# -- data -----------------------------------------------------------------------------
def load_data(random_data: bool, train_rows: int | None, test_rows: int | None, seed: int = 0):
    """Fashion-MNIST as NHWC images, or random data of the same shape.

    Returns (x, y, x_test, y_test, source, loaded_mb); ``loaded_mb`` counts the arrays as
    loaded, before any subset is taken (subsets are copies, so the full arrays are freed).
    """
    source = "fashion-mnist"
    if not random_data:
        from nnlib.datasets import load_fashion_mnist

        try:
            (x, y), (xt, yt) = load_fashion_mnist(flatten=False)
        except FileNotFoundError:
            random_data, source = True, "random (Fashion-MNIST not found)"
    if random_data:
        source = "random" if source == "fashion-mnist" else source
        rng = np.random.default_rng(seed)
        x = rng.random((60000, *IMAGE_SHAPE[:2]), dtype=np.float32)
        xt = rng.random((10000, *IMAGE_SHAPE[:2]), dtype=np.float32)
        y = rng.integers(0, N_CLASSES, 60000, dtype=np.int64)
        yt = rng.integers(0, N_CLASSES, 10000, dtype=np.int64)
    loaded_mb = (x.nbytes + y.nbytes + xt.nbytes + yt.nbytes) / C.MB
    if train_rows:
        x, y = x[:train_rows].copy(), y[:train_rows].copy()
    if test_rows:
        xt, yt = xt[:test_rows].copy(), yt[:test_rows].copy()
    return x[..., None], y, xt[..., None], yt, source, loaded_mb  # views: the channel axis costs no bytes


# -- the workloads, each run inside a worker --------------------------------------------
def build_model(workload: str, metrics: bool = True):
    import nnlib as nn

    layers = []
    for kind, o in ARCHITECTURES[workload]:
        first = {} if layers else {"input_shape": IMAGE_SHAPE}
        if kind == "conv":
            layers.append(nn.Conv2D(o["filters"], o["kernel"], padding=o["padding"], activation=o["activation"],
                                    **first))
        elif kind == "maxpool":
            layers.append(nn.MaxPooling2D(o["pool"]))
        elif kind == "flatten":
            layers.append(nn.Flatten())
        elif kind == "dropout":
            layers.append(nn.Dropout(o["rate"]))
        elif kind == "dense":
            layers.append(nn.Dense(o["units"], activation=o["activation"]))
    model = nn.Sequential(layers, seed=0)
    model.compile(nn.optimizers.Adam(lr=1e-3), "softmax_cross_entropy", ["accuracy"] if metrics else None)
    return model


def _accuracy(model, xt, yt) -> float:
    return float(np.mean(np.argmax(model.predict(xt), axis=1) == yt))


def _test_accuracy_callback(xt, yt):
    """A callback recording test accuracy after each epoch (for --accuracy; list it after the timer)."""
    import nnlib as nn

    class TestAccuracy(nn.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.values: list[float] = []

        def on_epoch_end(self, epoch, logs=None):
            self.values.append(_accuracy(self.model, xt, yt))
            C.progress(f"  epoch {epoch + 1}: test accuracy {self.values[-1]:.4f}")

    return TestAccuracy()


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One workload in this process: floor, training, accuracy, predict, memory."""
    workload = spec["workload"]
    import nnlib  # noqa: F401 - imported before the baseline reading

    out: dict[str, Any] = {"workload": workload, "spec": spec, "rss_after_imports_mb": C.rss_mb()}
    t0 = time.perf_counter()
    x, y, xt, yt, source, loaded_mb = load_data(spec["random_data"], spec.get("train_rows"), spec.get("test_rows"))
    out.update(data=source, load_s=time.perf_counter() - t0, train_rows=len(x), test_rows=len(xt))
    data_mb = (x.nbytes + y.nbytes + xt.nbytes + yt.nbytes) / C.MB  # what training and evaluation use
    out.update(data_mb=data_mb, loaded_data_mb=loaded_mb, rss_after_load_mb=C.rss_mb())

    # Memory, step 1: the peak so far (imports, loading) before the benchmark's own arrays.
    load_peak = C.ru_maxrss_mb()
    layers = gemm_layers(workload)
    batches = C.epoch_batch_sizes(len(x), spec["batch_size"])
    from nnlib.training import inference_chunk  # the images per forward pass in predict

    predict_chunk = inference_chunk(build_model(workload, False))
    out["predict_chunk"] = predict_chunk
    chunks = chunk_sizes(len(xt), predict_chunk)
    out["probe_before"] = C.machine_probe()
    n_floor = spec["floor_samples"]
    floor = GemmFloor(layers, batches)
    floor_times = floor.sample((n_floor + 1) // 2)
    del floor  # freed: not part of the training's memory

    # Step 2: reset the high-water mark, so it covers only fit, evaluation and predict.
    reset_ok = C.reset_peak_rss()
    model = build_model(workload, spec["metrics"])
    timer = C.epoch_timer()
    callbacks = [timer]
    if spec.get("per_epoch_accuracy"):
        callbacks.append(_test_accuracy_callback(xt, yt))
    history = model.fit(x, y, epochs=spec["epochs"], batch_size=spec["batch_size"], tol=None, verbose=0,
                        callbacks=callbacks)
    fit_peak = C.hwm_mb() if reset_ok else None
    epoch_times = timer.times
    if spec.get("per_epoch_accuracy"):
        out["epoch_test_accuracy"] = callbacks[1].values

    out["test_accuracy"] = _accuracy(model, xt, yt)
    out["final_train_loss"] = float(history.history["loss"][-1])
    predict_times = C.time_calls(functools.partial(model.predict, xt), spec["predict_samples"])
    # Step 3: the library's work ends here, before the benchmark allocates more floors.
    peak_rss = max(load_peak, C.hwm_mb() if reset_ok else C.ru_maxrss_mb())
    del model, history, callbacks, timer  # frees the model's buffers before the floors

    floor = GemmFloor(layers, batches)
    floor_times += floor.sample(n_floor // 2)
    del floor
    pfloor = GemmFloor(layers, chunks, training=False)
    predict_floor_times = pfloor.sample(spec["predict_samples"], warmup_batches=None)
    del pfloor
    out["probe_after"] = C.machine_probe()

    timed = epoch_times[1:] or epoch_times  # epochs 2..N
    fl = C.summarize(floor_times)
    train_flops = sum(batches) * sum(layer_flops(lay, True) for lay in layers)
    predict_flops = sum(chunks) * sum(layer_flops(lay, False) for lay in layers)
    out.update(
        epoch_times=epoch_times,
        epoch_median_s=statistics.median(timed),
        epoch_min_s=min(timed),
        floor_s=fl,
        floor_flops=train_flops,
        floor_flops_60k=60000 * sum(layer_flops(lay, True) for lay in layers),
        floor_gflops=train_flops / fl["min"] / 1e9,
        floor_layers=layers,
        ratio_min=min(timed) / fl["min"],
        ratio_median=statistics.median(timed) / fl["median"],
        predict_s=C.summarize(predict_times),
        predict_floor_s=C.summarize(predict_floor_times),
        predict_floor_flops=predict_flops,
        predict_ratio=min(predict_times) / min(predict_floor_times),
        predict_ratio_median=statistics.median(predict_times) / statistics.median(predict_floor_times),
        peak_rss_mb=peak_rss,
        fit_peak_rss_mb=fit_peak,
        n_batches=len(batches),
        n_predict_chunks=len(chunks),
    )
    out["peak_over_data_mb"] = out["peak_rss_mb"] - loaded_mb
    out["fit_peak_over_data_mb"] = None if fit_peak is None else fit_peak - data_mb
    return out


# -- the parent: spawn, collect, print --------------------------------------------------
def lscpu_summary() -> str:
    """CPU model, caches and the SIMD flags that matter to BLAS kernels, from ``lscpu``."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    fields = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    flags = set(fields.get("Flags", "").split())
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                        "avx512_bf16", "amx_tile") if f in flags]
    parts = [fields.get("Model name", "?")]
    for key in ("Thread(s) per core", "L1d cache", "L2 cache", "L3 cache", "Hypervisor vendor"):
        if key in fields:
            parts.append(f"{key} {fields[key]}")
    return "lscpu: " + "; ".join(parts) + (f"; SIMD flags {' '.join(simd)}" if simd else "")


def run_benchmark(args: argparse.Namespace) -> int:
    workloads = args.workloads
    epochs = 2 if args.quick else args.epochs
    train_rows, test_rows = QUICK_ROWS if args.quick else (args.train_rows, args.test_rows)
    spec_base = dict(epochs=epochs, batch_size=args.batch_size, random_data=args.random_data,
                     train_rows=train_rows, test_rows=test_rows, metrics=not args.no_metrics,
                     floor_samples=2 if args.quick else args.floor_samples,
                     predict_samples=2 if args.quick else args.predict_samples)
    info = C.machine_info()
    t_start = time.perf_counter()
    results: dict[str, list[dict[str, Any]]] = {w: [] for w in workloads}
    for round_ in range(args.repeats):
        for w in workloads:  # round-robin: noise spreads over all workloads alike
            C.progress(f"[round {round_ + 1}/{args.repeats}] {w} ...")
            res = C.run_worker(__file__, {**spec_base, "workload": w}, args.quiet_wait, args.busy_retries,
                               timeout=args.timeout)
            if "error" in res:
                C.progress(f"  {w} FAILED: {res['error']}")
            else:
                C.progress(f"  {w}: epochs {' '.join(f'{t:.2f}' for t in res['epoch_times'])} s, "
                           f"floor {' '.join(f'{t:.2f}' for t in res['floor_s']['all'])} s, "
                           f"acc {res['test_accuracy']:.4f}, "
                           f"other processes' CPUs {C.fmt(res['other_cpus'], 2)}; {C.probe_text(res)}")
            results[w].append(res)
    C.rerun_slow(__file__, results, args.quiet_wait, args.busy_retries, timeout=args.timeout,
                 slow_wait=args.slow_wait)
    total = time.perf_counter() - t_start

    ok = {w: [r for r in rs if "error" not in r] for w, rs in results.items()}
    summary = {w: _summarize_workload(rs) for w, rs in ok.items() if rs}
    cpu = lscpu_summary()
    print(_report(summary, ok, info, epochs, args, total, cpu))
    out_path = Path(args.out) if args.out else C.RESULTS_DIR / ("bench_cnn_quick.json" if args.quick else
                                                               "bench_cnn.json")
    C.write_json(out_path, {"benchmark": "bench_cnn", "argv": sys.argv[1:], "settings": spec_base,
                            "repeats": args.repeats, "machine": {**info, "lscpu": cpu}, "total_wall_s": total,
                            "summary": summary, "runs": results})
    print(f"\nJSON written to {out_path}")
    return 1 if any("error" in r for rs in results.values() for r in rs) else 0


def _summarize_workload(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("epoch_median_s", "epoch_min_s", "ratio_min", "ratio_median", "test_accuracy", "predict_ratio",
            "predict_ratio_median", "peak_rss_mb", "peak_over_data_mb", "fit_peak_over_data_mb", "floor_gflops")
    s = {k: C.median_of(runs, k) for k in keys}
    s["predict_median_s"] = statistics.median(r["predict_s"]["median"] for r in runs)
    s["predict_min_s"] = statistics.median(r["predict_s"]["min"] for r in runs)
    s["floor_min_s"] = statistics.median(r["floor_s"]["min"] for r in runs)
    s["floor_median_s"] = statistics.median(r["floor_s"]["median"] for r in runs)
    s["predict_floor_min_s"] = statistics.median(r["predict_floor_s"]["min"] for r in runs)
    s["floor_tflop"] = runs[0]["floor_flops"] / 1e12
    s["floor_tflop_60k"] = runs[0]["floor_flops_60k"] / 1e12
    s["predict_floor_gflop"] = runs[0]["predict_floor_flops"] / 1e9
    s["rounds"] = len(runs)
    return s


def _report(summary, runs, info, epochs, args, total, cpu) -> str:
    first = next((rs[0] for rs in runs.values() if rs), None)
    if first is None:
        return "All workloads failed; see the messages above."
    lines = []
    if first["data"] != "fashion-mnist":
        lines.append(f"NOTE: data is {first['data']}: timings are valid, accuracies are chance level.\n")
    lines.append(f"bench_cnn: Adam 1e-3, softmax CE, batch {args.batch_size}, float32 NHWC, {first['data']} "
                 f"({first['train_rows']} train / {first['test_rows']} test images), {epochs} epochs "
                 f"(figures from epochs 2..{epochs}), median over {args.repeats} round(s)\n")
    head = ["workload", "median epoch s", "min epoch s", "floor min s", "× floor (min/min)", "× floor (median)",
            "test acc", (f"predict {first['test_rows'] // 1000}k s" if first["test_rows"] >= 1000
                                 else f"predict {first['test_rows']} s"), "predict × floor", "peak MB over data",
            "fit peak MB over data"]
    rows = []
    for w, s in summary.items():
        rows.append([w, C.fmt(s["epoch_median_s"]), C.fmt(s["epoch_min_s"]), C.fmt(s["floor_min_s"]),
                     C.fmt(s["ratio_min"], 2), C.fmt(s["ratio_median"], 2), C.fmt(s["test_accuracy"], 4),
                     C.fmt(s["predict_median_s"], 3), C.fmt(s["predict_ratio"], 2),
                     C.fmt(s["peak_over_data_mb"], 0), C.fmt(s["fit_peak_over_data_mb"], 0)])
    lines.append(C.markdown_table(head, rows))
    lines.append("\nTargets: × floor (min/min) <= 1.6, predict × floor <= 1.3, peak <= 300 MB over the data.")
    for w, s in summary.items():
        rs = runs[w]
        layers = rs[0]["floor_layers"]
        quoted = QUOTED_TFLOP.get(w)
        check = ""
        if quoted is not None:
            rel = s["floor_tflop_60k"] / quoted - 1
            check = (f" (the issue quotes {quoted:.2f}: agrees)" if abs(rel) < 0.01 else
                     f" (the issue quotes {quoted:.2f}: differs by {100 * rel:+.1f}%)")
        lines.append(
            f"{w} [{describe(w)}]: floor {s['floor_tflop']:.3f} TFLOP per epoch of {rs[0]['n_batches']} batches"
            + (f"; {s['floor_tflop_60k']:.3f} TFLOP per 60000 images" if rs[0]["train_rows"] != 60000 else "")
            + f"{check}; fastest {s['floor_min_s']:.3f} s ({s['floor_gflops']:.0f} GFLOP/s), "
            f"median {s['floor_median_s']:.3f} s; products per batch: "
            + ", ".join(f"{lay['name']} ({lay['rows']}x{lay['k']})@({lay['k']}x{lay['f']})"
                        f"{' x3' if lay['dx'] else ' x2'}" for lay in layers)
            + f". Predict floor ({rs[0]['n_predict_chunks']} chunks of <= {rs[0]['predict_chunk']}, "
            f"{s['predict_floor_gflop']:.1f} GFLOP): {s['predict_floor_min_s'] * 1e3:.0f} ms; "
            f"predict fastest {s['predict_min_s'] * 1e3:.0f} ms, median/median × floor "
            f"{C.fmt(s['predict_ratio_median'], 2)}.")
    lines.append(f"Data: {first['loaded_data_mb']:.0f} MB loaded"
                 + (f", {first['data_mb']:.0f} MB used" if abs(first["data_mb"] - first["loaded_data_mb"]) > 0.5
                    else "") + "; peak RSS " + "; ".join(f"{w} {s['peak_rss_mb']:.0f} MB" for w, s in summary.items())
                 + " (fit peak: from VmHWM reset just before fit, over the data used).")
    lines.append(C.probe_line([r for rs in runs.values() for r in rs]))
    lines.append(C.machine_line(info) + f". Total wall time {total:.0f} s.")
    if cpu:
        lines.append(cpu)
    note = C.busy_note([r for rs in runs.values() for r in rs if "error" not in r])
    if note:
        lines.append(note)
    return "\n".join(lines)


# -- --accuracy and --profile -------------------------------------------------------------
def run_accuracy(args: argparse.Namespace) -> int:
    spec = dict(workload=ACCURACY_WORKLOAD, epochs=ACCURACY_EPOCHS, batch_size=args.batch_size,
                random_data=args.random_data, train_rows=args.train_rows, test_rows=args.test_rows,
                metrics=not args.no_metrics, floor_samples=2, predict_samples=3, per_epoch_accuracy=True)
    t0 = time.perf_counter()
    C.progress(f"{ACCURACY_WORKLOAD}, {ACCURACY_EPOCHS} epochs ...")
    res = C.run_worker(__file__, spec, args.quiet_wait, args.busy_retries, timeout=max(args.timeout, 3600))
    if "error" in res:
        print(f"FAILED: {res['error']}")
        return 1
    if res["data"] != "fashion-mnist":
        print(f"NOTE: data is {res['data']}: the accuracy target does not apply.")
    for i, (acc, t) in enumerate(zip(res["epoch_test_accuracy"], res["epoch_times"]), 1):
        print(f"epoch {i:2d}: test accuracy {acc:.4f}  ({t:.1f} s)")
    acc = res["test_accuracy"]
    passed = acc >= ACCURACY_TARGET
    print(f"{ACCURACY_WORKLOAD} [{describe(ACCURACY_WORKLOAD)}], Adam lr 1e-3, batch {args.batch_size}, "
          f"{ACCURACY_EPOCHS} epochs (tol=None) on {res['data']}: test accuracy {acc:.4f} -> "
          f"{'PASS' if passed else 'FAIL'} (target >= {ACCURACY_TARGET}); final train loss "
          f"{res['final_train_loss']:.4f}; median epoch {res['epoch_median_s']:.2f} s "
          f"({res['ratio_median']:.2f}× floor); total {time.perf_counter() - t0:.0f} s")
    out_path = Path(args.out) if args.out else C.RESULTS_DIR / "bench_cnn_accuracy.json"
    C.write_json(out_path, {"benchmark": "bench_cnn --accuracy", "target": ACCURACY_TARGET, "passed": passed,
                            "machine": C.machine_info(), "run": res})
    print(f"JSON written to {out_path}")
    return 0 if passed else 1


def _profile_breakdown(stats, model) -> list[tuple[str, float, int]]:
    """Cumulative seconds of each layer class's forward/backward, the loss, the optimizer
    step, the whole train step, the batch gather and the per-batch metrics.

    cProfile names functions by file, line and name only, so methods are matched to their
    class by the line where they are defined.
    """
    import inspect

    from nnlib import data, training

    named = [(type(layer), ("forward", "backward")) for layer in model.layers]
    named += [(type(model.loss), ("forward", "backward")), (type(model.optimizer), ("step",)),
              (type(model), ("train_step",)), (data.BatchIterator, ("gather",))]
    wanted: dict[tuple[str, int, str], str] = {}
    for obj, methods in named:
        for meth in methods:
            fn = getattr(obj, meth, None)
            if inspect.isfunction(fn):
                code = fn.__code__
                wanted[(code.co_filename, code.co_firstlineno, code.co_name)] = f"{obj.__name__}.{meth}"
    code = training.batch_figures.__code__
    wanted[(code.co_filename, code.co_firstlineno, code.co_name)] = "training.batch_figures (metrics)"
    out = []
    for key, (_, ncalls, _, cumtime, _) in stats.stats.items():
        if key in wanted:
            out.append((wanted[key], cumtime, ncalls))
    return sorted(out, key=lambda t: -t[1])


def run_profile(args: argparse.Namespace) -> int:
    """cProfile of epochs 2..N of one workload in this process, top entries by own time."""
    import cProfile
    import pstats

    train_rows = QUICK_ROWS[0] if args.quick else args.train_rows
    x, y, _, _, source, _ = load_data(args.random_data, train_rows, 1)
    model = build_model(args.profile, not args.no_metrics)
    t0 = time.perf_counter()
    model.fit(x, y, epochs=1, batch_size=args.batch_size, tol=None, verbose=0)  # warm-up: buffers and state
    warm = time.perf_counter() - t0
    epochs = max(1, args.profile_epochs)
    t0 = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=args.batch_size, tol=None, verbose=0)
    plain = (time.perf_counter() - t0) / epochs
    prof = cProfile.Profile()
    prof.enable()
    model.fit(x, y, epochs=epochs, batch_size=args.batch_size, tol=None, verbose=0)
    prof.disable()
    stats = pstats.Stats(prof, stream=sys.stdout)
    print(f"cProfile of {epochs} {args.profile} epoch(s) [{describe(args.profile)}] on {source} ({len(x)} images, "
          f"batch {args.batch_size}), after one warm-up epoch ({warm:.2f} s); unprofiled epoch {plain:.2f} s, "
          f"profiled {stats.total_tt / epochs:.2f} s (profiling adds overhead per Python call).")
    floor = GemmFloor(gemm_layers(args.profile), C.epoch_batch_sizes(len(x), args.batch_size))
    floor_s = min(floor.sample(2))
    del floor
    print(f"GEMM floor of one such epoch {floor_s:.3f} s (unprofiled epoch {plain / floor_s:.2f}× floor).\n")
    print("Cumulative time per layer method (includes the functions they call):")
    for name, cum, calls in _profile_breakdown(stats, model):
        print(f"  {name:32s} {cum / epochs:8.3f} s per epoch  {100 * cum / stats.total_tt:5.1f}%  ({calls} calls)")
    print()
    stats.sort_stats("tottime").print_stats(args.profile_top)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="See the module docstring (or benchmarks/README.md) for what is measured.")
    p.add_argument("--epochs", type=int, default=3, help="epochs per workload; figures use epochs 2..N (default 3)")
    p.add_argument("--repeats", type=int, default=1, help="interleaved rounds; medians over rounds (default 1)")
    p.add_argument("--workloads", type=lambda s: tuple(s.split(",")), default=WORKLOADS,
                   help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--train-rows", type=int, default=None, help="use only the first N training images")
    p.add_argument("--test-rows", type=int, default=None, help="use only the first N test images")
    p.add_argument("--floor-samples", type=int, default=4, help="GEMM floor samples per worker (default 4)")
    p.add_argument("--predict-samples", type=int, default=5, help="timed predict calls per worker (default 5)")
    p.add_argument("--random-data", action="store_true", help="random data of Fashion-MNIST's shape")
    p.add_argument("--no-metrics", action="store_true",
                   help="compile without metrics=['accuracy'] (skips the per-batch training accuracy)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: 2 epochs on {QUICK_ROWS[0]} train / {QUICK_ROWS[1]} test images")
    p.add_argument("--accuracy", action="store_true",
                   help=f"{ACCURACY_WORKLOAD}, {ACCURACY_EPOCHS} epochs, test accuracy after each; pass if the "
                        f"final one >= {ACCURACY_TARGET} (exit 1 if not)")
    p.add_argument("--profile", choices=WORKLOADS, help="cProfile one workload's epochs in this process")
    p.add_argument("--profile-epochs", type=int, default=1, help="epochs profiled by --profile (default 1)")
    p.add_argument("--profile-top", type=int, default=15, help="entries shown by --profile")
    p.add_argument("--timeout", type=float, default=1800, help="seconds before a worker is abandoned")
    p.add_argument("--out", help="JSON output path (default benchmarks/results/bench_cnn*.json)")
    C.add_runner_options(p)
    args = p.parse_args(argv)
    counts = ("epochs", "repeats", "batch_size", "floor_samples", "predict_samples", "profile_epochs")
    # --accuracy measures no speed: it neither waits for a quiet machine nor re-runs
    return C.check_runner_args(p, args, WORKLOADS, counts, measures_speed=not args.accuracy)


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
