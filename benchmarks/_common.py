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

import argparse
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


def machine_probe(n: int = 235_146, reps: int = 300) -> dict[str, float]:
    """How fast this machine is right now, on small fixed pieces of an epoch's work.

    ``gemm_gflops``: the training products of 100 batches of 128 rows through the
    reference network 784-256-128-10 (best of 3); ``gemm_1thread_gflops`` the same with
    one BLAS thread (needs threadpoolctl, else None). ``elementwise_us``: fastest of ``reps``
    runs of 4 float32 ufunc passes over ``n`` elements (the reference network's parameter
    count: about one optimizer step). ``copy_gbs``: read+write bandwidth of a 64 MB copy.
    ``python_us``: 1000 calls of a small Python function (interpreter speed).

    On a shared host, spells of tens of seconds happen when one of the two CPUs is
    slowed from outside (invisible in /proc/stat): 2-thread GEMMs drop by a third
    (179 -> 136 GFLOP/s here) while 1-thread GEMMs and elementwise work do not move, and
    an nnlib epoch, whose many small products wait on the slow thread, takes up to twice
    as long. The workers run this before and after their workload, and the scripts re-run a
    worker whose ``gemm_gflops`` fell well below the best of the run (:func:`rerun_slow`).
    """
    gemm = TrainingFloor(layer_dims(784, (256, 128), 10), [128] * 100)
    gemm_gflops = gemm.flops / min(gemm.sample(3)) / 1e9
    gemm_1thread = None
    try:  # the same with one BLAS thread: the ratio shows whether both CPUs are really there
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            gemm_1thread = gemm.flops / min(gemm.sample(2)) / 1e9
    except ImportError:
        pass
    del gemm
    rng = np.random.default_rng(0)
    a = rng.random(n, dtype=np.float32) + np.float32(0.5)
    b, c = a.copy(), a.copy()

    def passes() -> None:
        np.multiply(a, 0.9, out=b)
        np.add(b, a, out=b)
        np.sqrt(b, out=c)
        np.divide(a, c, out=c)

    elementwise = min(time_calls(passes, reps, warmup=20))
    big = np.ones(16 * 2**20, np.float32)
    dst = np.empty_like(big)
    copy = min(time_calls(lambda: np.copyto(dst, big), 8, warmup=2))

    def calls() -> None:
        f = _tiny_function
        for i in range(1000):
            f(i)

    python = min(time_calls(calls, 50, warmup=5))
    return {"gemm_gflops": gemm_gflops, "gemm_1thread_gflops": gemm_1thread, "elementwise_us": elementwise * 1e6,
            "copy_gbs": 2 * 64 * MB / copy / 1e9, "python_us": python * 1e6}


def _tiny_function(i: int) -> int:
    return i + 1


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
def spawn_worker(script: str | Path, spec: dict[str, Any], timeout: float = 1800,
                 quiet_wait: float = 0.0) -> dict[str, Any]:
    """Run ``python script --worker '<spec as JSON>'``; return the JSON of its last stdout line.

    With ``quiet_wait`` > 0, first wait up to that many seconds for the other processes
    on the machine to go quiet (:func:`wait_for_quiet`).

    On a crash or a missing result, returns ``{"error": ...}`` with the tail of stderr
    instead of raising, so one broken workload does not lose the others.
    """
    cmd = [sys.executable, str(script), "--worker", json.dumps(spec)]
    waited = wait_for_quiet(quiet_wait) if quiet_wait > 0 else 0.0
    if waited > 1.5:
        progress(f"  (waited {waited:.0f} s for other processes to go quiet)")
    monitor = CpuMonitor()
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
    result["spec"] = spec
    result["worker_wall_s"] = wall
    result["other_cpus"] = monitor.other_cpus()
    result["waited_for_quiet_s"] = waited
    return result


def run_worker(script: str | Path, spec: dict[str, Any], quiet_wait: float = 0.0, busy_retries: int = 0,
               timeout: float = 1800) -> dict[str, Any]:
    """:func:`spawn_worker`, run again (up to ``busy_retries`` times) when other processes
    kept more than ``BUSY_CPUS`` CPUs busy during it: such a run measures the competition.

    The discarded runs' figures stay in the result under ``"discarded_busy_runs"``.
    """
    discarded = []
    while True:
        result = spawn_worker(script, spec, timeout=timeout, quiet_wait=quiet_wait)
        others = result.get("other_cpus")
        if "error" in result or others is None or others <= BUSY_CPUS or len(discarded) >= busy_retries:
            break
        progress(f"  other processes kept {others:.2f} CPUs busy during this run: running it again")
        discarded.append({k: result.get(k) for k in ("other_cpus", "epoch_times", "floor_s", "waited_for_quiet_s")})
    if discarded:
        result["discarded_busy_runs"] = discarded
    return result


