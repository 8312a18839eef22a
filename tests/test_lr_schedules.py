"""nnlib/callbacks/lr_schedules.py: learning-rate schedules and ReduceLROnPlateau: the rate sequences,
worked by hand, through fit and driven hook by hook; resuming; validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnlib as nn
from nnlib.callbacks import Callback, CosineDecay, ExponentialDecay, History, ReduceLROnPlateau, StepDecay
from nnlib.optimizers import SGD

X = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
Y = (X[:, 0] > 0).astype(int)


class LrProbe(Callback):
    """Records the optimizer's lr seen by each epoch's steps."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(None)

    def on_batch_end(self, batch, logs=None):
        self.seen[-1] = self.model.optimizer.lr


def fit(callbacks, epochs, lr=0.1, initial_epoch=0, model=None, **kwargs):
    if model is None:
        model = nn.Sequential([nn.Dense(4, activation="relu"), nn.Dense(2)], seed=0)
        model.compile(SGD(lr=lr), "softmax_cross_entropy")
    probe = LrProbe()
    model.fit(X, Y, epochs=epochs, batch_size=10, verbose=0, tol=None, callbacks=[*callbacks, probe],
              initial_epoch=initial_epoch, **kwargs)
    return model, probe.seen


@pytest.mark.parametrize("schedule,epochs,expected", [
    # StepDecay(2, 0.5): 0.1 * 0.5^(epoch // 2)
    (lambda: StepDecay(step_size=2, gamma=0.5), 5, [0.1, 0.1, 0.05, 0.05, 0.025]),
    # ExponentialDecay(0.9): 0.1 * 0.9^epoch
    (lambda: ExponentialDecay(gamma=0.9), 4, [0.1, 0.09, 0.081, 0.0729]),
    # CosineDecay(4, 0.01): 0.01 + 0.09 (1 + cos(pi t / 4)) / 2 -> 0.1, 0.0868198, 0.055, 0.0231802, 0.01, then 0.01
    (lambda: CosineDecay(T_max=4, eta_min=0.01), 6, [0.1, 0.08681980515, 0.055, 0.02318019485, 0.01, 0.01]),
    # CosineDecay(2) to 0: 0.1, 0.05, 0
    (lambda: CosineDecay(T_max=2), 3, [0.1, 0.05, 0.0]),
], ids=["step", "exponential", "cosine", "cosine_to_zero"])
def test_schedule_sequences(schedule, epochs, expected):
    sched = schedule()
    _, seen = fit([sched], epochs)
    np.testing.assert_allclose(seen, expected, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(sched.lrs, expected, rtol=1e-9, atol=1e-15)
    assert sched.initial_lr == 0.1


def test_schedule_resumes_from_epoch_number():
    sched = StepDecay(step_size=2, gamma=0.5, initial_lr=0.1)
    model = nn.Sequential([nn.Dense(2)], seed=0)
    model.compile(SGD(lr=0.0125), "softmax_cross_entropy")  # as a reloaded optimizer with a decayed rate
    _, seen = fit([sched], epochs=5, initial_epoch=3, model=model)
    assert seen == [0.05, 0.025]


def test_schedule_keeps_its_base_over_two_fits():
    sched = ExponentialDecay(gamma=0.5)
    model, first = fit([sched], epochs=3)
    assert first == [0.1, 0.05, 0.025]
    _, second = fit([sched], epochs=2, model=model)  # starts again from epoch 0 and the first base, 0.1
    assert second == [0.1, 0.05]


def test_schedule_writes_lr_into_model_history_when_exposed():
    """If the model exposes its History as ``model.history``, "lr" is added aligned with History.epoch."""

    class FakeModel:
        optimizer = SGD(lr=0.2)

    model, history = FakeModel(), History()
    sched = StepDecay(step_size=1, gamma=0.5)
    sched.set_model(model)
    sched.on_train_begin()
    for epoch in range(3):
        sched.on_epoch_begin(epoch)
        logs = {"loss": 1.0}
        sched.on_epoch_end(epoch, logs)  # the schedule writes into the epoch's logs ...
        assert logs["lr"] == sched.lrs[-1]
        history.on_epoch_end(epoch, logs)  # ... and History, called last in fit, records them
    assert history.history["lr"] == [0.2, 0.1, 0.05]
    # a key that appears late, or skips an epoch, is padded with NaN: every list stays aligned with History.epoch
    history.on_epoch_end(3, {"loss": 1.0, "other": 7.0})
    history.on_epoch_end(4, {"loss": 1.0})
    assert history.epoch == [0, 1, 2, 3, 4]
    assert [len(v) for v in history.history.values()] == [5, 5, 5]
    assert math.isnan(history.history["other"][0]) and history.history["other"][3] == 7.0
    assert math.isnan(history.history["other"][4]) and math.isnan(history.history["lr"][3])


@pytest.mark.parametrize("make,exc,match", [
    (lambda: StepDecay(0), ValueError, "step_size"), (lambda: StepDecay(1.5), TypeError, "step_size"),
    (lambda: StepDecay(True), TypeError, "step_size"), (lambda: StepDecay(2, gamma=0), ValueError, "gamma"),
    (lambda: StepDecay(2, gamma=1.5), ValueError, "gamma"), (lambda: ExponentialDecay(-0.5), ValueError, "gamma"),
    (lambda: ExponentialDecay(float("nan")), ValueError, "gamma"),
    (lambda: ExponentialDecay("0.5"), TypeError, "gamma"),
    (lambda: CosineDecay(0), ValueError, "T_max"), (lambda: CosineDecay(5, eta_min=-1), ValueError, "eta_min"),
    (lambda: StepDecay(2, initial_lr=0), ValueError, "initial_lr"),
])
def test_schedule_validation(make, exc, match):
    """A wrong type is a TypeError, a wrong value a ValueError; both name the argument."""
    with pytest.raises(exc, match=match) as info:
        make()
    assert type(info.value) is exc


# -- ReduceLROnPlateau ----------------------------------------------------------------------------------
class PlateauModel:
    def __init__(self, lr):
        self.optimizer = SGD(lr=lr)
        self.stop_training = False


def drive(cb, values, lr=1.0, key="val_loss"):
    model = PlateauModel(lr)
    cb.set_model(model)
    cb.set_params({"metrics": ["loss", key]})
    cb.on_train_begin()
    for epoch, v in enumerate(values):
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, {"loss": 0.0, key: v})
    return model


