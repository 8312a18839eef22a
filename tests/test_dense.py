"""nnlib/layers/dense.py: Dense's hand values, input-width and build checks, its units argument, the
first-layer case (needs_input_grad=False) and its default and named initializers. (Its formulas, gradient
checks, dtypes and round trips run with every other layer in test_layers.py.)"""

import numpy as np
import pytest
from layer_cases import ACT_REF

import nnlib as nn


def test_hand_values():
    """Dense(1) with W=[[2],[3]], b=[1], worked out by hand."""
    d = nn.Dense(1, bias_init="ones")
    d.build(2, np.random.default_rng(0), np.float64)
    d.weight.value[...] = [[2.0], [3.0]]
    np.testing.assert_array_equal(d.forward(np.array([[1.0, -1.0]])), [[0.0]])  # 2 - 3 + 1
    np.testing.assert_array_equal(d.backward(np.array([[4.0]])), [[8.0, 12.0]])
    np.testing.assert_array_equal(d.weight.grad, [[4.0], [-4.0]])
    np.testing.assert_array_equal(d.bias.grad, [4.0])


def test_dense_wrong_input_width_names_both_shapes():
    """Dense built for 4 inputs rejects (5, 2) with a message containing (N, 4) and (5, 2)."""
    d = nn.Dense(3)
    d.build(4, np.random.default_rng(0), np.float32)
    with pytest.raises(ValueError) as info:
        d.forward(np.zeros((5, 2), np.float32))
    assert "(N, 4)" in str(info.value) and "(5, 2)" in str(info.value)
    with pytest.raises(ValueError):
        d.forward(np.zeros(4, np.float32))


def test_dense_declared_input_dim_mismatch():
    """Building with a width other than the declared input_dim is a ValueError naming both."""
    with pytest.raises(ValueError, match="4.*3|3.*4"):
        nn.Dense(2, input_dim=4).build(3, np.random.default_rng(0))


def test_dense_forward_before_build():
    """An unbuilt Dense refuses to run."""
    with pytest.raises(RuntimeError):
        nn.Dense(2).forward(np.zeros((1, 2)))


@pytest.mark.parametrize("units", [0, -1, 2.5, "3", None, True])
def test_dense_bad_units(units):
    """units must be a positive int."""
    with pytest.raises((ValueError, TypeError)):
        nn.Dense(units)


@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_needs_input_grad_false(activation):
    """needs_input_grad=False: backward returns None but still fills weight and bias grads."""
    d = nn.Dense(3, activation=activation)
    d.build(2, np.random.default_rng(0), np.float64)
    d.needs_input_grad = False
    x = np.array([[0.5, -1.0], [1.5, 0.25]])
    g = np.array([[1.0, -2.0, 0.5], [0.3, 0.7, -1.0]])
    z = x @ d.weight.value + d.bias.value
    dz = g * (ACT_REF[activation or "linear"][1](z))
    d.forward(x, training=True)
    assert d.backward(g) is None
    np.testing.assert_allclose(d.weight.grad, x.T @ dz, rtol=1e-12)
    np.testing.assert_allclose(d.bias.grad, dz.sum(axis=0), rtol=1e-12)


# -- initializers (the issue: He for ReLU, documented) ------------------------------------------------
# -- Dense's default initializer (the issue: He for ReLU, documented) ------------------------------------
def test_dense_default_init_is_documented():
    doc = nn.Dense.__doc__
    assert "he_normal" in doc and "ReLU" in doc and "glorot_uniform" in doc


@pytest.mark.parametrize("init", ["he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "lecun_normal",
                                  "zeros", "ones", "normal", {"name": "normal", "config": {"std": 0.3}}])
def test_dense_accepts_every_initializer_by_name(init):
    layer = nn.Dense(50, weight_init=init)
    layer.build(400, np.random.default_rng(0), np.float64)
    w = layer.weight.value
    expected = {"zeros": 0.0, "ones": 0.0, "normal": 0.05}.get(init if isinstance(init, str) else "", None)
    if isinstance(init, dict):
        assert w.std() == pytest.approx(0.3, rel=0.05)
    elif expected is not None:
        assert w.std() == pytest.approx(expected, rel=0.05, abs=1e-12)
    else:
        assert 0.0 < w.std() < 0.2
