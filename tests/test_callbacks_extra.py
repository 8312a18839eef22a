"""ModelCheckpoint, EarlyStopping, TerminateOnNaN, CSVLogger and Ctrl-C during fit (issue 5).

Monitored values are scripted: a ``Script`` callback placed before the one under test overwrites
``logs[key]`` with a hand-written sequence (History, first in the list, keeps the real values) and
records the weights at the end of every epoch, so each test knows which epoch is best and what its
weights were.
"""

from __future__ import annotations

import csv
import math
import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest

import nnlib as nn
from nnlib.callbacks import Callback


def blobs(n_per_class=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0]])
    x = np.concatenate([c + 0.5 * rng.standard_normal((n_per_class, 2)) for c in centers])
    y = np.repeat(np.arange(3), n_per_class)
    return x, y


X, Y = blobs()  # N = 24


def new_model(optimizer=None, loss="softmax_cross_entropy", seed=0):
    model = nn.Sequential([nn.Dense(5, activation="tanh"), nn.Dense(3)], seed=seed)
    model.compile(optimizer or nn.Adam(lr=0.02), loss, ["accuracy"])
    return model


def assert_weights_equal(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


class Script(Callback):
    """Overwrite ``logs[key]`` with ``values[epoch]`` and record the weights after every epoch."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values, self.weights = key, list(values), {}

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.weights[epoch] = self.model.get_weights()


class BatchRecorder(Callback):
    """Record the weights after every step as {(epoch, batch): weights}."""

    def __init__(self):
        super().__init__()
        self.weights, self.epoch = {}, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        self.weights[(self.epoch, batch)] = self.model.get_weights()


# -- ModelCheckpoint --------------------------------------------------------------------------
def test_checkpoint_keeps_only_the_best_epoch(tmp_path):
    script = Script("val_loss", [0.9, 0.5, 0.7, 0.4, 0.6])
    best = nn.ModelCheckpoint(tmp_path / "best.nnlib")  # defaults: val_loss, save_best_only, min
    each_best = nn.ModelCheckpoint(str(tmp_path / "improved" / "e{epoch}.nnlib"))
    model = new_model()
    model.fit(X, Y, epochs=5, batch_size=8, validation_split=0.25, tol=None, verbose=0,
              callbacks=[script, best, each_best])
    # improvements at epochs 0, 1, 3 (0-based) only; {epoch} is 1-based as in Keras
    assert sorted(os.listdir(tmp_path / "improved")) == ["e1.nnlib", "e2.nnlib", "e4.nnlib"]
    assert best.best == 0.4 and best.best_epoch == 3 and best.last_saved == str(tmp_path / "best.nnlib")
    loaded = nn.load_model(tmp_path / "best.nnlib")
    assert_weights_equal(loaded.get_weights(), script.weights[3])
    assert not np.array_equal(model.get_weights()[0], script.weights[3][0])  # the last epoch was not saved
    assert_weights_equal(nn.load_model(tmp_path / "improved" / "e2.nnlib").get_weights(), script.weights[1])
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_checkpoint_mode_max_and_nan_never_best(tmp_path):
    script = Script("val_accuracy", [0.5, float("nan"), 0.75, 0.6])
    ckpt = nn.ModelCheckpoint(tmp_path / "m.nnlib", monitor="val_accuracy", mode="max")
    model = new_model()
    model.fit(X, Y, epochs=4, batch_size=8, validation_split=0.25, tol=None, verbose=0, callbacks=[script, ckpt])
    assert ckpt.best_epoch == 2 and ckpt.best == 0.75
    assert_weights_equal(nn.load_model(tmp_path / "m.nnlib").get_weights(), script.weights[2])


def test_checkpoint_every_epoch_with_log_fields(tmp_path):
    script = Script("loss", [3.0, 2.0, 1.0])  # no-op overwrite of a real key, to record weights
    ckpt = nn.ModelCheckpoint(tmp_path / "run" / "{epoch:02d}-{loss:.1f}.nnlib", save_best_only=False)
    model = new_model()
    model.fit(X, Y, epochs=3, batch_size=8, tol=None, verbose=0, callbacks=[script, ckpt])
    assert sorted(os.listdir(tmp_path / "run")) == ["01-3.0.nnlib", "02-2.0.nnlib", "03-1.0.nnlib"]
    for epoch, name in enumerate(sorted(os.listdir(tmp_path / "run"))):
        m = nn.load_model(tmp_path / "run" / name)
        assert_weights_equal(m.get_weights(), script.weights[epoch])
        assert m.optimizer.iterations == 3 * (epoch + 1)


def test_checkpoint_unlogged_monitor_fails_before_training(tmp_path):
    model = new_model()
    model.fit(X, Y, epochs=1, verbose=0)
    before, steps = model.get_weights(), model.optimizer.iterations
    with pytest.raises(ValueError, match=r"monitors 'val_loss'.*available keys: \['accuracy', 'loss'\]"):
        model.fit(X, Y, epochs=3, verbose=0, callbacks=[nn.ModelCheckpoint(tmp_path / "m.nnlib")])
    with pytest.raises(ValueError, match=r"names \['val_acc'\].*available"):
        model.fit(X, Y, epochs=3, verbose=0, validation_split=0.25,
                  callbacks=[nn.ModelCheckpoint(tmp_path / "{val_acc}.nnlib")])
    with pytest.raises(ValueError, match=r"cannot format path .*\{loss:d\}"):
        model.fit(X, Y, epochs=3, verbose=0, callbacks=[nn.ModelCheckpoint(tmp_path / "{loss:d}.nnlib",
                                                                           save_best_only=False)])
    assert_weights_equal(model.get_weights(), before)
    assert model.optimizer.iterations == steps and os.listdir(tmp_path) == []


# -- constructor arguments ----------------------------------------------------------------------
# a wrong type raises TypeError, a wrong value ValueError (nnlib._validation's rule)
BAD_ARGS = [
    (TypeError, lambda: nn.ModelCheckpoint(3), r"path.*3"),
    (ValueError, lambda: nn.ModelCheckpoint(""), r"path.*''"),
    (ValueError, lambda: nn.ModelCheckpoint("ck{}.nnlib"), r"ck\{\}\.nnlib.*\{\}"),
    (ValueError, lambda: nn.ModelCheckpoint("ck{0}.nnlib"), r"\{0\}"),
    (ValueError, lambda: nn.ModelCheckpoint("ck{epoch.nnlib"), r"not a valid format string"),
    (ValueError, lambda: nn.ModelCheckpoint("m.nnlib", mode="auto"), r"mode.*'auto'"),
    (ValueError, lambda: nn.ModelCheckpoint("m.nnlib", monitor=""), r"monitor.*''"),
    (TypeError, lambda: nn.ModelCheckpoint("m.nnlib", save_best_only="yes"), r"save_best_only.*'yes'"),
    (ValueError, lambda: nn.EarlyStopping(patience=-1), r"patience.*-1"),
    (TypeError, lambda: nn.EarlyStopping(patience=1.5), r"patience.*1\.5"),
    (TypeError, lambda: nn.EarlyStopping(patience=True), r"patience.*True"),
    (ValueError, lambda: nn.EarlyStopping(min_delta=-0.1), r"min_delta.*-0\.1"),
    (ValueError, lambda: nn.EarlyStopping(min_delta=float("nan")), r"min_delta.*nan"),
    (TypeError, lambda: nn.EarlyStopping(min_delta="0"), r"min_delta.*'0'"),
    (ValueError, lambda: nn.EarlyStopping(mode="MIN"), r"mode.*'MIN'"),
    (TypeError, lambda: nn.EarlyStopping(monitor=None), r"monitor.*None"),
    (TypeError, lambda: nn.EarlyStopping(restore_best_weights=1), r"restore_best_weights.*1"),
    (TypeError, lambda: nn.TerminateOnNaN(raise_error="no"), r"raise_error.*'no'"),
    (TypeError, lambda: nn.CSVLogger(None), r"path.*None"),
    (TypeError, lambda: nn.CSVLogger("log.csv", append=1), r"append.*1"),
]


@pytest.mark.parametrize("exc,make,match", BAD_ARGS, ids=[f"bad_arg_{i}" for i in range(len(BAD_ARGS))])
def test_constructor_arguments_are_validated(exc, make, match):
    with pytest.raises(exc, match=match) as info:
        make()
    assert type(info.value) is exc


# -- EarlyStopping --------------------------------------------------------------------------------
NAN = float("nan")
# (id, values, kwargs, stopped epoch or None, best epoch) -- worked by hand with Keras's rule:
# improvement = value < best - min_delta (max: value > best + min_delta); otherwise wait += 1;
# stop when wait >= patience
EARLY = [
    ("stall_after_best", [1.0, 0.9, 0.95, 0.96, 0.97], {"patience": 2}, 3, 1),
    ("patience0_first_stall", [1.0, 0.8, 0.8, 0.1], {"patience": 0}, 2, 1),  # equal is not better
    ("reset_by_improvement", [1.0, 1.1, 0.5, 0.6, 0.7, 0.8], {"patience": 2}, 4, 2),
    ("min_delta_too_small_a_gain", [1.0, 0.95, 0.92, 0.85], {"min_delta": 0.1, "patience": 1}, 1, 0),
    ("min_delta_big_gain", [1.0, 0.85, 0.8, 0.79], {"min_delta": 0.1, "patience": 2}, 3, 1),
    ("mode_max", [0.5, 0.6, 0.6, 0.55, 0.9], {"mode": "max", "patience": 2}, 3, 1),
    ("nan_is_no_improvement", [1.0, NAN, NAN, 0.1], {"patience": 2}, 2, 0),
    ("steady_never_stops", [5.0, 4.0, 3.0, 2.0, 1.0], {"patience": 0}, None, 4),
]


def drive_early(values, **kwargs):
    weights = [np.array([0.0])]
    fake = SimpleNamespace(stop_training=False, stop_reason="", get_weights=lambda: [w.copy() for w in weights],
                           set_weights=lambda ws: weights.__setitem__(0, ws[0].copy()))
    cb = nn.EarlyStopping(restore_best_weights=True, **kwargs)
    cb.set_model(fake)
    cb.set_params({"metrics": ["loss", "val_loss"]})
    cb.on_train_begin({})
    stopped = None
    for epoch, value in enumerate(values):
        weights[0][...] = epoch  # the "weights" of epoch k are [k]
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, {"loss": 0.0, "val_loss": value})
        if fake.stop_training:
            stopped = epoch
            break
    cb.on_train_end({})
    return cb, fake, stopped, weights[0]


@pytest.mark.parametrize("values,kwargs,want_stop,want_best", [c[1:] for c in EARLY], ids=[c[0] for c in EARLY])
def test_early_stopping_scripted(values, kwargs, want_stop, want_best):
    cb, fake, stopped, weights = drive_early(values, **kwargs)
    assert stopped == want_stop and cb.stopped_epoch == want_stop
    assert cb.best_epoch == want_best and cb.best == values[want_best]
    np.testing.assert_array_equal(weights, [want_best])  # restore_best_weights put back that epoch's weights
    assert cb.restored_epoch == want_best
    if want_stop is None:
        assert fake.stop_reason == ""
    else:
        assert fake.stop_reason.startswith("early stopping: val_loss did not improve")
        assert f"at epoch {want_best + 1}" in fake.stop_reason and "restored" in fake.stop_reason


def test_early_stopping_in_fit_restores_best_weights():
    script = Script("val_loss", [0.8, 0.6, 0.3, 0.5, 0.4, 0.35, 0.2, 0.1])
    early = nn.EarlyStopping(patience=3, restore_best_weights=True)
    model = new_model()
    history = model.fit(X, Y, epochs=8, batch_size=8, validation_split=0.25, tol=None, verbose=0,
                        callbacks=[script, early])
    # best at epoch 2 (0-based); epochs 3, 4, 5 do not improve -> stop after epoch 5
    assert history.epoch == [0, 1, 2, 3, 4, 5] and history.stopped_epoch == 5
    assert early.stopped_epoch == 5 and early.best_epoch == 2 and early.restored_epoch == 2
    assert_weights_equal(model.get_weights(), script.weights[2])
    assert model.stop_reason == history.stop_reason
    assert "early stopping: val_loss did not improve" in history.stop_reason
    assert "best val_loss=0.3 at epoch 3" in history.stop_reason


def test_early_stopping_without_restore_keeps_last_weights():
    script = Script("val_loss", [0.8, 0.6, 0.7])
    model = new_model()
    history = model.fit(X, Y, epochs=5, batch_size=8, validation_split=0.25, tol=None, verbose=0,
                        callbacks=[script, nn.EarlyStopping(patience=1)])
    assert history.epoch == [0, 1, 2]
    assert_weights_equal(model.get_weights(), script.weights[2])
    assert "restored" not in history.stop_reason


def test_early_stopping_restores_best_even_when_all_epochs_ran():  # Keras 3 behaviour
    script = Script("val_loss", [0.8, 0.3, 0.5, 0.6])
    early = nn.EarlyStopping(patience=5, restore_best_weights=True)
    model = new_model()
    history = model.fit(X, Y, epochs=4, batch_size=8, validation_split=0.25, tol=None, verbose=0,
                        callbacks=[script, early])
    assert history.stop_reason == "completed all 4 epochs" and early.stopped_epoch is None
    assert early.restored_epoch == 1
    assert_weights_equal(model.get_weights(), script.weights[1])


def test_early_stopping_missing_key_lists_available_keys():
    cb = nn.EarlyStopping(monitor="val_los")
    cb.set_model(SimpleNamespace(stop_training=False, stop_reason=""))
    with pytest.raises(ValueError, match=r"'val_los'.*available keys: \['loss', 'val_loss'\]"):
        cb.on_epoch_end(0, {"loss": 1.0, "val_loss": 2.0})
    model = new_model()
    with pytest.raises(ValueError, match=r"EarlyStopping monitors 'val_los'.*\['accuracy', 'loss', 'val_accuracy'"):
        model.fit(X, Y, epochs=2, validation_split=0.25, verbose=0, callbacks=[cb])
    assert not model.optimizer.iterations


# -- TerminateOnNaN -------------------------------------------------------------------------------
class NanAtCall(nn.MSE):
    """MSE whose forward returns NaN on call number ``bad_call`` (1-based); no validation runs."""

    def __init__(self, bad_call):
        super().__init__()
        self.bad_call, self.calls = bad_call, 0

    def forward(self, y_pred, y_true):
        self.calls += 1
        loss = super().forward(y_pred, y_true)
        return float("nan") if self.calls == self.bad_call else loss


class NanGradAtCall(nn.MSE):
    """MSE whose backward returns NaN everywhere on call number ``bad_call`` (quiet NaNs raise no FP flags)."""

    def __init__(self, bad_call):
        super().__init__()
        self.bad_call, self.calls = bad_call, 0

    def backward(self):
        self.calls += 1
        grad = super().backward()
        return np.full_like(grad, np.nan) if self.calls == self.bad_call else grad


XR = np.abs(X) + 0.1
TR = XR @ np.array([[0.5], [-1.0]])


def regressor(loss, optimizer=None):
    model = nn.Sequential([nn.Dense(1, input_dim=2)], seed=3)
    model.compile(optimizer or nn.SGD(lr=0.01), loss)
    return model


def test_terminate_on_nan_stops_cleanly_with_last_finite_weights():
    # 24 rows, batch 6 -> 4 steps an epoch; call 10 is epoch 3 (1-based), batch 2
    rec = BatchRecorder()
    model = regressor(NanAtCall(10), nn.Momentum(lr=0.01))
    history = model.fit(XR, TR, epochs=5, batch_size=6, tol=None, verbose=0, callbacks=[rec, nn.TerminateOnNaN()])
    assert history.epoch == [0, 1] and len(history.history["loss"]) == 2
    assert all(math.isfinite(v) for v in history.history["loss"])
    assert history.stopped_epoch == 2 and model.stop_training
    assert history.stop_reason == model.stop_reason
    assert "non-finite" in history.stop_reason and "epoch 3, batch 2" in history.stop_reason
    assert "the loss became nan" in history.stop_reason and "last finite" in history.stop_reason
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert_weights_equal(model.get_weights(), rec.weights[(2, 0)])  # after epoch 3's first batch
    assert model.optimizer.iterations == 9


def test_terminate_on_nan_names_the_layer_for_a_gradient():
    rec = BatchRecorder()
    model = regressor(NanGradAtCall(3))
    history = model.fit(XR, TR, epochs=3, batch_size=12, tol=None, verbose=0, callbacks=[rec, nn.TerminateOnNaN()])
    assert history.epoch == [0] and history.stopped_epoch == 1
    assert "epoch 2, batch 1" in history.stop_reason and "gradient of dense_0/weight" in history.stop_reason
    assert_weights_equal(model.get_weights(), rec.weights[(0, 1)])
    assert model.optimizer.iterations == 2


@pytest.mark.parametrize("callbacks", [[], [nn.TerminateOnNaN(raise_error=True)]], ids=["none", "raise_error"])
def test_nonfinite_raises_without_terminate_on_nan_or_when_asked(callbacks):
    rec = BatchRecorder()
    model = regressor(NanAtCall(10))
    with pytest.raises(FloatingPointError, match=r"epoch 3, batch 2: the loss became nan"):
        model.fit(XR, TR, epochs=5, batch_size=6, tol=None, verbose=0, callbacks=[rec, *callbacks])
    assert_weights_equal(model.get_weights(), rec.weights[(2, 0)])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_terminate_on_nan_restores_epoch_start_when_an_update_overflowed():
    # A finite gradient times lr=1e37 overflows float32 inside the SGD step; the next step's loss is NaN.
    starts = Script("loss", [0.0] * 10)
    model = regressor("mse", nn.SGD(lr=1e37))
    before = model.get_weights()
    history = model.fit(XR * 100, TR * 100, epochs=3, batch_size=6, tol=None, verbose=0,
                        callbacks=[starts, nn.TerminateOnNaN()])
    assert history.epoch == [] and "epoch 1, batch 2" in history.stop_reason
    assert "from the start of epoch 1 were restored" in history.stop_reason
    assert_weights_equal(model.get_weights(), before)


# -- CSVLogger --------------------------------------------------------------------------------------
def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_logger_rows_header_and_append(tmp_path):
    path = tmp_path / "log.csv"
    model = new_model()
    h1 = model.fit(X, Y, epochs=2, batch_size=8, validation_split=0.25, tol=None, verbose=0,
                   callbacks=[nn.CSVLogger(path)])
    rows = read_csv(path)
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert [r[0] for r in rows[1:]] == ["0", "1"]
    for i, row in enumerate(rows[1:]):
        assert [float(v) for v in row[1:]] == [h1.history[k][i] for k in rows[0][1:]]  # exact floats
    h2 = model.fit(X, Y, epochs=4, initial_epoch=2, batch_size=8, validation_split=0.25, tol=None, verbose=0,
                   callbacks=[nn.CSVLogger(path, append=True)])
    rows = read_csv(path)
    assert len(rows) == 5 and rows.count(rows[0]) == 1 and [r[0] for r in rows[1:]] == ["0", "1", "2", "3"]
    assert float(rows[4][1]) == h2.history["loss"][1]
    h3 = model.fit(X, Y, epochs=1, batch_size=8, tol=None, verbose=0, callbacks=[nn.CSVLogger(path)])  # overwrite
    assert read_csv(path) == [["epoch", "loss", "accuracy"],
                              ["0", repr(h3.history["loss"][0]), repr(h3.history["accuracy"][0])]]


def test_csv_logger_append_refuses_other_columns(tmp_path):
    path = tmp_path / "log.csv"
    model = new_model()
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[nn.CSVLogger(path)])
    before = path.read_text()
    with pytest.raises(ValueError, match=r"columns \['epoch', 'loss', 'accuracy'\].*val_loss"):
        model.fit(X, Y, epochs=1, validation_split=0.25, verbose=0, callbacks=[nn.CSVLogger(path, append=True)])
    assert path.read_text() == before


def test_csv_logger_writes_each_epoch_before_a_stop(tmp_path):
    path = tmp_path / "log.csv"
    model = regressor(NanAtCall(10))
    model.fit(XR, TR, epochs=5, batch_size=6, tol=None, verbose=0,
              callbacks=[nn.CSVLogger(path), nn.TerminateOnNaN()])
    rows = read_csv(path)
    assert rows[0] == ["epoch", "loss"] and [r[0] for r in rows[1:]] == ["0", "1"]


# -- Ctrl-C ---------------------------------------------------------------------------------------------
class SigintAt(Callback):
    """Send SIGINT to this process after step ``batch`` of ``epoch`` (``times`` signals)."""

    def __init__(self, epoch, batch, times=1):
        super().__init__()
        self.at, self.times, self.epoch = (epoch, batch), times, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture
def sigint_guard():
    """A handler of our own while the test runs: a SIGINT that fit fails to catch must not stop pytest."""
    caught = []

    def handler(signum, frame):
        caught.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    yield handler, caught
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_at_a_step_boundary(sigint_guard):
    handler, caught = sigint_guard
    rec = BatchRecorder()
    early = nn.EarlyStopping(monitor="loss", patience=10, restore_best_weights=True)
    model = new_model(nn.Adam(lr=0.01))
    history = model.fit(X, Y, epochs=5, batch_size=8, shuffle=False, tol=None, verbose=0,
                        callbacks=[rec, early, SigintAt(1, 1)])
    assert caught == [] and signal.getsignal(signal.SIGINT) is handler  # fit caught it, then restored ours
    assert history.epoch == [0] and history.stopped_epoch == 1  # the unfinished epoch is not logged
    assert "interrupted" in history.stop_reason and "epoch 2 after batch 2" in history.stop_reason
    assert model.optimizer.iterations == 3 + 2
    assert early.restored_epoch is None  # weights stay those after the batch, as stop_reason says
    assert_weights_equal(model.get_weights(), rec.weights[(1, 1)])
    # the same five steps by hand: epoch 1 unshuffled, then two train_on_batch steps
    ref = new_model(nn.Adam(lr=0.01))
    ref.fit(X, Y, epochs=1, batch_size=8, shuffle=False, tol=None, verbose=0)
    ref.train_on_batch(X[0:8], Y[0:8])
    ref.train_on_batch(X[8:16], Y[8:16])
    assert_weights_equal(model.get_weights(), ref.get_weights())


def test_second_ctrl_c_raises_at_once_and_restores_the_handler(sigint_guard):
    handler, caught = sigint_guard
    model = new_model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, epochs=3, batch_size=8, verbose=0, callbacks=[SigintAt(0, 0, times=2)])
    assert caught == [] and signal.getsignal(signal.SIGINT) is handler
    assert model.optimizer.iterations == 1 and all(np.isfinite(w).all() for w in model.get_weights())
