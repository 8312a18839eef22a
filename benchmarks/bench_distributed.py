"""Data-parallel training: one process with 2 threads against 2 MPI processes with 1 thread each,
the time of one Allreduce of the gradient buffer, and a projection to N machines.

What is measured
----------------
On this machine, for the reference MLP (784-256-128-10, Adam, batch 128) and the reference CNN
(bench_cnn.py's, Adam, batch 128) on Fashion-MNIST rows (float32):

* ``1x2``: one process, ``fit`` as usual, OpenBLAS and nnlib on 2 threads;
* ``2x1``: ``mpiexec -n 2``, ``fit(strategy=DataParallel())``, each process on 1 thread, each
  taking half of every batch of 128 (the same global batch, so the same training).

Each run is its own launch; the two alternate over ``--rounds``. The table shows samples/s over
epochs 2..E (epoch 1 allocates), medians over rounds, and the ratio 2x1 / 1x2. The 2x1 workers
also time ``Allreduce`` of the model's flat gradient buffer (median of 50 calls, after a barrier)
and of one float64 (the latency).

What is projected
-----------------
From those figures, ``benchmarks/README.md`` gets the speed-up on N machines, each running the
faster configuration on a per-machine batch B, if the gradient sum were a ring allreduce over a
network: ``T_comm = 2 (N-1)/N * bytes / bandwidth + 2 (N-1) * latency`` at 10 and 100 Gbit/s
(the latencies, 25 and 5 us per message, are assumptions, not measurements). nnlib sums the
gradients after the backward pass, not during it, so communication never hides behind compute:
a step takes ``t_compute + T_comm`` and the speed-up is ``N t_compute / (t_compute + T_comm)``.
The batch that keeps 90 % efficiency is the B with ``T_comm = t_compute(B) / 9``, ``t_compute``
taken as linear in B from the measured samples/s (optimistic for small B).

    python benchmarks/bench_distributed.py                   # both workloads, 3 rounds
    python benchmarks/bench_distributed.py --workloads mlp --rounds 5 --train-rows 20000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

WORKLOADS = ("mlp", "cnn")
CONFIGS = ("1x2", "2x1")  # processes x threads each
BATCH = 128
GBIT = 1e9 / 8  # bytes/s per Gbit/s
NETWORKS = {"10 Gbit/s": (10 * GBIT, 25e-6), "100 Gbit/s": (100 * GBIT, 5e-6)}  # bandwidth, assumed latency
MACHINES = (2, 4, 8, 16, 32)


def worker(spec: dict[str, Any]) -> dict[str, Any] | None:
    """One launch: train, time the epochs; under MPI also time the allreduces. Rank 0 reports."""
    import bench_cnn
    import bench_fit

    strategy = None
    if spec["processes"] > 1:
        from nnlib.distributed import DataParallel

        strategy = DataParallel()
    if spec["workload"] == "mlp":
        x, y, *_ = bench_fit.load_data(False, spec["rows"], 1)
        model = bench_fit._nnlib_model("adam", metrics=False)
    else:
        x, y, *_ = bench_cnn.load_data(False, spec["rows"], 1)
        model = bench_cnn.build_model("reference-cnn", metrics=False)
    # the machine's speed around the one-process runs (under MPI the waiting process spins on a core)
    probe_before = C.machine_probe(reps=100) if strategy is None else None
    timer = C.epoch_timer()
    model.fit(x, y, epochs=spec["epochs"], batch_size=BATCH, tol=None, verbose=0, callbacks=[timer],
              strategy=strategy)
    result = {"workload": spec["workload"], "config": spec["config"], "rows": int(x.shape[0]),
              "epoch_times": timer.times, "parameters": model.count_params(),
              "samples_per_s": x.shape[0] / float(np.median(timer.times[1:]))}
    if strategy is not None:
        from mpi4py import MPI

        comm, buffer = strategy.comm, model.gradient_buffer
        one = np.zeros(1)

        def timed(array: np.ndarray, count: int = 50) -> float:
            times = []
            for _ in range(count):
                comm.Barrier()
                t0 = time.perf_counter()
                comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
                times.append(time.perf_counter() - t0)
            return float(np.median(times))

        result.update({"allreduce_s": timed(buffer), "latency_s": timed(one), "buffer_bytes": buffer.nbytes})
        if strategy.rank != 0:
            return None
    result["machine"] = C.machine_info()
    if strategy is None:
        result["probe_before"], result["probe_after"] = probe_before, C.machine_probe(reps=100)
    return result


def launch(spec: dict[str, Any]) -> dict[str, Any]:
    threads = str(spec["threads"])
    env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "NNLIB_NUM_THREADS": threads}
    command = [sys.executable, __file__, "--worker", json.dumps(spec)]
    if spec["processes"] > 1:
        mpiexec = Path(sys.executable).with_name("mpiexec")
        command = [str(mpiexec), "-n", str(spec["processes"]), sys.executable, "-m", "mpi4py", *command[1:]]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command[:6])} ... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def projection(samples_per_s: float, buffer_bytes: int) -> tuple[list[list[str]], dict[str, float]]:
    """Speed-up on N machines of per-machine batch BATCH, and the batch keeping 90 % efficiency."""
    t_compute = BATCH / samples_per_s
    rows, batch_90 = [], {}
    for name, (bandwidth, latency) in NETWORKS.items():
        cells = []
        for n in MACHINES:
            t_comm = 2 * (n - 1) / n * buffer_bytes / bandwidth + 2 * (n - 1) * latency
            cells.append(f"{n * t_compute / (t_compute + t_comm):.1f}x")
        t_comm_8 = 2 * 7 / 8 * buffer_bytes / bandwidth + 2 * 7 * latency
        batch_90[name] = 9 * t_comm_8 * samples_per_s  # t_compute(B) = B / samples_per_s = 9 T_comm
        rows.append([name, *cells, f"{batch_90[name]:.0f}"])
    return rows, batch_90


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated: mlp,cnn")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="epochs per launch; the first is not timed")
    p.add_argument("--train-rows", type=int, default=12000)
    p.add_argument("--out", default=str(C.RESULTS_DIR / "bench_distributed.json"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        result = worker(json.loads(args.worker))
        if result is not None:
            C.emit(result)
        return 0
    workloads = args.workloads.split(",")
    if not set(workloads) <= set(WORKLOADS) or args.rounds < 1 or args.epochs < 2 or args.train_rows < 2 * BATCH:
        p.error(f"--workloads from {WORKLOADS}, --rounds >= 1, --epochs >= 2, --train-rows >= {2 * BATCH}")
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {(w, c): [] for w in workloads for c in CONFIGS}
    for r in range(args.rounds):
        for w in workloads:
            for config in (CONFIGS if r % 2 == 0 else CONFIGS[::-1]):  # alternate which goes first
                processes, threads = (int(v) for v in config.split("x"))
                C.progress(f"round {r + 1}/{args.rounds}: {w} {config} ...")
                runs[(w, config)].append(launch({"workload": w, "config": config, "processes": processes,
                                                 "threads": threads, "rows": args.train_rows,
                                                 "epochs": args.epochs}))
    table, projections, summary = [], [], {}
    for w in workloads:
        one, two = (float(np.median([x["samples_per_s"] for x in runs[(w, c)]])) for c in CONFIGS)
        ratios = [b["samples_per_s"] / a["samples_per_s"] for a, b in zip(runs[(w, "1x2")], runs[(w, "2x1")])]
        dp = runs[(w, "2x1")]
        allreduce = float(np.median([x["allreduce_s"] for x in dp]))
        latency = float(np.median([x["latency_s"] for x in dp]))
        step = BATCH / two
        buffer_bytes = dp[0]["buffer_bytes"]
        table.append([w, f"{dp[0]['parameters']:,}", f"{one:,.0f}", f"{two:,.0f}", f"{two / one:.2f}",
                      f"{min(ratios):.2f}-{max(ratios):.2f}", f"{buffer_bytes / C.MB:.2f}",
                      f"{allreduce * 1e3:.3f}", f"{latency * 1e6:.1f}", f"{100 * allreduce / step:.1f}"])
        rows, batch_90 = projection(max(one, two), buffer_bytes)
        projections.append((w, rows))
        summary[w] = {"samples_per_s_1x2": one, "samples_per_s_2x1": two, "ratio": two / one, "ratios": ratios,
                      "allreduce_s": allreduce, "latency_s": latency, "buffer_bytes": buffer_bytes,
                      "batch_for_90pct_at_8_machines": batch_90}
    print(f"\nbench_distributed: batch {BATCH}, Adam, float32, {args.train_rows} Fashion-MNIST rows, "
          f"{args.epochs} epochs a launch (epoch 1 untimed), medians of {args.rounds} rounds\n")
    print("Measured on this machine:\n")
    print(C.markdown_table(["model", "parameters", "1x2 samples/s", "2x1 samples/s", "2x1 / 1x2", "range",
                            "gradient MB", "Allreduce ms", "latency us", "Allreduce % of a 2x1 step"], table))
    for w, rows in projections:
        print(f"\nProjected, {w}: speed-up on N machines, batch {BATCH} per machine, ring allreduce, no overlap "
              "(last column: per-machine batch for 90 % efficiency on 8 machines)\n")
        print(C.markdown_table(["network", *[f"N={n}" for n in MACHINES], "batch for 90 % at N=8"], rows))
    first = next(iter(runs.values()))[0]
    print("\n" + C.machine_line(first["machine"]))
    print(C.probe_line([x for rs in runs.values() for x in rs]) + " (probed around the 1x2 runs)")
    path = C.write_json(args.out, {"summary": summary, "runs": {f"{w} {c}": v for (w, c), v in runs.items()},
                                   "networks": NETWORKS, "batch": BATCH})
    print(f"\nJSON written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
