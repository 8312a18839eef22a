"""nnlib/callbacks/gradient_monitor.py: GradientMonitor's figures (mean batch gradient norm, epoch update
ratio), its warnings on a vanishing and an exploding network and its silence on a healthy one, the rules
driven hook by hook, and its argument checks. (explain() is in test_explain.py, the plots in test_plot.py.)"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import nnlib as nn
from nnlib import GradientHealthWarning, GradientMonitor
from nnlib.initializers import Normal
from nnlib.layers import BatchNormalization
from nnlib.optimizers import SGD, Momentum


def sigmoid_net(depth=8, width=32):
    layers = [nn.Dense(width, activation="sigmoid", weight_init=Normal(0.05)) for _ in range(depth - 1)]
    return nn.Sequential(layers + [nn.Dense(10, weight_init=Normal(0.05))], seed=0)


def healthy_net(depth=8, width=32):
    layers = []
    for _ in range(depth - 1):
        layers += [nn.Dense(width, weight_init="he_normal"), BatchNormalization(), nn.ReLU()]
    return nn.Sequential(layers + [nn.Dense(10)], seed=0)


def fit(model, data, monitor, epochs=5, optimizer=None, **kwargs):
    model.compile(optimizer or Momentum(lr=0.05), "softmax_cross_entropy", ["accuracy"])
    return model.fit(*data, epochs=epochs, batch_size=50, verbose=0, tol=None, callbacks=[monitor], **kwargs)


# -- the two networks of the issue ---------------------------------------------------------------------
def test_warns_on_deep_sigmoid_network(digits_600):
    monitor = GradientMonitor()
    with pytest.warns(GradientHealthWarning) as record:
        fit(sigmoid_net(), digits_600, monitor)
    texts = [str(w.message) for w in record]
    vanish = [t for t in texts if t.startswith("gradients vanish in")]
    assert len(vanish) == 1
    # names the first layer, a figure, the reason and a cure
    assert "dense_0" in vanish[0] and "that of dense_7" in vanish[0]
    assert "for 3 epochs in a row" in vanish[0] and "sigmoid" in vanish[0]
    assert "he_normal" in vanish[0] and "BatchNormalization" in vanish[0]
    assert texts == monitor.messages
    # and the figures behind it: the first layer's gradient is orders of magnitude below the last one's
    first, last = monitor.history["grad_norm/dense_0"], monitor.history["grad_norm/dense_7"]
    assert all(f < 1e-6 * g for f, g in zip(first, last))


def test_silent_on_relu_he_batchnorm_network(digits_600):
    monitor = GradientMonitor()
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientHealthWarning)
        history = fit(healthy_net(), digits_600, monitor)
    assert monitor.messages == []
    assert history.history["accuracy"][-1] > 0.8  # and it learns
    norms = [monitor.history[f"grad_norm/{n}"][-1] for n in monitor.layer_names]
    assert max(norms) / min(norms) < 100


def test_warns_when_gradients_explode(digits_600):
    model = nn.Sequential([nn.Dense(64, activation="relu", weight_init=Normal(0.3)) for _ in range(9)]
                          + [nn.Dense(10, weight_init=Normal(0.3))], seed=0)
    monitor = GradientMonitor()
    with pytest.warns(GradientHealthWarning, match="gradients explode in") as record, \
            np.errstate(over="ignore", invalid="ignore"), pytest.raises(FloatingPointError):
        fit(model, digits_600, monitor, optimizer=Momentum(lr=0.02))
    text = str(record[0].message)
    assert "x the layer's recent mean" in text and "global_clipnorm" in text
    # the cure: the same network with global_clipnorm trains without a warning
    cured = nn.Sequential([nn.Dense(64, activation="relu", weight_init=Normal(0.3)) for _ in range(9)]
                          + [nn.Dense(10, weight_init=Normal(0.3))], seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientHealthWarning)
        history = fit(cured, digits_600, GradientMonitor(), optimizer=Momentum(lr=0.02, global_clipnorm=1.0))
    assert all(math.isfinite(v) for v in history.history["loss"])
    assert history.history["loss"][-1] < 0.05 * history.history["loss"][0]


# -- the figures -----------------------------------------------------------------------------------------
def test_figures_are_the_mean_batch_gradient_norm_and_the_epoch_update_ratio(digits_600):
    """With one batch per epoch, grad_norm is the norm of loss_and_gradients' gradient at the epoch's
    starting weights, and update_ratio is ||w_end - w_begin|| / ||w_begin||."""
    x, y = digits_600[0][:64].astype(np.float64), digits_600[1][:64]
    model = nn.Sequential([nn.Dense(8, activation="tanh"), nn.Dense(10)], seed=0, dtype="float64")
    model.compile(SGD(lr=0.5), "softmax_cross_entropy")
    _, grads = model.loss_and_gradients(x, y)
    w0 = model.get_weights()
    monitor = GradientMonitor()
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, tol=None, callbacks=[monitor])
    w1 = model.get_weights()
    for i, name in enumerate(["dense_0", "dense_1"]):
        g = math.sqrt(sum(float(np.sum(a * a)) for a in grads[2 * i:2 * i + 2]))
        assert monitor.history[f"grad_norm/{name}"] == [pytest.approx(g, rel=1e-10)]
        dw = math.sqrt(sum(float(np.sum((b - a) ** 2)) for a, b in zip(w0[2 * i:2 * i + 2], w1[2 * i:2 * i + 2])))
        norm0 = math.sqrt(sum(float(np.sum(a * a)) for a in w0[2 * i:2 * i + 2]))
        assert monitor.history[f"update_ratio/{name}"] == [pytest.approx(dw / norm0, rel=1e-10)]
        assert dw == pytest.approx(0.5 * g, rel=1e-10)  # plain SGD: the step is lr * gradient
    assert monitor.epochs == [0]
    assert monitor.layer_names == ["dense_0", "dense_1"]


def test_every_records_only_some_epochs(digits_600):
    monitor = GradientMonitor(every=2)
    fit(healthy_net(depth=3), digits_600, monitor, epochs=5)
    assert monitor.epochs == [0, 2, 4]
    assert set(monitor.history) == {f"{k}/{n}" for k in ("grad_norm", "update_ratio") for n in monitor.layer_names}
    assert all(len(v) == 3 for v in monitor.history.values())
    assert monitor.layer_names == ["dense_0", "batch_normalization_1", "dense_3", "batch_normalization_4", "dense_6"]


# -- the rules, driven hook by hook ---------------------------------------------------------------------
def driven_monitor(**kwargs):
    model = nn.Sequential([nn.Dense(2, input_dim=2), nn.Dense(2)], seed=0, dtype="float64")
    monitor = GradientMonitor(min_update_ratio=0.0, **kwargs)  # weights never move here: no stall rule
    monitor.set_model(model)
    monitor.on_train_begin()
    return model, monitor


def run_epoch(model, monitor, epoch, first, last, batches=2):
    monitor.on_epoch_begin(epoch)
    for b in range(batches):
        model.layers[0].weight.grad[...] = 0.0
        model.layers[0].weight.grad[0, 0] = first
        model.layers[1].weight.grad[...] = 0.0
        model.layers[1].weight.grad[0, 0] = last
        monitor.on_batch_end(b, {"loss": 1.0, "size": 1})
    monitor.on_epoch_end(epoch, {"loss": 1.0})


def test_vanishing_rule_waits_for_patience_epochs():
    model, monitor = driven_monitor(patience=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientHealthWarning)
        for epoch in range(2):
            run_epoch(model, monitor, epoch, first=1e-4, last=1.0)
        run_epoch(model, monitor, 2, first=0.1, last=1.0)  # a healthy epoch resets the count
        for epoch in range(3, 5):
            run_epoch(model, monitor, epoch, first=1e-4, last=1.0)
    with pytest.warns(GradientHealthWarning, match=r"gradients vanish in dense_0: the gradient norm of dense_0 "
                                                   r"is 0\.0001, 0\.0001x that of dense_1"):
        run_epoch(model, monitor, 5, first=1e-4, last=1.0)
    with warnings.catch_warnings():  # once per layer and kind
        warnings.simplefilter("error", GradientHealthWarning)
        run_epoch(model, monitor, 6, first=1e-4, last=1.0)
    assert monitor.history["grad_norm/dense_0"] == pytest.approx([1e-4, 1e-4, 0.1, 1e-4, 1e-4, 1e-4, 1e-4])


def test_explosion_rules_batch_jump_and_epoch_growth():
    model, monitor = driven_monitor(patience=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientHealthWarning)
        run_epoch(model, monitor, 0, first=1.0, last=1.0)
        run_epoch(model, monitor, 1, first=10.0, last=1.0)  # 10x: not yet
    with pytest.warns(GradientHealthWarning, match=r"explode in dense_0: the mean gradient norm of dense_0 grew to "
                                                   r"100, 100x its value 2 epoch\(s\) before"):
        run_epoch(model, monitor, 2, first=100.0, last=1.0)  # 10x the last epoch, 100x two epochs before
    with pytest.warns(GradientHealthWarning, match=r"explode in dense_1: a batch gradient norm of 500 in dense_1 "
                                                   r"is 500x the layer's recent mean \(1\)"):
        run_epoch(model, monitor, 3, first=100.0, last=500.0)


def test_non_finite_gradient_at_the_end_of_training_warns():
    model, monitor = driven_monitor()
    model.layers[1].weight.grad[0, 0] = np.nan
    with pytest.warns(GradientHealthWarning, match="gradients are not finite in dense_1"):
        monitor.on_train_end()


def test_stall_rule():
    model = nn.Sequential([nn.Dense(2, input_dim=2), nn.Dense(2)], seed=0, dtype="float64")
    monitor = GradientMonitor(patience=2, vanish_ratio=1e-9)
    monitor.set_model(model)
    monitor.on_train_begin()
    run_epoch(model, monitor, 0, first=1.0, last=1.0)
    with pytest.warns(GradientHealthWarning, match=r"updates are vanishingly small in 2 layers \(dense_0, dense_1\)"):
        run_epoch(model, monitor, 1, first=1.0, last=1.0)
    assert monitor.history["update_ratio/dense_0"] == [0.0, 0.0]


def test_warn_false_only_records(digits_600):
    monitor = GradientMonitor(warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientHealthWarning)
        fit(sigmoid_net(depth=6), digits_600, monitor, epochs=3)
    assert any(m.startswith("gradients vanish in") for m in monitor.messages)


@pytest.mark.parametrize("kwargs", [{"every": 0}, {"every": 1.5}, {"patience": 0}, {"vanish_ratio": 0},
                                    {"vanish_ratio": 1}, {"min_update_ratio": -1}, {"explode_factor": 1},
                                    {"warn": 1}])
def test_monitor_validation(kwargs):
    (name, value), = kwargs.items()
    exc = TypeError if name == "warn" or (name == "every" and isinstance(value, float)) else ValueError
    with pytest.raises(exc, match=rf"{name} must .*, got {value!r}") as info:
        GradientMonitor(**kwargs)
    assert type(info.value) is exc


def test_warning_is_a_user_warning():
    assert issubclass(GradientHealthWarning, UserWarning)
