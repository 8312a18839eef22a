"""nnlib/callbacks/stopping.py: ConvergenceStop (the loss-change rule behind fit's tol and patience) on
scripted losses, driven hook by hook and through fit; EarlyStopping on scripted values (Keras's rule) and
restoring the best weights; TerminateOnNaN stopping cleanly with the last finite weights; the
constructors' argument checks."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
from training_helpers import (
    BLOB_X,
    BLOB_Y,
    LINE_X,
    TR,
    XR,
    BatchRecorder,
    NanAtCall,
    NanGradAtCall,
    Script,
    assert_weights_equal,
    new_model,
    regressor,
    scripted_model,
)

import nnlib as nn
from nnlib.callbacks import ConvergenceStop


# -- ConvergenceStop ------------------------------------------------------------------------------
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


def test_fit_stops_at_scripted_epoch():
    seq = [1.0, 0.95, 0.5, 0.49, 0.48, 0.47, 0.46, 0.45]
    model = scripted_model({8: seq})
    y = np.zeros(8)
    h = model.fit(LINE_X, y, epochs=8, batch_size=8, tol=0.1, patience=2, verbose=0)
    assert h.stopped_epoch == 4
    assert h.epochs_run == 5 and h.epoch == [0, 1, 2, 3, 4]
    assert h.history["loss"] == seq[:5]
    assert h.stop_reason.startswith("converged")
    assert "tol=0.1" in h.stop_reason and "2 epochs" in h.stop_reason
    assert h.stop_reason == "converged: loss improved by less than tol=0.1 for 2 epochs in a row"  # not tol=0.15
    assert model.stop_reason == h.stop_reason


def test_tol_none_never_stops():
    seq = [1.0] * 6
    model = scripted_model({8: seq})
    h = model.fit(LINE_X, np.zeros(8), epochs=6, batch_size=8, tol=None, verbose=0)
    assert h.epochs_run == 6 and h.stopped_epoch is None
    assert "all 6 epochs" in h.stop_reason and "complet" in h.stop_reason
    assert h.stop_reason == "completed all 6 epochs"
    # the same flat losses with the default tol stop early (patience 5 -> epoch 5 is the 5th no-improvement)
    model = scripted_model({8: [1.0] * 10})
    h = model.fit(LINE_X, np.zeros(8), epochs=10, batch_size=8, verbose=0)
    assert h.stopped_epoch == 5 and h.epochs_run == 6


def test_monitor_val_loss():
    train = [10.0 - k for k in range(10)]  # always improving by 1
    val = [1.0, 0.95, 0.93, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    xv = LINE_X[:4]
    model = scripted_model({8: train, 4: val})
    h = model.fit(LINE_X, np.zeros(8), epochs=10, batch_size=8, validation_data=(xv, np.zeros(4)),
                  tol=0.1, patience=2, monitor="val_loss", verbose=0)
    assert h.stopped_epoch == 2
    assert h.history["val_loss"] == val[:3] and h.history["loss"] == train[:3]
    assert "val_loss" in h.stop_reason
    # monitoring the training loss with the same script does not stop
    model = scripted_model({8: train, 4: val})
    h = model.fit(LINE_X, np.zeros(8), epochs=10, batch_size=8, validation_data=(xv, np.zeros(4)),
                  tol=0.1, patience=2, verbose=0)
    assert h.stopped_epoch is None and h.epochs_run == 10


def test_monitor_val_loss_without_validation_raises():
    model = scripted_model({8: [1.0] * 3})
    w = model.get_weights()
    with pytest.raises(ValueError, match="val_loss"):
        model.fit(LINE_X, np.zeros(8), epochs=3, batch_size=8, monitor="val_loss", verbose=0)
    for a, b in zip(model.get_weights(), w):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.iterations == 0


# -- constructor arguments ----------------------------------------------------------------------
# a wrong type raises TypeError, a wrong value ValueError (nnlib._validation's rule)
BAD_ARGS = [
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
        assert re.search(rf"best val_loss=[-+0-9.e]+ at epoch {want_best + 1}; ", fake.stop_reason)  # not epoch 12


def test_early_stopping_in_fit_restores_best_weights():
    script = Script("val_loss", [0.8, 0.6, 0.3, 0.5, 0.4, 0.35, 0.2, 0.1])
    early = nn.EarlyStopping(patience=3, restore_best_weights=True)
    model = new_model()
    history = model.fit(BLOB_X, BLOB_Y, epochs=8, batch_size=8, validation_split=0.25, tol=None, verbose=0,
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
    history = model.fit(BLOB_X, BLOB_Y, epochs=5, batch_size=8, validation_split=0.25, tol=None, verbose=0,
                        callbacks=[script, nn.EarlyStopping(patience=1)])
    assert history.epoch == [0, 1, 2]
    assert_weights_equal(model.get_weights(), script.weights[2])
    assert "restored" not in history.stop_reason


def test_early_stopping_restores_best_even_when_all_epochs_ran():  # Keras 3 behaviour
    script = Script("val_loss", [0.8, 0.3, 0.5, 0.6])
    early = nn.EarlyStopping(patience=5, restore_best_weights=True)
    model = new_model()
    history = model.fit(BLOB_X, BLOB_Y, epochs=4, batch_size=8, validation_split=0.25, tol=None, verbose=0,
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
        model.fit(BLOB_X, BLOB_Y, epochs=2, validation_split=0.25, verbose=0, callbacks=[cb])
    assert not model.optimizer.iterations


# -- TerminateOnNaN -------------------------------------------------------------------------------
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