def test_plateau_patience_and_min_delta_by_hand():
    # patience 2, min_delta 0.05, factor 0.1: best 3 -> 2 (E1); 2.5, 2.4 do not beat 1.95 -> reduce after E3;
    # 1.9 < 1.95 is better (E4); 2, 2 -> reduce after E6
    cb = ReduceLROnPlateau(patience=2, min_delta=0.05)
    model = drive(cb, [3.0, 2.0, 2.5, 2.4, 1.9, 2.0, 2.0])
    assert [e for e, _, _ in cb.reductions] == [3, 6]
    np.testing.assert_allclose(cb.lrs, [1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1])
    assert model.optimizer.lr == pytest.approx(0.01)
    assert cb.best == 1.9


def test_plateau_cooldown_and_min_lr_by_hand():
    # Keras: after a reduction, cooldown=1 epoch keeps wait at 0; then 2 more bad epochs reduce again.
    # lr: 1 -> 0.5 (after E2) -> 0.25 (E4) -> max(0.125, 0.2) = 0.2 (E6) -> stays (0.2 is not > min_lr)
    cb = ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.0, cooldown=1, min_lr=0.2)
    model = drive(cb, [1.0] * 9)
    assert [(e, old, new) for e, old, new in cb.reductions] == [(2, 1.0, 0.5), (4, 0.5, 0.25), (6, 0.25, 0.2)]
    assert cb.lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2]
    assert model.optimizer.lr == 0.2


def test_plateau_auto_mode_maximizes_accuracy():
    cb = ReduceLROnPlateau(monitor="val_accuracy", patience=1, factor=0.5)
    drive(cb, [0.5, 0.6, 0.55, 0.7], key="val_accuracy")
    assert [e for e, _, _ in cb.reductions] == [2]
    cb = ReduceLROnPlateau(monitor="val_score", mode="max", patience=1, factor=0.5)
    drive(cb, [0.5, 0.4], key="val_score")
    assert len(cb.reductions) == 1


def test_plateau_through_fit():
    # min_delta so large that nothing after epoch 0 counts as better: with patience 1 the rate halves every epoch
    cb = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1e9)
    _, seen = fit([cb], epochs=4)
    assert seen == [0.1, 0.1, 0.05, 0.025]
    assert cb.lrs == seen


def test_plateau_needs_a_logged_monitor():
    with pytest.raises(ValueError, match="val_loss.*not log"):
        fit([ReduceLROnPlateau()], epochs=1)
    _, seen = fit([ReduceLROnPlateau(patience=0)], epochs=2, validation_data=(X, Y))  # val_loss is logged
    assert seen[0] == 0.1


@pytest.mark.parametrize("kwargs,match", [
    ({"factor": 1.0}, "factor"), ({"factor": 0}, "factor"), ({"factor": 2}, "factor"), ({"patience": -1}, "patience"),
    ({"cooldown": 1.5}, "cooldown"), ({"min_lr": -1e-3}, "min_lr"), ({"min_delta": -1}, "min_delta"),
    ({"mode": "up"}, "mode"), ({"monitor": ""}, "monitor"), ({"verbose": 1}, "verbose"),
])
def test_plateau_validation(kwargs, match):
    (value,) = kwargs.values()
    exc = TypeError if match in ("cooldown", "verbose") else ValueError  # 1.5 and 1 are of the wrong type
    with pytest.raises(exc, match=match) as info:
        ReduceLROnPlateau(**kwargs)
    assert type(info.value) is exc


def test_plateau_verbose_prints(capsys):
    drive(ReduceLROnPlateau(patience=0, verbose=True), [1.0, 1.0])
    assert "reduced the learning rate from 1 to 0.1" in capsys.readouterr().out
