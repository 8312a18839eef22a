"""Tests for nnlib.layers: forward/backward against hand-derived formulas, gradient checks, dtypes,
input immutability, argument validation and config round trips, for every layer."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import nnlib as nn
from nnlib.layers import activations

ALPHA = 0.2  # LeakyReLU slope used throughout


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


# activation name -> (f(x), f'(x)) written directly from the definitions
ACT_REF = {
    "relu": (lambda x: np.where(x > 0, x, 0.0), lambda x: (x > 0).astype(float)),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.01 * x), lambda x: np.where(x > 0, 1.0, 0.01)),
    "sigmoid": (sig, lambda x: sig(x) * (1 - sig(x))),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "linear": (lambda x: x, np.ones_like),
}
LEAKY_REF = (lambda x: np.where(x > 0, x, ALPHA * x), lambda x: np.where(x > 0, 1.0, ALPHA))

# layer id -> (factory, reference (f, f') of its element-wise part)
LAYERS = {
    "dense": (lambda: nn.Dense(4), ACT_REF["linear"]),
    **{f"dense_{a}": ((lambda a=a: nn.Dense(4, activation=a)), ACT_REF[a]) for a in ACT_REF},
    "dense_leaky_alpha": (lambda: nn.Dense(4, activation=nn.LeakyReLU(ALPHA)), LEAKY_REF),
    "relu": (nn.ReLU, ACT_REF["relu"]),
    "leaky_relu": (lambda: nn.LeakyReLU(ALPHA), LEAKY_REF),
    "leaky_relu_default": (nn.LeakyReLU, ACT_REF["leaky_relu"]),
    "sigmoid": (nn.Sigmoid, ACT_REF["sigmoid"]),
    "tanh": (nn.Tanh, ACT_REF["tanh"]),
    "linear": (nn.Linear, ACT_REF["linear"]),
}
IDS = sorted(LAYERS)
SHAPES = [(1, 1), (4, 3), (7, 5)]


def build(layer_id, d_in, dtype=np.float64, seed=0):
    """A built layer; Dense gets a non-zero bias so the bias term is really exercised."""
    layer = LAYERS[layer_id][0]()
    rng = np.random.default_rng(seed)
    layer.build(d_in, rng, dtype)
    if isinstance(layer, nn.Dense):
        layer.bias.value[...] = rng.uniform(-0.5, 0.5, layer.bias.shape)
    return layer


def reference(layer, layer_id, x, g):
    """(y, dx, dW, db) from the formulas ``y = f(x W + b)``; ``dz = g f'(z)``; ``dW = x^T dz`` ..."""
    f, df = LAYERS[layer_id][1]
    if not isinstance(layer, nn.Dense):
        return f(x), g * df(x), None, None
    w, b = layer.weight.value.astype(np.float64), layer.bias.value.astype(np.float64)
    z = x @ w + b
    dz = g * df(z)
    return f(z), dz @ w.T, x.T @ dz, dz.sum(axis=0)


def pre_activation(layer, x):
    return x @ layer.weight.value + layer.bias.value if isinstance(layer, nn.Dense) else x


def inputs_clear_of_kinks(layer, shape, seed, margin=1e-2):
    """Inputs in ±[0.2, 1.5] whose pre-activations are at least ``margin`` from 0 (the ReLU kink)."""
    rng = np.random.default_rng(seed)
    for _ in range(100):
        x = rng.uniform(0.2, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
        if np.abs(pre_activation(layer, x)).min() > margin:
            return x
    raise AssertionError("could not draw inputs clear of the kink")


def test_every_activation_name_has_a_reference():
    """Every registered activation is covered by ACT_REF (so this file tests each one)."""
    assert {activations.canonical(n) for n in activations.names()} == set(ACT_REF)


# -- forward and backward against formulas ----------------------------------------------


@pytest.mark.parametrize("layer_id", IDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_backward_match_formulas(layer_id, shape):
    """forward == f(xW + b) (or f(x)); backward gives dx, dW, db of the chain rule written by hand."""
    layer = build(layer_id, shape[1])
    x = inputs_clear_of_kinks(layer, shape, seed=1)
    g = np.random.default_rng(2).standard_normal((shape[0], layer.output_dim))
    y_ref, dx_ref, dw_ref, db_ref = reference(layer, layer_id, x, g)
    y = layer.forward(x, training=True).copy()
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-14)
    dx = layer.backward(g)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-14)
    if dw_ref is not None:
        np.testing.assert_allclose(layer.weight.grad, dw_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.bias.grad, db_ref, rtol=1e-12, atol=1e-14)


