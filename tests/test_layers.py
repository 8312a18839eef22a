"""nnlib/layers (the Layer contract of base.py) on every registered layer, through the one table of cases in
tests/layer_cases.py: forward/backward against hand-derived formulas, numeric and symbolic gradient checks
(training and inference mode), dtypes, input immutability, config and model-file round trips, the base
layer's empty state; and the guard that every layer in ``nnlib.layers.registry`` has a case. Each layer's
own behaviour is in test_dense.py, test_activations.py, test_dropout.py and test_normalization.py."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from layer_cases import CASES, IDS, InferenceMode, LayerCase, build, missing_cases, pre_activation

import nnlib as nn
from nnlib.layers import Layer, registry
from nnlib.registry import Registry

SHAPES = [(1, 1), (4, 3), (7, 5)]
REFERENCE_IDS = [i for i in IDS if CASES[i].reference is not None]


def reference(layer, case_id, x, g):
    """(y, dx, dW, db) from the formulas ``y = f(x W + b)``; ``dz = g f'(z)``; ``dW = x^T dz`` ..."""
    f, df = CASES[case_id].reference
    if not isinstance(layer, nn.Dense):
        return f(x), g * df(x), None, None
    w, b = layer.weight.value.astype(np.float64), layer.bias.value.astype(np.float64)
    z = x @ w + b
    dz = g * df(z)
    return f(z), dz @ w.T, x.T @ dz, dz.sum(axis=0)


def inputs_clear_of_kinks(layer, shape, seed, margin=1e-2):
    """Inputs in ±[0.2, 1.5] whose pre-activations are at least ``margin`` from 0 (the ReLU kink)."""
    rng = np.random.default_rng(seed)
    for _ in range(100):
        x = rng.uniform(0.2, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
        if np.abs(pre_activation(layer, x)).min() > margin:
            return x
    raise AssertionError("could not draw inputs clear of the kink")


def shape_for(case_id, shape):
    """The batch shape ``(n, *sample)`` a case is tested with for a wanted flat ``(n, d)``."""
    return (shape[0], *CASES[case_id].sample_shape(shape[1]))


# -- the table covers every registered layer ---------------------------------------------------


def test_every_registered_layer_has_a_case():
    """Every layer class in nnlib.layers.registry (aliases as their canonical name) is made by some case of
    tests/layer_cases.py, so every test below runs on it; and each case makes a registered layer."""
    missing = missing_cases(registry)
    assert missing == [], f"registered layers without a case in tests/layer_cases.py: {missing}"
    for case_id, case in CASES.items():
        layer = case.make()
        assert type(layer) is registry.lookup(type(layer).registered_name), case_id
        assert type(case.checkable()).registered_name == type(layer).registered_name, case_id


def test_the_guard_sees_a_layer_without_a_case():
    """missing_cases names a newly registered layer (and only it) until a case makes it; an alias alone
    adds nothing."""
    extra = Registry("layer", base=Layer)  # a copy of the real registry, which stays untouched
    extra._entries, extra._canonical = dict(registry._entries), dict(registry._canonical)
    assert missing_cases(extra) == []

    @extra.register("scaled", "scaled_alias")
    class Scaled(Layer):
        pass

    assert missing_cases(extra) == ["scaled"]
    assert missing_cases(extra, {**CASES, "scaled": LayerCase(Scaled)}) == []
    assert "scaled" not in registry


# -- forward and backward against formulas ----------------------------------------------


@pytest.mark.parametrize("case_id", REFERENCE_IDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_backward_match_formulas(case_id, shape):
    """forward == f(xW + b) (or f(x)); backward gives dx, dW, db of the chain rule written by hand."""
    shape = shape_for(case_id, shape)
    layer = build(case_id, shape[1:])
    x = inputs_clear_of_kinks(layer, shape, seed=1)
    g = np.random.default_rng(2).standard_normal((shape[0], *layer.output_shape))
    y_ref, dx_ref, dw_ref, db_ref = reference(layer, case_id, x, g)
    y = layer.forward(x, training=True).copy()
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-14)
    dx = layer.backward(g)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-14)
    if dw_ref is not None:
        np.testing.assert_allclose(layer.weight.grad, dw_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.bias.grad, db_ref, rtol=1e-12, atol=1e-14)


# -- gradient checks ---------------------------------------------------------------------


