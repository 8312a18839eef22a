"""DataParallel: K-process fits under mpiexec equal the one-process fit (tests/distributed_cases.py).

Every case runs once under ``mpiexec -n 2`` and once under ``-n 3`` (more processes than
the machine's cores is fine for correctness), each process writing its results; the tests
compare them with the same case run here in one process. A hang would be a defect, so
every launch has a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import distributed_cases as cases
import numpy as np
import pytest

import nnlib as nn

HERE = Path(__file__).resolve().parent
MPIEXEC = Path(sys.executable).with_name("mpiexec")
LAUNCH_TIMEOUT = 300  # seconds; the whole battery takes a few
# one BLAS and nnlib thread per process: the processes already share the cores
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NNLIB_NUM_THREADS": "1"}


def mpirun(size: int, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``mpiexec -n size python -m mpi4py ARGS`` with a timeout that kills every process it started."""
    command = [str(MPIEXEC), "-n", str(size), sys.executable, "-m", "mpi4py", *args]
    env = {**os.environ, **SINGLE_THREADED}
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=LAUNCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"mpiexec -n {size} {' '.join(args)} hung for {LAUNCH_TIMEOUT} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


class Run:
    """The results of every case from one mpiexec launch of ``size`` processes."""

    def __init__(self, size: int, root: Path) -> None:
        self.size, self.root = size, root

    def ranks(self, case: str) -> list[dict]:
        results = []
        for rank in range(self.size):
            where = self.root / case
            result = json.loads((where / f"rank{rank}.json").read_text())
            assert "unexpected" not in result, f"{case}, rank {rank}: {result['unexpected']}"
            with np.load(where / f"rank{rank}.npz", allow_pickle=False) as arrays:
                result["weights"] = [arrays[f"w{i}"] for i in range(sum(k.startswith("w") for k in arrays.files))]
                if "state" in arrays.files:
                    result["state"] = arrays["state"]
            results.append(result)
        return results


@pytest.fixture(scope="module", params=[2, 3], ids=["2-ranks", "3-ranks"])
def run(request, tmp_path_factory) -> Run:
    root = tmp_path_factory.mktemp(f"dp{request.param}")
    done = mpirun(request.param, [str(HERE / "distributed_worker.py"), str(root), *cases.CASES], root)
    assert done.returncode == 0, f"mpiexec failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return Run(request.param, root)


def one_process(case: str, tmp_path: Path) -> dict:
    return cases.CASES[case](None, 0, 1, str(tmp_path))


def assert_replicas(results: list[dict]) -> None:
    """Every process ends with bit-identical weights and the same History."""
    for rank, result in enumerate(results[1:], start=1):
        for a, b in zip(results[0]["weights"], result["weights"]):
            np.testing.assert_array_equal(a, b, err_msg=f"rank {rank}'s weights differ from rank 0's")
        assert result.get("history") == results[0].get("history")


def assert_one_process(result: dict, reference: dict, rtol: float = 1e-8, atol: float = 1e-12) -> None:
    """Weights, per-epoch figures and the stop equal the one-process run's."""
    assert len(result["weights"]) == len(reference["weights"]) > 0
    for a, b in zip(result["weights"], reference["weights"]):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    assert result["history"].keys() == reference["history"].keys()
    for key, values in reference["history"].items():
        np.testing.assert_allclose(result["history"][key], values, rtol=rtol, atol=atol, err_msg=key)
    assert result["stopped_epoch"] == reference["stopped_epoch"]
    assert result["stop_reason"] == reference["stop_reason"]


@pytest.mark.parametrize("case", ["mlp_adam", "stop_rule", "batchnorm_small_batches", "batchnorm_cnn",
                                  "early_stopping", "dataset_objects", "memmap_shards", "terminate_on_nan",
                                  "interrupt", "cnn_tiny_batches"])
def test_equals_one_process_in_float64(run, case, tmp_path):
    results = run.ranks(case)
    assert_replicas(results)
    reference = one_process(case, tmp_path)
    assert_one_process(results[0], reference)
    if "state" in reference:  # BatchNormalization's running statistics
        np.testing.assert_allclose(results[0]["state"], reference["state"], rtol=1e-8, atol=1e-12)


def test_the_stop_rule_fires_early_on_the_same_epoch(run, tmp_path):
    results, reference = run.ranks("stop_rule"), one_process("stop_rule", tmp_path)
    assert reference["stopped_epoch"] is not None and reference["stopped_epoch"] < 59
    assert [r["stopped_epoch"] for r in results] == [reference["stopped_epoch"]] * run.size
    assert reference["stop_reason"].startswith("converged: loss improved by less than tol=0.01")


