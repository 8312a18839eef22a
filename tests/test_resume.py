"""Exact resume across processes, bit-identical save/load round trips, atomic checkpoints (issue 5).

BLAS may split a product differently with another thread count and change float32 results in
the last bit, so both sides of the resume comparison run in child processes pinned to one thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import nnlib as nn

SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np
    import nnlib as nn

    mode, folder, opt_name = sys.argv[1], sys.argv[2], sys.argv[3]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((53, 5))  # 53 * 0.75 -> 40 training rows, batch 7 -> a partial batch
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int) + (x[:, 3] > 1)
    KW = dict(batch_size=7, validation_split=0.25, tol=None, verbose=0)

    def new():
        m = nn.Sequential([nn.Dense(16, activation="relu"), nn.Dense(8, activation="tanh"), nn.Dense(3)], seed=5)
        opt = nn.Adam(lr=0.01) if opt_name == "adam" else nn.Momentum(lr=0.05, momentum=0.9, nesterov=True)
        m.compile(opt, "softmax_cross_entropy", ["accuracy"])
        return m

    def dump(model, history, name):
        arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
        for i, p in enumerate(model.parameters()):
            for slot, a in model.optimizer.state.get(p, {}).items():
                arrays[f"s{i}_{slot}"] = a
        np.savez(f"{folder}/{name}.npz", **arrays)
        with open(f"{folder}/{name}.json", "w") as f:
            json.dump({"history": history.history, "epoch": history.epoch,
                       "iterations": model.optimizer.iterations}, f)

    if mode == "first":
        full = new()
        dump(full, full.fit(x, y, epochs=4, **KW), "full")
        half = new()
        dump(half, half.fit(x, y, epochs=2, **KW), "half")
        half.save(f"{folder}/after2.nnlib")
    else:
        model = nn.load_model(f"{folder}/after2.nnlib")
        dump(model, model.fit(x, y, epochs=4, initial_epoch=2, **KW), "resumed")
''')


def run_child(tmp_path, mode, opt_name):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(tmp_path / "job.py"), mode, str(tmp_path), opt_name],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def load_run(tmp_path, name):
    with np.load(tmp_path / f"{name}.npz") as arrays:
        data = dict(arrays)
    return data, json.loads((tmp_path / f"{name}.json").read_text())


@pytest.mark.parametrize("opt_name", ["adam", "momentum"])
def test_resume_in_a_fresh_process_is_bit_identical(tmp_path, opt_name):
    (tmp_path / "job.py").write_text(SCRIPT)
    run_child(tmp_path, "first", opt_name)  # 4 epochs in one call; and 2 epochs, then save
    run_child(tmp_path, "resume", opt_name)  # another process: load, fit(epochs=4, initial_epoch=2)
    full, full_log = load_run(tmp_path, "full")
    half, half_log = load_run(tmp_path, "half")
    resumed, resumed_log = load_run(tmp_path, "resumed")
    assert sorted(full) == sorted(resumed) and any(k.startswith("s") for k in full)  # weights and state
    for key in full:
        assert full[key].dtype == resumed[key].dtype == np.float32
        np.testing.assert_array_equal(resumed[key], full[key], err_msg=key)
    assert not np.array_equal(half["w0"], full["w0"])  # the last two epochs did change the weights
    assert resumed_log["epoch"] == [2, 3] and full_log["epoch"] == [0, 1, 2, 3]
    assert sorted(full_log["history"]) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    for key, values in full_log["history"].items():
        assert half_log["history"][key] + resumed_log["history"][key] == values, key  # exact floats via JSON
    assert resumed_log["iterations"] == full_log["iterations"] == 4 * 6


# -- round trips ----------------------------------------------------------------------------------
def blobs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((30, 4))
    return x, (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)


OPTIMIZERS = {
    "adam": lambda: nn.Adam(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=1e-3),
    "momentum": lambda: nn.Momentum(lr=0.05, momentum=0.8, nesterov=True),
    "sgd": lambda: nn.SGD(lr=0.1, weight_decay=1e-4),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_round_trip_predictions_and_optimizer_state(tmp_path, opt_name, dtype):
    x, y = blobs()
    model = nn.Sequential([nn.Dense(6, activation="leaky_relu"), nn.Dense(5, activation="sigmoid"),
                           nn.Dense(3)], seed=2, dtype=dtype, name="round_trip")
    model.compile(OPTIMIZERS[opt_name](), "softmax_cross_entropy", ["accuracy"])
    model.fit(x, y, epochs=3, batch_size=8, tol=None, verbose=0)
    model.save(tmp_path / "m.nnlib")
    loaded = nn.load_model(tmp_path / "m.nnlib")
    assert loaded.dtype == model.dtype and loaded.seed == model.seed and loaded.name == "round_trip"
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.predict(x).dtype == np.dtype(dtype)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations == 12
    assert [name for name, _ in loaded.metrics] == ["accuracy"] and type(loaded.loss) is type(model.loss)
    originals, copies = model.parameters(), loaded.parameters()
    assert model.optimizer.slots == {"adam": ("m", "v"), "momentum": ("velocity",), "sgd": ()}[opt_name]
    for p, q in zip(originals, copies):
        state, restored = model.optimizer.state.get(p, {}), loaded.optimizer.state.get(q, {})
        assert sorted(state) == sorted(restored) == sorted(model.optimizer.slots)
        for slot in state:
            assert restored[slot].dtype == np.dtype(dtype)
            np.testing.assert_array_equal(restored[slot], state[slot])
    # equal state means equal futures: one more epoch on each gives the same weights, bit for bit
    model.fit(x, y, epochs=4, initial_epoch=3, batch_size=8, tol=None, verbose=0)
    loaded.fit(x, y, epochs=4, initial_epoch=3, batch_size=8, tol=None, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_round_trip_uncompiled_and_weights_only(tmp_path):
    x, _ = blobs()
    raw = nn.Sequential([nn.Dense(3, input_dim=4, activation="tanh")], seed=9)
    raw.save(tmp_path / "raw.nnlib")
    loaded = nn.load_model(tmp_path / "raw.nnlib")
    assert loaded.loss is None and loaded.optimizer is None
    np.testing.assert_array_equal(loaded.predict(x), raw.predict(x))
    raw.save_weights(tmp_path / "w.nnlib")
    other = nn.Sequential([nn.Dense(3, input_dim=4, activation="tanh")], seed=1)
    assert not np.array_equal(other.predict(x), raw.predict(x))
    other.load_weights(tmp_path / "w.nnlib")
    np.testing.assert_array_equal(other.predict(x), raw.predict(x))
    other.load_weights(tmp_path / "raw.nnlib")  # a full model file holds weights too
    with pytest.raises(ValueError, match="weights only.*load_weights"):
        nn.load_model(tmp_path / "w.nnlib")


# -- atomic checkpoints ---------------------------------------------------------------------------
class CrashSwitch(nn.Callback):
    """From the end of epoch ``at`` on, make the zip writer fail after two members."""

    def __init__(self, at, monkeypatch, error):
        super().__init__()
        self.at, self.monkeypatch, self.error = at, monkeypatch, error

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            real, calls = zipfile.ZipFile.writestr, []

            def failing(zf, name, data, *args, **kwargs):
                calls.append(name)
                if len(calls) > 2:
                    raise self.error
                return real(zf, name, data, *args, **kwargs)

            self.monkeypatch.setattr(zipfile.ZipFile, "writestr", failing)


class FileBytes(nn.Callback):
    def __init__(self, path):
        super().__init__()
        self.path, self.snapshots, self.weights = path, {}, {}

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots[epoch] = self.path.read_bytes()
        self.weights[epoch] = self.model.get_weights()


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk_full", "keyboard_interrupt"])
def test_checkpoint_crash_mid_save_leaves_the_old_file(tmp_path, monkeypatch, error):
    x, y = blobs()
    path = tmp_path / "ckpt.nnlib"
    seen = FileBytes(path)
    model = nn.Sequential([nn.Dense(4), nn.Dense(3)], seed=0)
    model.compile("adam", "softmax_cross_entropy")
    callbacks = [CrashSwitch(1, monkeypatch, error), nn.ModelCheckpoint(path, save_best_only=False), seen]
    with pytest.raises(type(error)):
        model.fit(x, y, epochs=3, batch_size=8, tol=None, verbose=0, callbacks=callbacks)
    assert sorted(seen.snapshots) == [0]  # epoch 0 was saved, epoch 1's save crashed
    assert path.read_bytes() == seen.snapshots[0]
    assert os.listdir(tmp_path) == ["ckpt.nnlib"]  # no temporary file left behind
    monkeypatch.undo()
    loaded = nn.load_model(path)
    for a, b in zip(loaded.get_weights(), seen.weights[0]):
        np.testing.assert_array_equal(a, b)
    assert loaded.optimizer.iterations == 4


def stateful_layers():
    """BatchNormalization and Dropout, whose non-trainable state a file must carry."""
    return [nn.BatchNormalization(), nn.Dropout(0.3)]


def test_round_trip_keeps_layer_state(tmp_path):
    """Running statistics and the dropout generator's position survive save/load: same predictions
    bit for bit, and the same future (same masks) when training resumes."""
    x, y = blobs()
    norm, drop = stateful_layers()
    model = nn.Sequential([nn.Dense(8, activation="relu"), norm, drop, nn.Dense(3)], seed=4, dtype="float64")
    model.compile(nn.Adam(lr=0.01), "softmax_cross_entropy")
    model.fit(x, y, epochs=2, batch_size=8, tol=None, verbose=0)
    model.save(tmp_path / "m.nnlib")
    with zipfile.ZipFile(tmp_path / "m.nnlib") as zf:
        assert sorted(n for n in zf.namelist() if n.startswith("state/")) == [
            "state/0001_moving_mean.npy", "state/0001_moving_variance.npy", "state/0002_rng_state.npy"]
    loaded = nn.load_model(tmp_path / "m.nnlib")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    fresh = nn.Sequential([nn.Dense(8, activation="relu"), *stateful_layers(), nn.Dense(3)], seed=4, dtype="float64")
    fresh.build(4)
    fresh.set_weights(model.get_weights())  # the weights alone are not enough
    assert not np.array_equal(fresh.predict(x), model.predict(x))
    model.fit(x, y, epochs=4, initial_epoch=2, batch_size=8, tol=None, verbose=0)
    loaded.fit(x, y, epochs=4, initial_epoch=2, batch_size=8, tol=None, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
