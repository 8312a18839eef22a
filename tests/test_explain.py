"""nnlib/explain.py: explain() against loss_and_gradients (shapes, norms, the gradient handed from layer
to layer, the printed derivative texts), the model left exactly as it was, and its argument checks."""

from __future__ import annotations

import numpy as np
import pytest

import nnlib as nn
from nnlib import explain
from nnlib.layers import BatchNormalization, Dropout


def test_explain_matches_loss_and_gradients(digits_600, capsys):
    x, y = digits_600[0][:16], digits_600[1][:16]
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


def test_explain_restores_the_model(digits_600, capsys):
    x, y = digits_600[0][:8], digits_600[1][:8]
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


def test_explain_checks_its_inputs(digits_600):
    model = nn.Sequential([nn.Dense(10)], seed=0)
    with pytest.raises(RuntimeError, match="compile"):
        explain(model, digits_600[0][:4], digits_600[1][:4])
    model.compile("sgd", "softmax_cross_entropy")
    with pytest.raises(ValueError, match="different lengths"):
        explain(model, digits_600[0][:4], digits_600[1][:3], verbose=False)
    records = explain(model, digits_600[0][:4], digits_600[1][:4], verbose=False)  # builds the model on x
    assert model.built and records[1]["to_left_shape"] == (4, 64)


def test_explain_regression_loss_text():
    model = nn.Sequential([nn.Dense(3, activation="tanh"), nn.Dense(1)], seed=0)
    model.compile("sgd", "mse")
    records = explain(model, np.ones((5, 2)), np.zeros(5), verbose=False)
    assert records[0]["derivative"] == "MSE: starts the pass with dL/dy = 2 (y - t) / (N D)"
    assert records[0]["to_left_shape"] == (5, 1)
