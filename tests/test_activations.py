"""nnlib/layers/activations.py: ReLU, LeakyReLU, Sigmoid, Tanh, Linear. Every activation has a reference in
tests/layer_cases.py (whose table runs the formula, gradient, dtype and round-trip tests of test_layers.py on
each); here LeakyReLU's hand values and alpha checks, the activation names, and ReLU's derivative at exactly 0."""

import numpy as np
import pytest
from layer_cases import ACT_REF

import nnlib as nn
from nnlib.layers import activations


def test_every_activation_name_has_a_reference():
    """Every registered activation is covered by ACT_REF (so this file tests each one)."""
    assert {activations.canonical(n) for n in activations.names()} == set(ACT_REF)


def test_leaky_relu_hand_values():
    """LeakyReLU(0.2) at -5 and 3, worked out by hand."""
    leaky = nn.LeakyReLU(0.2)
    leaky.build(2, None, np.float64)
    np.testing.assert_allclose(leaky.forward(np.array([[-5.0, 3.0]])), [[-1.0, 3.0]])
    np.testing.assert_allclose(leaky.backward(np.array([[1.0, 1.0]])), [[0.2, 1.0]])


def test_unknown_activation_lists_valid_names():
    """An unknown activation name is a ValueError listing every valid one."""
    with pytest.raises(ValueError) as info:
        nn.Dense(3, activation="relu6")
    for name in ACT_REF:
        assert name in str(info.value)


@pytest.mark.parametrize("alpha,exc", [(-0.1, ValueError), (1, ValueError), (1.5, ValueError),
                                       (float("nan"), ValueError), ("0.1", TypeError), (True, TypeError)])
def test_leaky_relu_alpha_range(alpha, exc):
    """LeakyReLU needs a number alpha in [0, 1)."""
    with pytest.raises(exc, match=r"alpha must (lie in \[0, 1\)|be a number), got") as info:
        nn.LeakyReLU(alpha)
    assert type(info.value) is exc


def test_leaky_relu_alpha_zero_is_relu(rng):
    """alpha=0 is allowed and equals ReLU."""
    x = rng.standard_normal((3, 4))
    leaky = nn.LeakyReLU(0)
    leaky.build(4, rng, np.float64)
    np.testing.assert_array_equal(leaky.forward(x), np.maximum(x, 0))


# -- the derivative at exactly 0 (PyTorch's rule: relu'(0) = 0) ----------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_at_exact_zeros_passes_no_gradient(dtype):
    """At inputs that are exactly 0 (either sign) ReLU outputs 0 and its backward passes exactly 0, as
    PyTorch's relu does; elsewhere it passes the gradient where x > 0."""
    x = np.array([[0.0, -0.0, 1.5, -2.0], [0.0, 3.0, -0.0, 0.0]], dtype=dtype)
    relu = nn.ReLU()
    relu.build(4, None, dtype)
    y = relu.forward(x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, [[0.0, 0.0, 1.5, 0.0], [0.0, 3.0, 0.0, 0.0]])
    dx = relu.backward(np.full(x.shape, 7.0, dtype))
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, [[0.0, 0.0, 7.0, 0.0], [0.0, 7.0, 0.0, 0.0]])
    np.testing.assert_array_equal(dx[x == 0], 0.0)  # the five zeros, exactly


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_relu_at_exact_zero_pre_activations(dtype):
    """Inside Dense(activation="relu") a pre-activation of exactly 0 (zero input, zero bias) passes no
    gradient to the bias or the input either; LeakyReLU's slope at exactly 0 is alpha."""
    d = nn.Dense(3, activation="relu")
    d.build(2, np.random.default_rng(0), dtype)
    x = np.zeros((2, 2), dtype)
    np.testing.assert_array_equal(d.forward(x, training=True), np.zeros((2, 3)))
    dx = d.backward(np.ones((2, 3), dtype))
    np.testing.assert_array_equal(d.bias.grad, np.zeros(3))
    np.testing.assert_array_equal(d.weight.grad, np.zeros((2, 3)))
    np.testing.assert_array_equal(dx, np.zeros((2, 2)))
    leaky = nn.LeakyReLU(0.25)
    leaky.build(2, None, dtype)
    leaky.forward(np.array([[0.0, -0.0]], dtype))
    np.testing.assert_array_equal(leaky.backward(np.array([[4.0, 4.0]], dtype)), [[1.0, 1.0]])
