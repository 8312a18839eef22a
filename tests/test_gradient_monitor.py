"""GradientMonitor (figures, warnings on a vanishing and an exploding network, silence on a healthy one),
explain() (shapes and norms against loss_and_gradients, state restored) and plot_gradient_norms."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import nnlib as nn
from nnlib import GradientHealthWarning, GradientMonitor, explain
from nnlib.datasets import load_digits
from nnlib.initializers import Normal
from nnlib.layers import BatchNormalization, Dropout
from nnlib.optimizers import SGD, Momentum


@pytest.fixture(scope="module")
def digits():
    (x, y), _ = load_digits()
    return x[:600], y[:600]


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
def test_warns_on_deep_sigmoid_network(digits):
    monitor = GradientMonitor()
    with pytest.warns(GradientHealthWarning) as record:
        fit(sigmoid_net(), digits, monitor)
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


def test_silent_on_relu_he_batchnorm_network(digits):
    monitor = GradientMonitor()
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientHealthWarning)
        history = fit(healthy_net(), digits, monitor)
    assert monitor.messages == []
    assert history.history["accuracy"][-1] > 0.8  # and it learns
    norms = [monitor.history[f"grad_norm/{n}"][-1] for n in monitor.layer_names]
    assert max(norms) / min(norms) < 100


def test_warns_when_gradients_explode(digits):
    model = nn.Sequential([nn.Dense(64, activation="relu", weight_init=Normal(0.3)) for _ in range(9)]
                          + [nn.Dense(10, weight_init=Normal(0.3))], seed=0)
    monitor = GradientMonitor()
    with pytest.warns(GradientHealthWarning, match="gradients explode in") as record, \
            np.errstate(over="ignore", invalid="ignore"), pytest.raises(FloatingPointError):
        fit(model, digits, monitor, optimizer=Momentum(lr=0.02))
    text = str(record[0].message)
    assert "x the layer's recent mean" in text and "global_clipnorm" in text
    # the cure: the same network with global_clipnorm trains without a warning
    cured = nn.Sequential([nn.Dense(64, activation="relu", weight_init=Normal(0.3)) for _ in range(9)]
                          + [nn.Dense(10, weight_init=Normal(0.3))], seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientHealthWarning)
        history = fit(cured, digits, GradientMonitor(), optimizer=Momentum(lr=0.02, global_clipnorm=1.0))
    assert all(math.isfinite(v) for v in history.history["loss"])
    assert history.history["loss"][-1] < 0.05 * history.history["loss"][0]


# -- the figures -----------------------------------------------------------------------------------------
def test_figures_are_the_mean_batch_gradient_norm_and_the_epoch_update_ratio(digits):
    """With one batch per epoch, grad_norm is the norm of loss_and_gradients' gradient at the epoch's
    starting weights, and update_ratio is ||w_end - w_begin|| / ||w_begin||."""
    x, y = digits[0][:64].astype(np.float64), digits[1][:64]
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


def test_every_records_only_some_epochs(digits):
    monitor = GradientMonitor(every=2)
    fit(healthy_net(depth=3), digits, monitor, epochs=5)
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


def test_warn_false_only_records(digits):
    monitor = GradientMonitor(warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientHealthWarning)
        fit(sigmoid_net(depth=6), digits, monitor, epochs=3)
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


# -- explain -------------------------------------------------------------------------------------------------
def test_explain_matches_loss_and_gradients(digits, capsys):
    x, y = digits[0][:16], digits[1][:16]
    model = nn.Sequential([nn.Dense(12, activation="sigmoid"), nn.Dense(8), nn.ReLU(), nn.Dense(10)], seed=0,
                          dtype="float64")
    model.compile("sgd", "softmax_cross_entropy")
    records = explain(model, x, y)
    loss, grads = model.loss_and_gradients(x, y)
    assert [r["name"] for r in records] == ["loss", "dense_3", "relu_2", "dense_1", "dense_0"]
    assert records[0]["loss"] == pytest.approx(loss, rel=1e-12)
    assert records[0]["to_left_shape"] == (16, 10)
    shapes = [(r["from_right_shape"], r["to_left_shape"]) for r in records[1:]]
    assert shapes == [((16, 10), (16, 8)), ((16, 8), (16, 8)), ((16, 8), (16, 12)), ((16, 12), (16, 64))]
    # the gradient handed left by one layer is the one arriving at the next
    for right, left in zip(records, records[1:]):
        assert left["from_right_norm"] == right["to_left_norm"]
        assert left["gain"] == pytest.approx(left["to_left_norm"] / left["from_right_norm"])
    by_param = {k: v for r in records[1:] for k, v in r["param_grad_norms"].items()}
    names = [p.name for p in model.parameters()]
    for name, g in zip(names, grads):
        assert by_param[name] == pytest.approx(float(np.linalg.norm(g)), rel=1e-12)
    # dL/dx of the whole model (the first layer is told to compute it here)
    dx = model.backward(model.loss.backward(), input_grad=True)
    assert records[-1]["to_left_norm"] == pytest.approx(float(np.linalg.norm(dx)), rel=1e-12)
    out = capsys.readouterr().out
    assert out.startswith("One backward pass on 16 samples, right to left")
    assert "ReLU: passes the gradient where the input was > 0" in out
    assert "Dense with Sigmoid: first multiplies the gradient by y (1 - y), at most 1/4" in out
    assert "SoftmaxCrossEntropy: starts the pass with dL/dz = (softmax(z) - onehot(y)) / N" in out
    assert "hands left   (16, 64)" in out


def test_explain_restores_the_model(digits, capsys):
    x, y = digits[0][:8], digits[1][:8]
    model = nn.Sequential([nn.Dense(6), BatchNormalization(), nn.ReLU(), Dropout(0.5), nn.Dense(10)], seed=0)
    model.compile("adam", "softmax_cross_entropy")
    model.fit(x, y, epochs=1, verbose=0, tol=None)
    twin = nn.Sequential([nn.Dense(6), BatchNormalization(), nn.ReLU(), Dropout(0.5), nn.Dense(10)], seed=0)
    twin.compile("adam", "softmax_cross_entropy")
    twin.fit(x, y, epochs=1, verbose=0, tol=None)
    flags = [layer.needs_input_grad for layer in model.layers]
    grads = [p.grad.copy() for p in model.parameters()]
    states = [layer.get_state() for layer in model.layers]
    records = explain(model, x, y, verbose=False)
    assert capsys.readouterr().out == ""
    assert [r["type"] for r in records] == ["SoftmaxCrossEntropy", "Dense", "Dropout", "ReLU", "BatchNormalization",
                                            "Dense"]
    assert "mask" in records[2]["derivative"] and "mean" in records[4]["derivative"]
    assert [layer.needs_input_grad for layer in model.layers] == flags
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)
    for layer, state in zip(model.layers, states):
        for k, v in layer.get_state().items():
            np.testing.assert_array_equal(v, state[k])
    # training continues exactly as if explain had never run (same Dropout masks, same statistics)
    model.fit(x, y, epochs=2, verbose=0, tol=None)
    twin.fit(x, y, epochs=2, verbose=0, tol=None)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_explain_checks_its_inputs(digits):
    model = nn.Sequential([nn.Dense(10)], seed=0)
    with pytest.raises(RuntimeError, match="compile"):
        explain(model, digits[0][:4], digits[1][:4])
    model.compile("sgd", "softmax_cross_entropy")
    with pytest.raises(ValueError, match="different lengths"):
        explain(model, digits[0][:4], digits[1][:3], verbose=False)
    records = explain(model, digits[0][:4], digits[1][:4], verbose=False)  # builds the model on x
    assert model.built and records[1]["to_left_shape"] == (4, 64)


def test_explain_regression_loss_text():
    model = nn.Sequential([nn.Dense(3, activation="tanh"), nn.Dense(1)], seed=0)
    model.compile("sgd", "mse")
    records = explain(model, np.ones((5, 2)), np.zeros(5), verbose=False)
    assert records[0]["derivative"] == "MSE: starts the pass with dL/dy = 2 (y - t) / (N D)"
    assert records[0]["to_left_shape"] == (5, 1)


# -- the plot -----------------------------------------------------------------------------------------------
def test_plot_gradient_norms(tmp_path, digits):
    import matplotlib  # noqa: F401  (a dev dependency: the plot must really be drawn)

    from nnlib.plot import plot_gradient_norms

    monitor = GradientMonitor(warn=False)
    fit(sigmoid_net(depth=4), digits, monitor, epochs=2)
    one = plot_gradient_norms(monitor, tmp_path / "one.png", title="sigmoid")
    both = plot_gradient_norms({"a": monitor, "b": monitor.history}, tmp_path / "both.png")
    for path in (one, both):
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    zeros = plot_gradient_norms({"grad_norm/d": [0.0, float("nan")]}, tmp_path / "zeros.png")  # nothing to log-scale
    assert zeros.endswith("zeros.png")
    with pytest.raises(ValueError, match="no grad_norm"):
        plot_gradient_norms({"loss": [1.0]}, tmp_path / "none.png")


def test_plot_history_leaves_per_layer_figures_to_the_gradient_plot(tmp_path, monkeypatch):
    import matplotlib  # noqa: F401  (a dev dependency: the plot must really be drawn)

    from nnlib import plot

    drawn = []
    real = plot._pyplot

    def spy():
        plt = real()
        original = plt.subplots

        def subplots(rows, cols, **kwargs):
            drawn.append(cols)
            return original(rows, cols, **kwargs)

        monkeypatch.setattr(plt, "subplots", subplots)
        return plt

    monkeypatch.setattr(plot, "_pyplot", spy)
    logs = {"loss": [1.0, 0.5], "accuracy": [0.5, 0.7], "grad_norm/dense_0": [0.1, 0.2],
            "update_ratio/dense_0": [1e-3, 2e-3]}
    plot.plot_history(logs, tmp_path / "h.png")
    assert drawn == [2]  # loss and accuracy only
