"""Callbacks: the stop rule on scripted losses, History, hooks and progress output."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

import nnlib as nn
from nnlib.callbacks import ConvergenceStop

X = np.linspace(-1, 1, 16).reshape(8, 2)
Y = np.array([0, 1] * 4)


def drive(seq, tol, patience, monitor="loss"):
    """Feed a scripted sequence to ConvergenceStop; return (stopped epoch or None, fake model)."""
    cb = ConvergenceStop(monitor=monitor, tol=tol, patience=patience)
    fake = SimpleNamespace(stop_training=False, stop_reason="")
    cb.set_model(fake)
    cb.on_train_begin({})
    for epoch, value in enumerate(seq):
        cb.on_epoch_end(epoch, {monitor: value, "other": 123.0})
        if fake.stop_training:
            return epoch, fake
    return None, fake


# Worked by hand with: no-improvement when loss > best - tol; best = min(best, loss); stop after patience in a row.
SEQUENCES = [
    # tol .1, patience 2: e1 .95 > .9 (w1, best .95); e2 .93 > .85 (w2) -> stop at 2
    ("slow_decline", [1.0, 0.95, 0.93, 0.5, 0.4, 0.3], 0.1, 2, 2),
    # e1 w1 (best .95); e2 .5 <= .85 resets (best .5); e3 .49 > .4 w1; e4 .48 > .39 w2 -> stop at 4
    ("reset_then_stall", [1.0, 0.95, 0.5, 0.49, 0.48, 0.47], 0.1, 2, 4),
    # best follows every new minimum, even in no-improvement epochs (sklearn), not only improvements (Keras):
    # e1 .95 > .9 w1 best .95; e2 .89 > .85 w2 best .89; e3 .85 > .79 w3 -> stop at 3 (Keras's rule: never here)
    ("best_tracks_min", [1.0, 0.95, 0.89, 0.85, 0.84], 0.1, 3, 3),
    # exactly best - tol counts as improvement (binary-exact numbers): never stops
    ("boundary_is_improvement", [1.0, 0.75, 0.5, 0.25, 0.0], 0.25, 1, None),
    # e1 .875 > .75 -> w1 -> stop at 1 with patience 1
    ("patience_one", [1.0, 0.875, 0.75], 0.25, 1, 1),
    # rising losses never lower best: e1 w1, e2 w2 -> stop at 2
    ("rising", [1.0, 2.0, 3.0, 4.0], 0.1, 2, 2),
    # e1 2.0 w1; e2 .95 > .9 (best still 1.0) w2 -> stop at 2
    ("spike_then_small_gain", [1.0, 2.0, 0.95, 0.5], 0.1, 2, 2),
    # e1 w1; e2 .85 <= .9 resets; e3 .84 w1; e4 .83 w2; e5 .82 w3 -> stop at 5
    ("patience_three", [1.0, 0.95, 0.85, 0.84, 0.83, 0.82, 0.81], 0.1, 3, 5),
    # tol 0: equal loss is not "> best", so it counts as improvement
    ("tol0_flat", [1.0, 1.0, 1.0, 1.0], 0.0, 1, None),
    ("tol0_rising", [1.0, 1.1, 1.2], 0.0, 2, 2),
    # big steady gains never stop
    ("steady", [10.0, 8.0, 6.0, 4.0, 2.0, 0.0], 1.0, 1, None),
]


@pytest.mark.parametrize("seq,tol,patience,want", [c[1:] for c in SEQUENCES], ids=[c[0] for c in SEQUENCES])
def test_stop_rule_scripted(seq, tol, patience, want):
    stopped, fake = drive(seq, tol, patience)
    assert stopped == want
    if want is None:
        assert fake.stop_reason == ""
    else:
        reason = fake.stop_reason
        assert reason.startswith("converged")
        assert float(re.search(r"tol=([-+0-9.e]+)", reason).group(1)) == tol
        assert re.search(rf"\b{patience} epochs?\b", reason)
        assert "loss" in reason


def test_stop_rule_monitor_key_and_reset():
    stopped, fake = drive([1.0, 0.95, 0.93], 0.1, 2, monitor="val_loss")
    assert stopped == 2 and "val_loss" in fake.stop_reason
    # on_train_begin resets best and the counter
    cb = ConvergenceStop(tol=0.1, patience=2)
    fake = SimpleNamespace(stop_training=False, stop_reason="")
    cb.set_model(fake)
    cb.on_train_begin({})
    cb.on_epoch_end(0, {"loss": 0.1})
    cb.on_epoch_end(1, {"loss": 0.1})  # w1
    cb.on_train_begin({})
    cb.on_epoch_end(0, {"loss": 5.0})  # best reset to inf: improvement
    cb.on_epoch_end(1, {"loss": 4.95})  # w1
    assert not fake.stop_training


@pytest.mark.parametrize("tol,patience,match", [
    (-0.1, 2, r"tol.*-0\.1"), (float("nan"), 2, r"tol.*nan"), ("1", 2, r"tol.*'1'"),
    (0.1, 0, r"patience.*0"), (0.1, 1.5, r"patience.*1\.5"), (0.1, True, r"patience.*True"),
])
def test_stop_rule_validation(tol, patience, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ConvergenceStop(tol=tol, patience=patience)


class ScriptedLoss(nn.Loss):
    """Returns scripted values; one script per batch size (train vs validation); zero gradient."""

    def __init__(self, scripts):
        super().__init__()
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.calls = {k: 0 for k in scripts}

    def forward(self, y_pred, y_true):
        n = y_pred.shape[0]
        value = self.scripts[n][self.calls[n]]
        self.calls[n] += 1
        self._shape = y_pred.shape
        return float(value)

    def backward(self):
        return np.zeros(self._shape, dtype=np.float32)


def scripted_model(scripts):
    model = nn.Sequential([nn.Dense(1, input_dim=2)], seed=0)
    model.compile(nn.SGD(lr=0.1), ScriptedLoss(scripts))
    return model


def test_fit_stops_at_scripted_epoch():
    seq = [1.0, 0.95, 0.5, 0.49, 0.48, 0.47, 0.46, 0.45]
    model = scripted_model({8: seq})
    y = np.zeros(8)
    h = model.fit(X, y, epochs=8, batch_size=8, tol=0.1, patience=2, verbose=0)
    assert h.stopped_epoch == 4
    assert h.epochs_run == 5 and h.epoch == [0, 1, 2, 3, 4]
    assert h.history["loss"] == seq[:5]
    assert h.stop_reason.startswith("converged")
    assert "tol=0.1" in h.stop_reason and "2 epochs" in h.stop_reason
    assert model.stop_reason == h.stop_reason


def test_tol_none_never_stops():
    seq = [1.0] * 6
    model = scripted_model({8: seq})
    h = model.fit(X, np.zeros(8), epochs=6, batch_size=8, tol=None, verbose=0)
    assert h.epochs_run == 6 and h.stopped_epoch is None
    assert "all 6 epochs" in h.stop_reason and "complet" in h.stop_reason
    # the same flat losses with the default tol stop early (patience 5 -> epoch 5 is the 5th no-improvement)
    model = scripted_model({8: [1.0] * 10})
    h = model.fit(X, np.zeros(8), epochs=10, batch_size=8, verbose=0)
    assert h.stopped_epoch == 5 and h.epochs_run == 6


def test_monitor_val_loss():
    train = [10.0 - k for k in range(10)]  # always improving by 1
    val = [1.0, 0.95, 0.93, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    xv = X[:4]
    model = scripted_model({8: train, 4: val})
    h = model.fit(X, np.zeros(8), epochs=10, batch_size=8, validation_data=(xv, np.zeros(4)),
                  tol=0.1, patience=2, monitor="val_loss", verbose=0)
    assert h.stopped_epoch == 2
    assert h.history["val_loss"] == val[:3] and h.history["loss"] == train[:3]
    assert "val_loss" in h.stop_reason
    # monitoring the training loss with the same script does not stop
    model = scripted_model({8: train, 4: val})
    h = model.fit(X, np.zeros(8), epochs=10, batch_size=8, validation_data=(xv, np.zeros(4)),
                  tol=0.1, patience=2, verbose=0)
    assert h.stopped_epoch is None and h.epochs_run == 10


def test_monitor_val_loss_without_validation_raises():
    model = scripted_model({8: [1.0] * 3})
    w = model.get_weights()
    with pytest.raises(ValueError, match="val_loss"):
        model.fit(X, np.zeros(8), epochs=3, batch_size=8, monitor="val_loss", verbose=0)
    for a, b in zip(model.get_weights(), w):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.iterations == 0


def _clf():
    model = nn.Sequential([nn.Dense(3, input_dim=2, activation="tanh"), nn.Dense(2)], seed=0)
    model.compile(nn.SGD(lr=0.1), "softmax_cross_entropy", ["accuracy"])
    return model


def test_user_callback_stops_via_stop_training():
    class StopAt(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    model = _clf()
    h = model.fit(X, Y, epochs=10, batch_size=4, tol=None, verbose=0, callbacks=[StopAt()])
    assert h.epochs_run == 2 and h.stopped_epoch == 1
    assert model.optimizer.iterations == 4
    # It stopped early, so the reason must not claim that every epoch ran.
    assert "completed all" not in h.stop_reason


def test_callback_cannot_stop_otherwise():
    class Chatty(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_reason = "I would like to stop"  # no stop_training: no effect
            return True

        def on_batch_end(self, batch, logs=None):
            return False

    model = _clf()
    h = model.fit(X, Y, epochs=4, batch_size=4, tol=None, verbose=0, callbacks=[Chatty()])
    assert h.epochs_run == 4 and h.stopped_epoch is None


def test_stop_training_reset_between_fits():
    class StopNow(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    model = _clf()
    model.fit(X, Y, epochs=5, verbose=0, tol=None, callbacks=[StopNow()])
    assert model.stop_training
    h = model.fit(X, Y, epochs=3, verbose=0, tol=None)
    assert h.epochs_run == 3 and h.stopped_epoch is None


def test_hook_order_and_params():
    events = []

    class Log(nn.Callback):
        def on_train_begin(self, logs=None):
            events.append("train_begin")

        def on_train_end(self, logs=None):
            events.append("train_end")

        def on_epoch_begin(self, epoch, logs=None):
            events.append(f"epoch_begin {epoch}")

        def on_epoch_end(self, epoch, logs=None):
            assert set(logs) == {"loss", "accuracy"}
            events.append(f"epoch_end {epoch}")

        def on_batch_end(self, batch, logs=None):
            assert "loss" in logs and "size" in logs
            events.append(f"batch {batch}")

    x = np.vstack([X, X[:2]])  # N = 10, batch 4 -> 3 batches
    y = np.concatenate([Y, Y[:2]])
    cb = Log()
    model = _clf()
    model.fit(x, y, epochs=3, batch_size=4, tol=None, verbose=0, callbacks=[cb])
    want = ["train_begin"]
    for e in range(3):
        want += [f"epoch_begin {e}", "batch 0", "batch 1", "batch 2", f"epoch_end {e}"]
    want += ["train_end"]
    assert events == want
    assert cb.model is model
    assert cb.params["epochs"] == 3 and cb.params["steps"] == 3 and cb.params["samples"] == 10


def test_callbacks_must_be_callbacks():
    model = _clf()
    with pytest.raises(TypeError, match="Callback"):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[lambda *a: None])
    assert model.optimizer.iterations == 0


def test_history_keys_and_values():
    model = _clf()
    h = model.fit(X, Y, epochs=3, batch_size=4, validation_data=(X[:4], Y[:4]), tol=None, verbose=0)
    assert isinstance(h, nn.History)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in h.history.values())
    assert all(isinstance(v, float) for vals in h.history.values() for v in vals)
    assert all(0.0 <= a <= 1.0 for a in h.history["accuracy"] + h.history["val_accuracy"])
    assert h.epoch == [0, 1, 2] and h.epochs_run == 3
    h2 = _clf().fit(X, Y, epochs=2, tol=None, verbose=0)
    assert set(h2.history) == {"loss", "accuracy"}


def test_verbose_0_prints_nothing(capsys):
    _clf().fit(X, Y, epochs=3, batch_size=4, verbose=0)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("verbose", [1, 2])
def test_verbose_lines_per_epoch(capsys, verbose):
    h = _clf().fit(X, Y, epochs=3, batch_size=4, tol=None, verbose=verbose)
    out, err = capsys.readouterr()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    epoch_lines = [ln for ln in lines if ln.startswith("Epoch ")]
    assert len(epoch_lines) == 3
    for k, ln in enumerate(epoch_lines, start=1):
        assert f"{k}/3" in ln and "loss" in ln and "accuracy" in ln
    assert "\r" not in out  # no progress bar when output is not a terminal
    if verbose == 1:
        assert any(h.stop_reason in ln for ln in lines)
        assert len(lines) == 4


def test_verbose_1_prints_convergence_reason(capsys):
    model = scripted_model({8: [1.0, 0.99, 0.98, 0.97]})
    h = model.fit(X, np.zeros(8), epochs=4, batch_size=8, tol=0.1, patience=2, verbose=1)
    out = capsys.readouterr().out
    assert h.stopped_epoch == 2
    assert len([ln for ln in out.splitlines() if ln.startswith("Epoch ")]) == 3
    assert h.stop_reason in out and "converged" in out


def test_batch_logs_carry_the_batch_metrics():
    """on_batch_end sees each batch's size, loss and metrics (what the progress bar averages)."""
    seen = []

    class Spy(nn.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(dict(logs))

    rng = np.random.default_rng(0)
    model = nn.Sequential([nn.Dense(3)], seed=0)
    model.compile("sgd", "softmax_cross_entropy", metrics=["accuracy"])
    model.fit(rng.random((10, 2)), rng.integers(0, 3, 10), batch_size=4, callbacks=[Spy()], verbose=0, tol=None)
    assert [log["size"] for log in seen] == [4, 4, 2]
    assert all(set(log) == {"size", "loss", "accuracy"} for log in seen)
    assert all(0.0 <= log["accuracy"] <= 1.0 and log["accuracy"] * log["size"] % 1 == 0 for log in seen)
