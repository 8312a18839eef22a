"""Shared helpers for the benchmark scripts: GEMM floors, worker processes, memory, output.

The *GEMM floor* of a workload is the time its matrix products take alone: the same
products at the same shapes, run back to back with ``np.matmul(..., out=)`` into
preallocated float32 arrays, with nothing else in between. For one training step of a
dense network that is, per layer ``l`` with input ``a`` (N, D_in) and output gradient
``g`` (N, D_out)::

    forward      a @ W_l            every layer
    weight grad  a^T @ g            every layer
    input grad   g @ W_l^T          every layer but the first (nobody needs dL/dx there)

Bias, activation, loss and optimizer work are not in the floor: they are what a
framework adds around the products, and the ratio ``epoch time / floor`` measures it.

Each workload runs in its own process (``spawn_worker``): the scripts call themselves
with ``--worker '<json spec>'``, and the worker prints exactly one JSON line as the last
line of its standard output. A worker times its own floor, so each ratio compares two
figures taken in the same process, close together in time, on a shared and noisy machine.

Memory is read in the worker: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the peak
resident set since the process started) and, on Linux, ``VmHWM`` from
``/proc/self/status``, which can be reset (``/proc/self/clear_refs``) to measure the peak
of one phase such as ``fit``. MB here means MiB (2**20 bytes).
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MB = 2**20
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# -- shapes and work ------------------------------------------------------------------
def layer_dims(input_dim: int, hidden: Sequence[int], n_classes: int) -> list[tuple[int, int]]:
    """``[(D_in, D_out), ...]`` of each Dense layer of an MLP."""
    widths = [input_dim, *hidden, n_classes]
    return list(zip(widths[:-1], widths[1:]))


def epoch_batch_sizes(n_rows: int, batch_size: int) -> list[int]:
    """Batch sizes of one epoch: full batches, then the last smaller one (kept, as in fit)."""
    full, rest = divmod(n_rows, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


def training_flops(dims: Sequence[tuple[int, int]], batch_sizes: Iterable[int]) -> int:
    """Floating-point operations (2 per multiply-add) of the products of one epoch."""
    per_row = sum(2 * din * dout * (3 if i else 2) for i, (din, dout) in enumerate(dims))
    return per_row * sum(batch_sizes)


def forward_flops(dims: Sequence[tuple[int, int]], n_rows: int) -> int:
    return n_rows * sum(2 * din * dout for din, dout in dims)


# -- GEMM floors ----------------------------------------------------------------------
class TrainingFloor:
    """The products of one training epoch, preallocated once, timed with :meth:`sample`.

    Parameters
    ----------
    dims : list of (D_in, D_out)
    batch_sizes : list of int
        The epoch's batch sizes, in order (see :func:`epoch_batch_sizes`).
    dtype : dtype, default float32
    """

    def __init__(self, dims: Sequence[tuple[int, int]], batch_sizes: Sequence[int], dtype: Any = np.float32,
                 seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.dims = list(dims)
        self.batch_sizes = list(batch_sizes)
        self.flops = training_flops(self.dims, self.batch_sizes)

        def randn(*shape: int) -> np.ndarray:  # normal values: no denormals, no zeros
            return rng.standard_normal(shape, dtype=np.float32).astype(dtype)

        self.weights = [randn(din, dout) * (1 / math.sqrt(din)) for din, dout in self.dims]
        self.weight_grads = [np.empty((din, dout), dtype) for din, dout in self.dims]
        # Per distinct batch size: activations a_0..a_L, output grads g_1..g_L, input grads.
        self.buffers = {}
        for n in sorted(set(self.batch_sizes)):
            acts = [randn(n, self.dims[0][0])] + [np.empty((n, dout), dtype) for _, dout in self.dims]
            grads = [randn(n, dout) for _, dout in self.dims]
            input_grads = [None] + [np.empty((n, din), dtype) for din, _ in self.dims[1:]]
            self.buffers[n] = (acts, grads, input_grads)

    def run_epoch(self) -> None:
        weights, weight_grads = self.weights, self.weight_grads
        for n in self.batch_sizes:
            acts, grads, input_grads = self.buffers[n]
            for i, w in enumerate(weights):  # forward: a_{i+1} = a_i W_i
                np.matmul(acts[i], w, out=acts[i + 1])
            for i in range(len(weights) - 1, -1, -1):  # backward: dW = a^T g; dx = g W^T
                np.matmul(acts[i].T, grads[i], out=weight_grads[i])
                if i:
                    np.matmul(grads[i], weights[i].T, out=input_grads[i])

    def sample(self, count: int) -> list[float]:
        """Seconds of ``count`` epochs of products, each timed alone (after one warm-up)."""
        if count <= 0:
            return []
        self.run_epoch()  # warm-up: page faults, BLAS thread start
        times = []
        for _ in range(count):
            t0 = time.perf_counter()
            self.run_epoch()
            times.append(time.perf_counter() - t0)
        return times


class ForwardFloor:
    """The forward products of a prediction over ``n_rows`` rows, in one product per layer."""

    def __init__(self, dims: Sequence[tuple[int, int]], n_rows: int, dtype: Any = np.float32, seed: int = 0,
                 x: np.ndarray | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.dims = list(dims)
        self.flops = forward_flops(self.dims, n_rows)
        first = np.ascontiguousarray(x, dtype) if x is not None else \
            rng.standard_normal((n_rows, self.dims[0][0]), dtype=np.float32).astype(dtype)
        self.weights = [(rng.standard_normal((din, dout), dtype=np.float32) / math.sqrt(din)).astype(dtype)
                        for din, dout in self.dims]
        self.acts = [first] + [np.empty((n_rows, dout), dtype) for _, dout in self.dims]

    def run(self) -> None:
        for i, w in enumerate(self.weights):
            np.matmul(self.acts[i], w, out=self.acts[i + 1])

    def sample(self, count: int) -> list[float]:
        self.run()
        times = []
        for _ in range(count):
            t0 = time.perf_counter()
            self.run()
            times.append(time.perf_counter() - t0)
        return times


def time_calls(fn, count: int, warmup: int = 1) -> list[float]:
    """Seconds of ``count`` calls of ``fn()``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def summarize(times: Sequence[float]) -> dict[str, Any]:
    """``{"min", "median", "all"}`` of a list of seconds."""
    return {"min": min(times), "median": statistics.median(times), "all": list(times)}