def test_early_stopping_stops_on_the_same_epoch_on_every_process(run, tmp_path):
    reference = one_process("early_stopping", tmp_path)
    assert reference["stopped_epoch"] is not None and reference["stopped_epoch"] < 39
    assert [r["stopped_epoch"] for r in run.ranks("early_stopping")] == [reference["stopped_epoch"]] * run.size


def test_float32_agrees_to_rounding(run, tmp_path):
    results, reference = run.ranks("float32"), one_process("float32", tmp_path)
    assert_replicas(results)
    for a, b in zip(results[0]["weights"], reference["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(results[0]["history"]["loss"], reference["history"]["loss"], rtol=1e-5)


def test_the_datasets_on_epoch_end_runs_once_per_epoch_on_every_process(run):
    assert [r["epochs_ended"] for r in run.ranks("dataset_objects")] == [4] * run.size


def test_callbacks_see_the_whole_batchs_sample_counts_with_datasets(run, tmp_path):
    reference = one_process("dataset_objects", tmp_path)["samples"]
    assert reference == [81, 80, 80, 80, 80]  # 9 batches of 9 rows estimated from batch 0, then the 80 seen
    assert [r["samples"] for r in run.ranks("dataset_objects")] == [reference] * run.size


def test_only_rank_0_writes_files_and_prints(run, tmp_path):
    results = run.ranks("files_and_output")
    assert_replicas(results)
    assert_one_process(results[0], one_process("files_and_output", tmp_path))
    where = run.root / "files_and_output"
    printed = (where / "stdout_rank0.txt").read_text()
    assert "Epoch 3/3" in printed and "loss:" in printed
    assert nn.load_model(str(where / "checkpoint_rank0.nnlib")).count_params() > 0
    assert nn.load_model(str(where / "model_rank0.nnlib")).count_params() > 0
    assert (where / "log_rank0.csv").read_text().count("\n") == 4  # the header and 3 epochs
    for rank in range(1, run.size):
        assert (where / f"stdout_rank{rank}.txt").read_text() == ""
        for name in (f"checkpoint_rank{rank}.nnlib", f"log_rank{rank}.csv", f"model_rank{rank}.nnlib"):
            assert not (where / name).exists(), f"rank {rank} wrote {name}"


def test_a_nonfinite_step_raises_the_same_error_everywhere(run, tmp_path):
    results, reference = run.ranks("nonfinite"), one_process("nonfinite", tmp_path)
    assert reference["error"][0] == "FloatingPointError"
    assert [r["error"] for r in results] == [reference["error"]] * run.size
    assert_replicas(results)
    for a, b in zip(results[0]["weights"], reference["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-8)


def test_terminate_on_nan_stops_every_process_at_the_same_batch(run, tmp_path):
    reference = one_process("terminate_on_nan", tmp_path)
    assert "non-finite" in reference["stop_reason"]
    assert [r["stop_reason"] for r in run.ranks("terminate_on_nan")] == [reference["stop_reason"]] * run.size


def test_ctrl_c_on_one_process_stops_all_after_the_same_batch(run):
    results = run.ranks("interrupt")
    assert_replicas(results)
    assert {r["stop_reason"] for r in results} == {
        "interrupted (Ctrl-C) in epoch 2 after batch 4; the weights are those after that batch"}


def test_a_stop_on_one_process_stops_all(run, tmp_path):
    results = run.ranks("stop_on_one_rank")
    assert_replicas(results)
    assert_one_process(results[-1], one_process("stop_on_one_rank", tmp_path))  # the rank whose callback stopped
    for result in results[:-1]:
        assert result["stopped_epoch"] == 1
        assert result["stop_reason"] == f"stopped by a callback on one rank (on rank {run.size - 1})"


def test_replicas_that_drift_apart_raise_on_every_process(run):
    for result in run.ranks("drift"):
        assert result["error"][0] == "RuntimeError" and "drifted apart in epoch 1" in result["error"][1]


def test_bad_input_on_one_process_raises_everywhere_and_changes_nothing(run):
    results = run.ranks("bad_labels_on_one_rank")
    bad = run.size - 1
    assert results[bad]["error"][0] == "ValueError" and "labels must lie in [0, 3)" in results[bad]["error"][1]
    for result in results[:bad]:
        assert result["error"][0] == "RuntimeError"
        assert f"fit's checks failed on rank {bad} of {run.size}: ValueError: y: labels" in result["error"][1]
    assert all(r["unchanged"] for r in results)


def test_processes_with_different_data_sizes_are_refused(run):
    for result in run.ranks("different_sizes"):
        assert result["error"][0] == "ValueError"
        assert "training rows is 100 on rank 0 and 101 on rank 1" in result["error"][1]  # the first that differs


def test_a_different_setting_or_model_on_one_process_is_refused_everywhere_before_anything_changes(run):
    expected = [what for what, _, _ in cases._mismatches()]
    for result in run.ranks("mismatched_settings"):
        assert [m[0] for m in result["mismatches"]] == expected
        for what, kind, message, unchanged in result["mismatches"]:
            assert kind == "ValueError", (what, message)
            assert "every process must call fit with the same settings and model" in message, message
            assert f"on rank {run.size - 1}" in message and unchanged, (what, message)
        keys = {what: message.split(": ", 1)[1].split(" is ")[0] for what, _, message, _ in result["mismatches"]}
        assert keys["epochs"] == "epochs" and keys["shuffle"] == "shuffle" and keys["layers"] == "layers"
        assert keys["optimizer"] == "optimizer" and keys["batch_size"] in ("batch_size", "batches an epoch")


def test_an_error_on_one_process_raises_on_every_process_and_names_it(run):
    bad = run.size - 1
    for rank, result in enumerate(run.ranks("errors_on_one_rank")):
        outcomes = result["outcomes"]
        for hook in ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "validation"):
            kind, message = outcomes[hook]
            if rank == bad:
                assert kind == ("ValueError" if hook == "validation" else "OSError"), (hook, kind, message)
            else:
                assert kind == "RuntimeError" and f"on rank {bad} of {run.size}" in message, (hook, message)
                assert ("missing file" if hook == "validation" else f"disk full in {hook}") in message
        assert outcomes["restored"], "a fit refused in on_train_begin left the model changed"


def test_dropout_keeps_replicas_identical(run):
    results = run.ranks("dropout")
    assert_replicas(results)
    assert np.isfinite(results[0]["history"]["loss"]).all()
    # ... while each process draws its own masks: the generators' positions differ
    assert len({tuple(r["rng"]) for r in results}) == run.size


def test_a_seed_beyond_int64_is_shared_as_it_is(run, tmp_path):
    results = run.ranks("big_seed")
    assert_replicas(results)
    assert {r["seed"] for r in results} == {str(2**64 + 7)}
    assert_one_process(results[0], one_process("big_seed", tmp_path))


def test_importing_the_module_does_not_import_mpi4py():
    code = "import sys, nnlib.distributed; assert 'mpi4py' not in sys.modules, 'mpi4py was imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_seed_none_uses_rank_0s_seed_and_weights(run):
    results = run.ranks("seed_none")
    assert_replicas(results)
    assert len({r["seed"] for r in results}) == 1
    # rank 0's seed, weights and epoch order: the one-process fit from rank 0's model
    model = cases._mlp(seed=results[0]["seed"])
    model.compile("adam", "softmax_cross_entropy")
    x, y = cases._classes()
    history = model.fit(x, y, epochs=2, batch_size=16, tol=None, verbose=0)
    for a, b in zip(results[0]["weights"], model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(results[0]["history"]["loss"], history.history["loss"], rtol=1e-8)


def test_without_synchronized_statistics_the_batchnorm_cases_would_fail(run, tmp_path):
    """The control: the same fit with each process's BatchNormalization statistics left local."""
    results, reference = run.ranks("unsynchronized_batchnorm"), one_process("unsynchronized_batchnorm", tmp_path)
    assert reference.get("error") is None
    for result in results:
        assert result["error"][0] == "RuntimeError" and "drifted apart" in result["error"][1]
    assert not all(np.allclose(a, b, rtol=1e-6) for a, b in zip(results[0]["weights"], reference["weights"]))


def test_the_command_line_trains_on_every_process_and_rank_0_saves(tmp_path):
    done = mpirun(2, ["-m", "nnlib.cli", "train", "--distributed", "--epochs", "2", "--hidden", "16",
                      "--save", str(tmp_path / "digits.nnlib"), "--quiet"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("test accuracy:") == 1 and "2 processes" in done.stdout
    assert nn.load_model(str(tmp_path / "digits.nnlib")).count_params() > 0


def test_without_mpi4py_the_error_says_how_to_install(monkeypatch):
    from nnlib.distributed import DataParallel

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r'pip install "nnlib\[mpi\]"'):
        DataParallel()


def test_fit_refuses_a_strategy_of_the_wrong_type():
    model = cases._mlp()
    model.compile("adam", "softmax_cross_entropy")
    x, y = cases._classes(20)
    with pytest.raises(TypeError, match="strategy must be None or a Strategy"):
        model.fit(x, y, strategy="mpi")


def test_share_of_cuts_contiguous_parts_that_differ_by_at_most_one():
    for n in range(0, 12):
        for count in range(1, 5):
            parts = [range(n)[cases.share_of(n, i, count)] for i in range(count)]
            assert [v for part in parts for v in part] == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