SLOW_FACTOR = 1.12  # a worker whose probe GEMM speed is below best / SLOW_FACTOR ran in a slow spell


def probe_gflops(result: dict[str, Any]) -> float | None:
    """The slower of a worker's before/after probe GEMM speeds (None if absent)."""
    values = [result[k]["gemm_gflops"] for k in ("probe_before", "probe_after") if result.get(k)]
    return min(values) if values else None


PARALLEL_MIN = 0.8  # n BLAS threads slower than 0.8 * n times one thread: a CPU is slowed from outside


def _parallel_threads() -> int:
    return max(1, min(os.cpu_count() or 1, _blas_threads() or 1))


def reading_slow(reading: dict[str, Any], best: float, threads: int) -> bool:
    """Whether one machine-probe reading shows a slow spell: GEMMs well below the run's
    best, or several BLAS threads hardly faster than one."""
    if reading["gemm_gflops"] < best / SLOW_FACTOR:
        return True
    one = reading.get("gemm_1thread_gflops")
    return bool(threads > 1 and one and reading["gemm_gflops"] / one < PARALLEL_MIN * threads)


def worker_slow(result: dict[str, Any], best: float, threads: int) -> bool:
    return any(reading_slow(result[k], best, threads) for k in ("probe_before", "probe_after") if result.get(k))