def test_hand_values():
    """A few values worked out by hand: Dense(1) with W=[[2],[3]], b=[1]; LeakyReLU(0.2) at -5."""
    d = nn.Dense(1, bias_init="ones")
    d.build(2, np.random.default_rng(0), np.float64)
    d.weight.value[...] = [[2.0], [3.0]]
    np.testing.assert_array_equal(d.forward(np.array([[1.0, -1.0]])), [[0.0]])  # 2 - 3 + 1
    np.testing.assert_array_equal(d.backward(np.array([[4.0]])), [[8.0, 12.0]])
    np.testing.assert_array_equal(d.weight.grad, [[4.0], [-4.0]])
    np.testing.assert_array_equal(d.bias.grad, [4.0])
    leaky = nn.LeakyReLU(0.2)
    leaky.build(2, None, np.float64)
    np.testing.assert_allclose(leaky.forward(np.array([[-5.0, 3.0]])), [[-1.0, 3.0]])
    np.testing.assert_allclose(leaky.backward(np.array([[1.0, 1.0]])), [[0.2, 1.0]])


# -- gradient checks ---------------------------------------------------------------------


@pytest.mark.parametrize("layer_id", IDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_numeric_gradient_check(layer_id, shape):
    """Central differences in float64 agree with backward for the input and every parameter."""
    layer = build(layer_id, shape[1])
    x = inputs_clear_of_kinks(layer, shape, seed=3)
    result = nn.check_gradients(layer, x)
    assert result.ok, str(result)
    assert set(result.errors) == {"input"} | {p.name for p in layer.parameters()}


@settings(max_examples=25, deadline=None)
@given(layer_id=st.sampled_from(IDS), n=st.integers(1, 6), d=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_numeric_gradient_check_random_shapes(layer_id, n, d, seed):
    """The numeric check also passes for random shapes, weights and inputs (kinks avoided)."""
    layer = build(layer_id, d, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 1.5, (n, d)) * rng.choice([-1.0, 1.0], (n, d))
    assume(np.abs(pre_activation(layer, x)).min() > 1e-3)
    result = nn.check_gradients(layer, x, seed=seed)
    assert result.ok, str(result)


@pytest.mark.parametrize("layer_id", IDS)
def test_symbolic_gradient_check(layer_id):
    """sympy's derivative of the layer's symbolic form agrees with backward (small unbuilt instance)."""
    layer = LAYERS[layer_id][0]()
    result = nn.check_symbolic(layer, n=2, d_in=3)
    assert result.ok, str(result)
    assert result.method == "symbolic"
    assert not layer.built


# -- dtype and immutability ----------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(layer_id=st.sampled_from(IDS), dtype=st.sampled_from([np.float32, np.float64]),
       n=st.integers(1, 5), d=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_dtype_preserved_and_inputs_not_mutated(layer_id, dtype, n, d, seed):
    """Outputs, input gradients and parameter grads keep the layer's dtype; x and g are never written."""
    layer = build(layer_id, d, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    g = rng.standard_normal((n, layer.output_dim)).astype(dtype)
    x0, g0 = x.copy(), g.copy()
    params0 = [p.value.copy() for p in layer.parameters()]
    y = layer.forward(x, training=True)
    assert y.dtype == dtype and y.shape == (n, layer.output_dim)
    assert not np.shares_memory(y, x)
    dx = layer.backward(g)
    assert dx.dtype == dtype and dx.shape == x.shape
    assert not np.shares_memory(dx, g)
    for p, v0 in zip(layer.parameters(), params0):
        assert p.value.dtype == p.grad.dtype == dtype
        np.testing.assert_array_equal(p.value, v0)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(g, g0)


# -- Dense specifics -------------------------------------------------------------------------


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


# -- config round trips ----------------------------------------------------------------------

CONFIG_CASES = {
    **{i: LAYERS[i][0] for i in IDS},
    "dense_full": lambda: nn.Dense(3, input_dim=4, activation=nn.LeakyReLU(0.3),
                                   weight_init=nn.initializers.Normal(0.2), bias_init="ones", name="d"),
    "named_tanh": lambda: nn.Tanh(name="t"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_round_trip(case):
    """from_config(get_config()) rebuilds an equal layer (same config, same outputs for the same seed)."""
    layer = CONFIG_CASES[case]()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == config
    via_registry = nn.layers.get({"name": type(layer).registered_name, "config": config})
    assert via_registry.get_config() == config
    x = np.random.default_rng(5).standard_normal((3, 4))
    outs = []
    for obj in (layer, clone):
        obj.build(4, np.random.default_rng(7), np.float64)
        outs.append(obj.forward(x).copy())
    np.testing.assert_array_equal(outs[0], outs[1])