@pytest.mark.parametrize("case_id", IDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_numeric_gradient_check(case_id, shape):
    """Central differences in float64 agree with backward in training mode, for the input and every
    parameter (Dropout with rate > 0 through its fixed-mask variant; BatchNormalization through the batch
    statistics)."""
    shape = shape_for(case_id, shape)
    layer = build(case_id, shape[1:], fixed=True)
    x = inputs_clear_of_kinks(layer, shape, seed=3)
    result = nn.check_gradients(layer, x)
    assert result.ok, str(result)
    assert set(result.errors) == {"input"} | {p.name for p in layer.parameters()}


@pytest.mark.parametrize("case_id", IDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_inference_mode_gradient_check(case_id, shape):
    """The inference-mode backward (Dropout's identity, BatchNormalization's running statistics) agrees with
    central differences of the inference-mode forward pass."""
    shape = shape_for(case_id, shape)
    inner = build(case_id, shape[1:], seed=4)
    layer = InferenceMode(inner)
    x = inputs_clear_of_kinks(inner, shape, seed=5)
    result = nn.check_gradients(layer, x)
    assert result.ok, str(result)
    assert set(result.errors) == {"input"} | {p.name for p in inner.parameters()}


@settings(max_examples=25, deadline=None)
@given(case_id=st.sampled_from(IDS), n=st.integers(1, 6), d=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_numeric_gradient_check_random_shapes(case_id, n, d, seed):
    """The numeric check also passes for random shapes, weights and inputs (kinks avoided)."""
    shape = shape_for(case_id, (n, d))
    layer = build(case_id, shape[1:], seed=seed, fixed=True)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    assume(np.abs(pre_activation(layer, x)).min() > 1e-3)
    result = nn.check_gradients(layer, x, seed=seed)
    assert result.ok, str(result)


SYMBOLIC = [(i, False) for i in IDS] + [(i, True) for i in IDS if CASES[i].fixed is not None]


@pytest.mark.parametrize("case_id,fixed", SYMBOLIC, ids=[i + ("-fixed" if f else "") for i, f in SYMBOLIC])
def test_symbolic_gradient_check(case_id, fixed):
    """sympy's derivative of the layer's symbolic form agrees with backward (small unbuilt instance; the real
    Dropout's symbolic form uses the mask its next training pass draws, from a copy of its generator)."""
    case = CASES[case_id]
    layer = case.checkable() if fixed else case.make()
    result = nn.check_symbolic(layer, n=2, input_shape=case.sample_shape(3))
    assert result.ok, str(result)
    assert result.method == "symbolic"
    assert not layer.built


# -- dtype and immutability ----------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(case_id=st.sampled_from(IDS), dtype=st.sampled_from([np.float32, np.float64]),
       n=st.integers(1, 5), d=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_dtype_preserved_and_inputs_not_mutated(case_id, dtype, n, d, seed):
    """Outputs, input gradients and parameter grads keep the layer's dtype; x and g are never written."""
    shape = shape_for(case_id, (n, d))
    layer = build(case_id, shape[1:], dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal((n, *layer.output_shape)).astype(dtype)
    x0, g0 = x.copy(), g.copy()
    params0 = [p.value.copy() for p in layer.parameters()]
    y = layer.forward(x, training=True)
    assert y.dtype == dtype and y.shape == (n, *layer.output_shape)
    assert CASES[case_id].views or not np.shares_memory(y, x)
    dx = layer.backward(g)
    assert dx.dtype == dtype and dx.shape == x.shape
    assert CASES[case_id].views or not np.shares_memory(dx, g)
    for p, v0 in zip(layer.parameters(), params0):
        assert p.value.dtype == p.grad.dtype == dtype
        np.testing.assert_array_equal(p.value, v0)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(g, g0)


# -- config and model-file round trips ---------------------------------------------------------


@pytest.mark.parametrize("case_id", IDS)
def test_config_round_trip(case_id):
    """from_config(get_config()) rebuilds an equal layer (same config, same outputs for the same seed, at
    inference and in training, where Dropout's masks come from the same seed)."""
    layer = CASES[case_id].make()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == config
    via_registry = nn.layers.get({"name": type(layer).registered_name, "config": config})
    assert type(via_registry) is type(layer) and via_registry.get_config() == config
    x = np.random.default_rng(5).standard_normal(shape_for(case_id, (3, 4)))
    for training in (False, True):
        outs = []
        for obj in (layer, clone):
            obj.build(x.shape[1:], np.random.default_rng(7), np.float64)
            outs.append(obj.forward(x, training=training).copy())
        np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("case_id", IDS)
def test_model_file_round_trip(case_id, tmp_path):
    """A model holding the layer saves and loads with the same layer type, config, weights, non-trainable
    state and predictions, bit for bit."""
    case = CASES[case_id]
    shape = shape_for(case_id, (8, case.width))
    model = nn.Sequential([case.make(), nn.Flatten(), nn.Dense(2)], seed=3, dtype="float64")
    model.compile("adam", "mse")
    rng = np.random.default_rng(6)
    x, t = rng.standard_normal(shape), rng.standard_normal((8, 2))
    model.fit(x, t, epochs=2, batch_size=4, tol=None, verbose=0)  # moves weights, statistics, generators
    model.save(tmp_path / "m.nnlib")
    loaded = nn.load_model(tmp_path / "m.nnlib")
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    assert [a.get_config() for a in loaded.layers] == [b.get_config() for b in model.layers]
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(loaded.layers, model.layers):
        state = b.get_state()
        assert sorted(a.get_state()) == sorted(state)
        for key, value in state.items():
            np.testing.assert_array_equal(a.get_state()[key], value)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


# -- the base layer ------------------------------------------------------------------------------


def test_base_layer_state_is_empty_and_checked():
    relu = nn.ReLU()
    assert relu.get_state() == {}
    relu.set_state({})
    with pytest.raises(ValueError, match="expected keys"):
        relu.set_state({"x": np.zeros(1)})