def epoch_timer():
    """An ``nnlib.callbacks.Callback`` that records each epoch's wall time in ``.times``.

    Created by a function so that importing this module does not import nnlib.
    """
    import nnlib as nn

    class EpochTimer(nn.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []
            self._t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._t0)

    return EpochTimer()


# -- memory ---------------------------------------------------------------------------
def ru_maxrss_mb() -> float:
    """Peak resident set of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    """Current resident set (Linux only, else None)."""
    return _status_mb("VmRSS")


def hwm_mb() -> float | None:
    """Peak resident set of this address space since start or the last reset (Linux only)."""
    return _status_mb("VmHWM")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); True on success.

    This also lowers later ``ru_maxrss`` readings, so read that first if the peak
    so far matters.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# -- processes ------------------------------------------------------------------------
def spawn_worker(script: str | Path, spec: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """Run ``python script --worker '<spec as JSON>'``; return the JSON of its last stdout line.

    On a crash or a missing result, returns ``{"error": ...}`` with the tail of stderr
    instead of raising, so one broken workload does not lose the others.
    """
    cmd = [sys.executable, str(script), "--worker", json.dumps(spec)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"worker timed out after {timeout:.0f} s", "spec": spec}
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines or not lines[-1].lstrip().startswith("{"):
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        return {"error": f"worker exited with code {proc.returncode}:\n{tail}", "spec": spec}
    result = json.loads(lines[-1])
    result["worker_wall_s"] = wall
    return result


def emit(result: dict[str, Any]) -> None:
    """Print a worker's result as its one JSON line (the last line of stdout)."""
    sys.stdout.flush()
    print(json.dumps(result, default=_json_default), flush=True)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    return path


def progress(message: str) -> None:
    """A progress line on stderr (stdout stays for the results)."""
    print(message, file=sys.stderr, flush=True)


# -- machine --------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """numpy version, BLAS, CPU count and model, load average: what the figures depend on."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/cpuinfo") as fh:
            models = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        if models:
            info["cpu_model"] = models[0]
    except OSError:
        pass
    info["blas"] = _blas_info()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    if hasattr(os, "getloadavg"):
        info["loadavg_at_start"] = [round(v, 2) for v in os.getloadavg()]
    return info


def _blas_info() -> str:
    try:  # threadpoolctl (a scikit-learn dependency) sees the BLAS actually loaded
        import threadpoolctl

        pools = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            p = pools[0]
            return (f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')}, "
                    f"{p.get('num_threads')} threads, {p.get('threading_layer')})")
    except Exception:  # noqa: BLE001 - any failure here just means "ask numpy instead"
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001
        return "unknown"


def machine_line(info: dict[str, Any]) -> str:
    cpus = info.get("cpus_usable", info.get("cpu_count"))
    load = info.get("loadavg_at_start")
    return (f"Machine: {info.get('cpu_model', platform.machine())}, {cpus} CPUs usable; "
            f"Python {info['python']}, NumPy {info['numpy']}, BLAS {info['blas']}"
            + (f"; load average at start {load[0]:.2f}" if load else ""))


# -- tables ---------------------------------------------------------------------------
def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table with right-aligned columns after the first."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    def line(cells):
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    sep = "|" + "|".join(("-" * (w + 2)) if i == 0 else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def median_of(results: Sequence[dict[str, Any]], key: str) -> float | None:
    """Median over rounds of a figure (None where a round lacks it)."""
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None