def gemm_probe_in_subprocess() -> dict[str, Any] | None:
    """:func:`machine_probe`'s GEMM figures, in a fresh process so that this process's
    BLAS threads stay asleep."""
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]); import _common as C; "
            "p = C.machine_probe(reps=1); print(json.dumps(p))")
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent)],
                              capture_output=True, text=True, timeout=120)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def wait_for_fast(best: float, threads: int, max_wait: float, pause: float = 5.0) -> float:
    """Wait until a probe no longer shows a slow spell (:func:`reading_slow`); give up after
    ``max_wait`` seconds. Returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_wait:
        reading = gemm_probe_in_subprocess()
        if reading is None or not reading_slow(reading, best, threads):
            break
        time.sleep(pause)
    return time.perf_counter() - t0


def rerun_slow(script: str | Path, runs: dict[Any, list[dict[str, Any]]], quiet_wait: float, retries: int,
               timeout: float = 1800, slow_wait: float = 180.0) -> int:
    """Re-run, in place, workers that ran while the host was in a slow spell.

    A worker is slow when one of its probe readings (:func:`machine_probe`, before and
    after the workload) has GEMMs below the fastest reading of the run divided by
    ``SLOW_FACTOR``, or its BLAS threads together hardly faster than one (below
    ``PARALLEL_MIN`` times their number). Before a re-run it waits, up to ``slow_wait``
    seconds, for the spell to end (:func:`wait_for_fast`); it re-runs up to ``retries``
    times and keeps the run with the faster probe GEMMs: the choice depends only on the
    probe, never on the figures measured. Discarded runs stay under
    ``"discarded_slow_runs"``. Returns the number of re-runs.
    """
    speeds = [r[k]["gemm_gflops"] for rs in runs.values() for r in rs if "error" not in r
              for k in ("probe_before", "probe_after") if r.get(k)]
    if not speeds or retries <= 0:
        return 0
    best, count, threads = max(speeds), 0, _parallel_threads()  # best: what the machine can do
    for key, rs in runs.items():
        for i, res in enumerate(rs):
            for _ in range(retries):
                if "error" in res or not worker_slow(res, best, threads):
                    break
                speed = probe_gflops(res) or 0.0
                progress(f"re-running {key}: its probe GEMMs ran at {speed:.0f} GFLOP/s "
                         f"(the run's best {best:.0f}): a slow spell of the host")
                waited = wait_for_fast(best, threads, slow_wait)
                if waited > 1:
                    progress(f"  waited {waited:.0f} s for the spell to end")
                new = run_worker(script, res["spec"], quiet_wait, busy_retries=1, timeout=timeout)
                count += 1
                new_speed = probe_gflops(new) if "error" not in new else None
                keep, drop = (new, res) if new_speed is not None and new_speed > speed else (res, new)
                slim = {k: drop.get(k) for k in ("probe_before", "probe_after", "epoch_times", "floor_s", "other_cpus")}
                keep.setdefault("discarded_slow_runs", []).extend([*drop.get("discarded_slow_runs", []), slim])
                res = rs[i] = keep
                progress(f"  kept the {'new' if keep is new else 'first'} run "
                         f"(probe GEMMs {probe_gflops(keep) or 0:.0f} GFLOP/s)")
                if new_speed is not None:
                    best = max(best, new.get("probe_before", {}).get("gemm_gflops", 0),
                               new.get("probe_after", {}).get("gemm_gflops", 0))
    return count


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
    info["code"] = _code_version()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    return info


BUSY_CPUS = 0.25  # other processes' average CPU use above which figures are likely disturbed


class CpuMonitor:
    """How many CPUs *other* processes kept busy since creation (Linux; else None).

    Reads all CPUs' busy time (/proc/stat, steal included) and subtracts this
    process's and its finished children's CPU time: what is left is the competition
    our BLAS threads met. A worker's own 2-thread BLAS makes the load average useless
    for this, which is why it is not used.
    """

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as fh:
                fields = [int(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
        busy = (total - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
        own = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                  for f in ("ru_utime", "ru_stime"))
        return time.perf_counter(), busy, own

    def other_cpus(self) -> float | None:
        end = self._read()
        if self.start is None or end is None or end[0] <= self.start[0]:
            return None
        wall = end[0] - self.start[0]
        return max(0.0, ((end[1] - self.start[1]) - (end[2] - self.start[2])) / wall)


def wait_for_quiet(max_wait: float, threshold: float = 0.15, probe: float = 1.0) -> float:
    """Wait until other processes use under ``threshold`` CPUs over ``probe`` seconds.

    Returns the seconds waited; gives up (and returns) after ``max_wait`` seconds. On a
    shared machine other jobs come in bursts, and a worker started in a burst measures
    the burst.
    """
    t0 = time.perf_counter()
    while True:
        monitor = CpuMonitor()
        time.sleep(probe)
        others = monitor.other_cpus()
        waited = time.perf_counter() - t0
        if others is None or others < threshold or waited >= max_wait:
            return waited


def probe_text(result: dict[str, Any]) -> str:
    """Before/after figures of :func:`machine_probe`, for progress lines."""
    b, a = result.get("probe_before"), result.get("probe_after")
    if not b or not a:
        return ""
    return (f"probe GEMM {b['gemm_gflops']:.0f}/{a['gemm_gflops']:.0f} GFLOP/s, "
            f"elementwise {b['elementwise_us']:.0f}/{a['elementwise_us']:.0f} us, "
            f"copy {b['copy_gbs']:.0f}/{a['copy_gbs']:.0f} GB/s, python {b['python_us']:.0f}/{a['python_us']:.0f} us")


def probe_line(results: Sequence[dict[str, Any]]) -> str:
    """The memory probe over all workers, for the report."""
    ew = [r[k]["elementwise_us"] for r in results for k in ("probe_before", "probe_after") if r.get(k)]
    cp = [r[k]["copy_gbs"] for r in results for k in ("probe_before", "probe_after") if r.get(k)]
    py = [r[k]["python_us"] for r in results for k in ("probe_before", "probe_after") if r.get(k)]
    gf = [r[k]["gemm_gflops"] for r in results for k in ("probe_before", "probe_after") if r.get(k)]
    sp = [r[k]["gemm_gflops"] / r[k]["gemm_1thread_gflops"] for r in results for k in ("probe_before", "probe_after")
          if r.get(k) and r[k].get("gemm_1thread_gflops")]
    if not ew:
        return ""
    return (f"Machine probe (before and after each worker, see machine_probe in _common.py): reference GEMMs "
            f"{statistics.median(gf):.0f} GFLOP/s (range {min(gf):.0f}-{max(gf):.0f}"
            + (f"; {statistics.median(sp):.2f}× one BLAS thread, range {min(sp):.2f}-{max(sp):.2f}" if sp else "")
            + "), 4 elementwise passes over "
            f"235k floats {statistics.median(ew):.0f} us (range {min(ew):.0f}-{max(ew):.0f}), "
            f"64 MB copy {statistics.median(cp):.0f} GB/s (range {min(cp):.0f}-{max(cp):.0f}), "
            f"1000 Python calls {statistics.median(py):.0f} us (range {min(py):.0f}-{max(py):.0f}).")


def busy_note(results: Sequence[dict[str, Any]]) -> str:
    """Lines for the report when other processes competed for the CPUs or the host was slow, else ''."""
    notes = []
    seen = [r["other_cpus"] for r in results if r.get("other_cpus") is not None]
    if seen and max(seen) > BUSY_CPUS:
        notes.append(f"NOTE: other processes kept {statistics.median(seen):.2f} CPUs busy on average per worker "
                     f"(max {max(seen):.2f}) of {os.cpu_count()}: with a 2-thread BLAS this slows the products "
                     "most; treat the ratios with care and rerun on a quiet machine.")
    readings = [r[k] for r in results for k in ("probe_before", "probe_after") if r.get(k)]
    if readings:
        best = max(p["gemm_gflops"] for p in readings)
        threads = _parallel_threads()
        slow = [r for r in results if worker_slow(r, best, threads)]
        speedups = [p["gemm_gflops"] / p["gemm_1thread_gflops"] for p in readings if p.get("gemm_1thread_gflops")]
        if slow:
            notes.append(f"NOTE: {len(slow)} of {len(results)} worker(s) ran in a slow spell of the host (see the "
                         "machine probe line), even after any re-runs; their ratios are pessimistic, "
                         "nnlib's most (its many small products wait on the slowed BLAS thread).")
        if threads > 1 and speedups and statistics.median(speedups) < PARALLEL_MIN * threads:
            notes.append(f"NOTE: {threads} BLAS threads were only {statistics.median(speedups):.2f}× as fast as one "
                         "(median of the probes): the host was slow during most of this run; rerun later.")
    return "\n".join(notes)


def _blas_threads() -> int | None:
    try:
        import threadpoolctl

        pools = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
        return pools[0]["num_threads"] if pools else None
    except Exception:  # noqa: BLE001
        return None


def _code_version() -> dict[str, Any]:
    """nnlib's version and, in a git checkout, the commit and whether nnlib/ has local changes."""
    out: dict[str, Any] = {}
    repo = Path(__file__).resolve().parent.parent
    try:
        import nnlib

        out["nnlib"] = getattr(nnlib, "__version__", "?")
        out["nnlib_path"] = str(Path(nnlib.__file__).resolve().parent)
        if Path(out["nnlib_path"]) != repo / "nnlib":  # e.g. PYTHONPATH points at another copy
            return out
    except ImportError:
        pass
    try:
        out["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                                       text=True, timeout=10).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain", "--", "nnlib"], cwd=repo, capture_output=True,
                                text=True, timeout=10).stdout
        out["nnlib_dirty"] = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


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
    code = info.get("code", {})
    commit = code.get("commit")
    where = (f"; nnlib at {commit}{' + local changes' if code.get('nnlib_dirty') else ''}" if commit
             else f"; nnlib from {code['nnlib_path']}" if code.get("nnlib_path") else "")
    return (f"Machine: {info.get('cpu_model', platform.machine())}, {cpus} CPUs usable; "
            f"Python {info['python']}, NumPy {info['numpy']}, BLAS {info['blas']}" + where)


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

