"""Run cases of tests/distributed_cases.py under MPI: ``mpiexec -n K python distributed_worker.py OUT CASE...``.

Each process writes ``OUT/CASE/rank<r>.npz`` (the arrays) and ``rank<r>.json`` (the rest) for
tests/test_distributed.py to compare with one process.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from distributed_cases import CASES  # noqa: E402

from nnlib.distributed import DataParallel  # noqa: E402


def save(result: dict, where: Path, rank: int) -> None:
    arrays = {f"w{i}": w for i, w in enumerate(result.pop("weights", []))}
    if "state" in result:
        arrays["state"] = np.asarray(result.pop("state"))
    np.savez(where / f"rank{rank}.npz", **arrays)
    (where / f"rank{rank}.json").write_text(json.dumps(result))


def main() -> None:
    out, names = Path(sys.argv[1]), sys.argv[2:]
    for name in names:
        strategy = DataParallel()
        where = out / name
        if strategy.rank == 0:
            where.mkdir(parents=True, exist_ok=True)
        strategy.comm.Barrier()
        try:
            result = CASES[name](strategy, strategy.rank, strategy.size, str(where))
        except Exception as exc:  # noqa: BLE001 - recorded for the test to report
            result = {"unexpected": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}
        save(result, where, strategy.rank)
        strategy.comm.Barrier()


if __name__ == "__main__":
    main()
