"""Anonymous memory of a fit on a memory-mapped uint8 file, against the same data read into memory.

What is measured
----------------
For each row count (default 60000 and 240000 rows of 784 uint8 pixels, Fashion-MNIST's shape; random
values, since only memory is measured), a uint8 ``.npy`` file is written to a temporary directory and,
in a fresh process per case, the reference MLP 784-256-128-10 (Adam, batch 128, float32) trains one
epoch and predicts every row, on

* ``memmap``:    ``np.load(path, mmap_mode="r")``, which nnlib casts one batch at a time;
* ``in-memory``: ``np.load(path)``, a uint8 array in memory, which ``fit`` casts once to float32.

A thread samples the process's anonymous resident memory (``RssAnon`` in ``/proc/self/status``: heap
and NumPy arrays, not the page cache that holds the mapped file) every 5 ms; the table shows it before
the fit (after imports and, for ``in-memory``, the load) and its peak during fit and predict, and the
growth between the two. Linux only.

    python benchmarks/bench_memmap.py
    python benchmarks/bench_memmap.py --rows 60000,480000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MODES = ("memmap", "in-memory")


def anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


class PeakSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.running = anon_mb(), True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, anon_mb())
            time.sleep(0.005)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import nnlib as nn

    path, rows = spec["path"], spec["rows"]
    x = np.load(path, mmap_mode="r") if spec["mode"] == "memmap" else np.load(path)
    y = np.arange(rows) % 10
    model = nn.Sequential([nn.Dense(256, activation="relu", input_dim=784), nn.Dense(128, activation="relu"),
                           nn.Dense(10)], seed=0)
    model.compile(nn.Adam(lr=1e-3), "softmax_cross_entropy")
    before = anon_mb()
    sampler = PeakSampler()
    sampler.start()
    t0 = time.perf_counter()
    model.fit(x, y, epochs=1, batch_size=128, tol=None, verbose=0)
    model.predict(x)
    seconds = time.perf_counter() - t0
    sampler.running = False
    sampler.join()
    return {"mode": spec["mode"], "rows": rows, "file_mb": x.nbytes / C.MB, "anon_before_mb": before,
            "anon_peak_mb": max(sampler.peak, anon_mb()), "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=lambda s: [int(v) for v in s.split(",")], default=[60000, 240000])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "bench_memmap.json"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        C.emit(worker(json.loads(args.worker)))
        return 0
    if any(r < 1 for r in args.rows):
        p.error("--rows must be positive")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            path = Path(tmp) / f"x{rows}.npy"
            out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(rows, 784))
            for start in range(0, rows, 10000):  # written in pieces: this process stays small too
                stop = min(rows, start + 10000)
                out[start:stop] = np.random.default_rng(start).integers(0, 256, (stop - start, 784), dtype=np.uint8)
            out.flush()
            del out
            for mode in MODES:
                C.progress(f"{rows} rows, {mode} ...")
                done = subprocess.run([sys.executable, __file__, "--worker",
                                       json.dumps({"path": str(path), "rows": rows, "mode": mode})],
                                      capture_output=True, text=True, timeout=1800)
                if done.returncode != 0:
                    print(done.stderr[-2000:])
                    return 1
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    rows_out = [[r["rows"], r["mode"], f"{r['file_mb']:.0f}", f"{r['anon_before_mb']:.0f}", f"{r['anon_peak_mb']:.0f}",
                 f"{r['anon_peak_mb'] - r['anon_before_mb']:.0f}", f"{r['seconds']:.1f}"] for r in results]
    print("\nbench_memmap: reference MLP 784-256-128-10, one Adam epoch (batch 128) and predict, float32\n")
    print(C.markdown_table(["rows", "input", "uint8 data MB", "anon MB before fit", "anon MB peak",
                            "growth MB", "fit + predict s"], rows_out))
    print(C.machine_line(C.machine_info()))
    path = C.write_json(args.out, {"results": results, "machine": C.machine_info()})
    print(f"\nJSON written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