def add_runner_options(p: argparse.ArgumentParser) -> None:
    """The options every benchmark shares: waiting for a quiet machine, re-runs, worker mode."""
    p.add_argument("--quiet-wait", type=float, default=None,
                   help="before each worker, wait up to this many seconds for other processes to go quiet "
                        "(0: don't; default 60, 0 with --quick)")
    p.add_argument("--busy-retries", type=int, default=None,
                   help="run a worker again, up to this many times, when other processes kept more than "
                        f"{BUSY_CPUS} CPUs busy during it, or when its machine probe shows a slow spell of the "
                        f"host (GEMMs slower than the run's best / {SLOW_FACTOR}) (default 1, 0 with --quick)")
    p.add_argument("--slow-wait", type=float, default=180.0,
                   help="before re-running a worker caught in a slow spell, wait up to this many seconds "
                        "for the spell to end (default 180)")
    p.add_argument("--worker", help=argparse.SUPPRESS)


def check_runner_args(p: argparse.ArgumentParser, args: argparse.Namespace, workloads: Sequence[str],
                      counts: Sequence[str], measures_speed: bool = True) -> argparse.Namespace:
    """Fill the runner options' defaults and check what every benchmark checks: known workloads, counts >= 1.

    ``--quiet-wait`` and ``--busy-retries`` default to 60 s and 1 re-run, and to none for ``--quick`` or
    a run that measures no speed (a busy machine only makes it slower)."""
    waits = measures_speed and not args.quick
    if args.quiet_wait is None:
        args.quiet_wait = 60.0 if waits else 0.0
    if args.busy_retries is None:
        args.busy_retries = 1 if waits else 0
    bad = [w for w in args.workloads if w not in workloads]
    if bad:
        p.error(f"unknown workload(s) {', '.join(bad)}; choose from {', '.join(workloads)}")
    for name in counts:
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args
