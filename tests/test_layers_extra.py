"""Dropout and BatchNormalization: hand values, numeric and symbolic gradient checks, training vs
inference, seeding, non-trainable state (get_state/set_state), configs; Dense's default initializer."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnlib as nn
from nnlib.layers import BatchNormalization, Dropout


class FrozenDropout(Dropout):
    """Dropout whose training mask is a fixed pattern, so finite differences see one function."""

    def _draw_mask(self, mask):
        keep = (np.arange(mask.size).reshape(mask.shape) % 3) != 1
        mask[...] = keep / (1.0 - self.rate)


def built(layer, d_in, seed=0, dtype=np.float64):
    layer.build(d_in, np.random.default_rng(seed), dtype)
    return layer


# -- Dropout ------------------------------------------------------------------------------------------
def test_dropout_inference_is_identity_and_a_copy(rng):
    x = rng.standard_normal((4, 5))
    d = built(Dropout(0.5), 5)
    y = d.forward(x, training=False)
    np.testing.assert_array_equal(y, x)
    assert y is not x
    np.testing.assert_array_equal(d.backward(np.ones_like(x)), np.ones_like(x))


def test_dropout_training_scales_kept_units_and_backward_uses_same_mask(rng):
    rate = 0.25
    x = rng.uniform(0.5, 1.5, (200, 50))
    x_before = x.copy()
    d = built(Dropout(rate), 50)
    y = d.forward(x, training=True)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-15)  # inverted dropout: 1/(1 - rate)
    assert abs((~kept).mean() - rate) < 0.02  # 10,000 draws: the dropped fraction is rate within 2 %
    g = rng.standard_normal(x.shape)
    dx = d.backward(g)
    np.testing.assert_allclose(dx, np.where(kept, g / (1 - rate), 0.0), rtol=1e-15)
    np.testing.assert_array_equal(x, x_before)  # the input is never written


def test_dropout_expected_value_is_kept(rng):
    d = built(Dropout(0.5), 1000)
    y = d.forward(np.ones((100, 1000)), training=True)
    assert y.mean() == pytest.approx(1.0, abs=0.01)


def test_dropout_rate_zero_is_identity_in_training(rng):
    x = rng.standard_normal((3, 4))
    d = built(Dropout(0.0), 4)
    np.testing.assert_array_equal(d.forward(x, training=True), x)


@pytest.mark.parametrize("rate,exc", [(-0.1, ValueError), (1.0, ValueError), (1.5, ValueError), ("0.5", TypeError),
                                      (None, TypeError), (True, TypeError), (float("nan"), ValueError)])
def test_dropout_rate_validated(rate, exc):
    match = "rate must lie in \\[0, 1\\)" if exc is ValueError else "rate must be a number"
    with pytest.raises(exc, match=match + f", got {rate!r}".replace("(", "\\(").replace(")", "\\)")) as info:
        Dropout(rate)
    assert type(info.value) is exc


def test_dropout_training_needs_build(rng):
    with pytest.raises(RuntimeError, match="not built"):
        Dropout(0.5).forward(rng.standard_normal((2, 3)), training=True)


@pytest.mark.parametrize("layer", [FrozenDropout(0.4), Dropout(0.0)], ids=["frozen_mask", "rate_0"])
def test_dropout_numeric_gradient_check(layer, rng):
    assert nn.check_gradients(layer, rng.standard_normal((4, 6))).ok


@pytest.mark.parametrize("layer", [Dropout(0.4), FrozenDropout(0.4), Dropout(0.0)], ids=["real", "frozen", "rate_0"])
def test_dropout_symbolic_gradient_check(layer):
    # The real Dropout's symbolic form uses the mask its next training pass draws (from a copy of its generator).
    result = nn.check_symbolic(layer, n=3, d_in=4)
    assert result.ok, result


def test_dropout_masks_follow_the_model_seed(rng):
    x = rng.standard_normal((16, 8)).astype(np.float32)

    def masks(seed):
        model = nn.Sequential([nn.Dense(8, input_dim=8), Dropout(0.5), nn.Dense(2)], seed=seed)
        drop = model.layers[1]
        return [(drop.forward(x, training=True) == 0).copy() for _ in range(3)]

    a, b, c = masks(1), masks(1), masks(2)
    for m1, m2 in zip(a, b):
        np.testing.assert_array_equal(m1, m2)
    assert not np.array_equal(a[0], a[1])  # a new mask every training pass
    assert not all(np.array_equal(m1, m3) for m1, m3 in zip(a, c))


def test_dropout_does_not_shift_other_layers_init():
    """Deriving the mask generator does not consume the model's init stream."""
    with_drop = nn.Sequential([nn.Dense(6, input_dim=4), Dropout(0.3), nn.Dense(3)], seed=7)
    without = nn.Sequential([nn.Dense(6, input_dim=4), nn.Dense(3)], seed=7)
    for a, b in zip(with_drop.get_weights(), without.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_dropout_state_round_trip_replays_masks(rng):
    d = built(Dropout(0.5), 10)
    x = rng.standard_normal((5, 10))
    d.forward(x, training=True)
    state = d.get_state()
    assert set(state) == {"rng_state"} and state["rng_state"].dtype == np.uint64
    first = d.forward(x, training=True).copy()
    d.forward(x, training=True)
    d.set_state(state)
    np.testing.assert_array_equal(d.forward(x, training=True), first)
    assert Dropout(0.5).get_state() == {}  # unbuilt: nothing yet


def test_dropout_fit_and_predict_in_a_model(rng):
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    model = nn.Sequential([nn.Dense(16, activation="relu"), Dropout(0.5), nn.Dense(2)], seed=0)
    model.compile("adam", "softmax_cross_entropy")
    model.fit(x, y, epochs=3, verbose=0, tol=None)
    np.testing.assert_array_equal(model.predict(x), model.predict(x))  # inference is deterministic


# -- BatchNormalization -------------------------------------------------------------------------------
def test_batchnorm_training_forward_by_hand():
    # column 0: [1, 3] -> mean 2, biased var 1 -> x_hat = [-1, 1] / sqrt(1 + eps)
    # column 1: [2, 2] -> mean 2, var 0 -> x_hat = [0, 0]
    bn = built(BatchNormalization(momentum=0.9, eps=1e-3), 2)
    bn.gamma.value[...] = [2.0, 1.0]
    bn.beta.value[...] = [0.5, -1.0]
    y = bn.forward(np.array([[1.0, 2.0], [3.0, 2.0]]), training=True)
    s = 1 / math.sqrt(1.001)
    np.testing.assert_allclose(y, [[0.5 - 2 * s, -1.0], [0.5 + 2 * s, -1.0]], rtol=1e-14)
    # Keras's update: running = 0.9 * running + 0.1 * batch, from (0, 1): mean [0.2, 0.2], var [1.0, 0.9]
    np.testing.assert_allclose(bn.moving_mean, [0.2, 0.2], rtol=1e-14)
    np.testing.assert_allclose(bn.moving_variance, [1.0, 0.9], rtol=1e-14)


def test_batchnorm_inference_uses_running_statistics(rng):
    bn = built(BatchNormalization(), 3)
    bn.set_state({"moving_mean": np.array([1.0, -1.0, 0.0]), "moving_variance": np.array([4.0, 1.0, 0.25])})
    bn.gamma.value[...] = [1.0, 2.0, -1.0]
    bn.beta.value[...] = [0.0, 1.0, 0.5]
    x = rng.standard_normal((5, 3))
    before = bn.get_state()
    y = bn.forward(x, training=False)
    sd = np.sqrt(np.array([4.0, 1.0, 0.25]) + 1e-3)
    np.testing.assert_allclose(y, (x - [1.0, -1.0, 0.0]) / sd * [1.0, 2.0, -1.0] + [0.0, 1.0, 0.5], rtol=1e-13)
    for k, v in bn.get_state().items():  # inference never moves the statistics
        np.testing.assert_array_equal(v, before[k])
    g = rng.standard_normal(x.shape)
    dx = bn.backward(g)
    np.testing.assert_allclose(dx, g * np.array([1.0, 2.0, -1.0]) / sd, rtol=1e-13)
    np.testing.assert_allclose(bn.gamma.grad, (g * (x - [1.0, -1.0, 0.0]) / sd).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.beta.grad, g.sum(axis=0), rtol=1e-13)


def test_batchnorm_defaults_are_keras():
    bn = BatchNormalization()
    assert (bn.momentum, bn.eps) == (0.99, 1e-3)
    built(bn, 4)
    np.testing.assert_array_equal(bn.gamma.value, np.ones(4))
    np.testing.assert_array_equal(bn.beta.value, np.zeros(4))
    np.testing.assert_array_equal(bn.moving_mean, np.zeros(4))
    np.testing.assert_array_equal(bn.moving_variance, np.ones(4))
    assert [p.name for p in bn.parameters()] == ["gamma", "beta"]


@pytest.mark.parametrize("n", [2, 5, 16])
def test_batchnorm_numeric_gradient_check(n, rng):
    bn = built(BatchNormalization(eps=1e-5), 4, seed=1)
    bn.gamma.value[...] = rng.uniform(0.5, 2.0, 4) * rng.choice([-1, 1], 4)
    bn.beta.value[...] = rng.standard_normal(4)
    result = nn.check_gradients(bn, rng.standard_normal((n, 4)) * 3 + 1)
    assert result.ok, result


def test_batchnorm_symbolic_gradient_check_training_mode():
    """sympy differentiates through the batch mean and variance."""
    bn = built(BatchNormalization(eps=1e-2), 3)
    bn.gamma.value[...] = [1.5, -0.5, 2.0]
    bn.beta.value[...] = [0.1, 0.2, -0.3]
    result = nn.check_symbolic(bn, n=3, d_in=3)
    assert result.ok, result


def test_batchnorm_training_gradient_is_centred(rng):
    """dx sums to zero over the batch, and (as eps -> 0) is orthogonal to x_hat: shifting or scaling a
    column of x changes nothing after normalization, so those directions carry no gradient."""
    bn = built(BatchNormalization(eps=1e-12), 3)
    x = rng.standard_normal((8, 3))
    bn.forward(x, training=True)
    dx = bn.backward(rng.standard_normal((8, 3)))
    np.testing.assert_allclose(dx.sum(axis=0), 0.0, atol=1e-12)
    x_hat = (x - x.mean(0)) / np.sqrt(x.var(0))
    np.testing.assert_allclose((dx * x_hat).sum(axis=0), 0.0, atol=1e-9)


def test_batchnorm_first_trainable_layer_skips_input_grad(rng):
    bn = built(BatchNormalization(), 2)
    bn.needs_input_grad = False
    bn.forward(rng.standard_normal((4, 2)), training=True)
    assert bn.backward(np.ones((4, 2))) is None
    np.testing.assert_allclose(bn.beta.grad, [4.0, 4.0])


def test_batchnorm_in_a_model_gradient_check_and_training(rng):
    layers = [nn.Dense(5, input_dim=4), BatchNormalization(), nn.ReLU(), Dropout(0.0), nn.Dense(3)]
    model = nn.Sequential(layers, seed=0)
    model.compile("sgd", "softmax_cross_entropy")
    x = rng.standard_normal((6, 4))
    y = rng.integers(0, 3, 6)
    assert nn.check_gradients(model, x, y).ok
    first = nn.Sequential([BatchNormalization(), nn.Dense(2)], seed=0)  # BN as the first trainable layer
    first.compile("sgd", "softmax_cross_entropy")
    first.build(4)
    assert first.layers[0].needs_input_grad is False
    assert nn.check_gradients(first, x, y % 2).ok
    model.fit(x.astype(np.float32), y, epochs=2, batch_size=3, verbose=0, tol=None)
    bn = model.layers[1]
    assert bn.moving_mean.dtype == np.float32 and not np.array_equal(bn.moving_mean, np.zeros(5))


def test_batchnorm_state_round_trip_and_validation():
    bn = built(BatchNormalization(), 3)
    state = {"moving_mean": np.array([1.0, 2.0, 3.0]), "moving_variance": np.array([0.5, 1.0, 2.0])}
    bn.set_state(state)
    got = bn.get_state()
    for k in state:
        np.testing.assert_array_equal(got[k], state[k])
    got["moving_mean"][0] = 99.0  # get_state returns copies
    assert bn.moving_mean[0] == 1.0
    with pytest.raises(ValueError, match="expected keys"):
        bn.set_state({"moving_mean": state["moving_mean"]})
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        bn.set_state({"moving_mean": np.zeros(4), "moving_variance": np.ones(3)})
    with pytest.raises(ValueError, match="finite"):
        bn.set_state({"moving_mean": np.array([np.nan, 0, 0]), "moving_variance": np.ones(3)})
    with pytest.raises(ValueError, match=">= 0"):
        bn.set_state({"moving_mean": np.zeros(3), "moving_variance": -np.ones(3)})


@pytest.mark.parametrize("kwargs,match", [
    ({"momentum": 1.0}, "momentum"), ({"momentum": -0.1}, "momentum"), ({"eps": 0.0}, "eps"),
    ({"eps": -1e-3}, "eps"), ({"eps": float("inf")}, "eps"), ({"momentum": "0.9"}, "momentum"),
])
def test_batchnorm_arguments_validated(kwargs, match):
    exc = TypeError if isinstance(next(iter(kwargs.values())), str) else ValueError
    with pytest.raises(exc, match=match):
        BatchNormalization(**kwargs)


def test_batchnorm_forward_before_build(rng):
    with pytest.raises(RuntimeError, match="not built"):
        BatchNormalization().forward(rng.standard_normal((2, 3)))


# -- shared: registry, configs, generic state -----------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: Dropout(0.3, name="d"), lambda: BatchNormalization(0.9, 1e-5),
                                  lambda: Dropout()], ids=["dropout", "batchnorm", "dropout_default"])
def test_config_round_trip(make):
    layer = make()
    config = layer.get_config()
    clone = nn.layers.get({"name": type(layer).registered_name, "config": config})
    assert type(clone) is type(layer) and clone.get_config() == config
    x = np.random.default_rng(5).standard_normal((4, 3))
    outs = []
    for obj in (layer, clone):
        obj.build(3, np.random.default_rng(7), np.float64)
        outs.append(obj.forward(x, training=True).copy())
    np.testing.assert_array_equal(outs[0], outs[1])


def test_registry_names():
    assert isinstance(nn.layers.get("dropout"), Dropout)
    assert isinstance(nn.layers.get("batch_normalization"), BatchNormalization)
    assert Dropout.registered_name == "dropout"
    assert BatchNormalization.registered_name == "batch_normalization"


def test_model_names_new_layers_readably():
    model = nn.Sequential([nn.Dense(4, input_dim=3), BatchNormalization(), nn.ReLU(), Dropout(0.2), nn.Dense(2)])
    assert [layer.name for layer in model.layers] == [
        "dense_0", "batch_normalization_1", "relu_2", "dropout_3", "dense_4"]
    lines = []
    model.summary(print_fn=lines.append)
    assert "batch_normalization_1 (BatchNormalization)" in lines[0]
    assert [p.name for p in model.layers[1].parameters()] == ["batch_normalization_1/gamma",
                                                              "batch_normalization_1/beta"]


def test_base_layer_state_is_empty_and_checked():
    relu = nn.ReLU()
    assert relu.get_state() == {}
    relu.set_state({})
    with pytest.raises(ValueError, match="expected keys"):
        relu.set_state({"x": np.zeros(1)})


def test_derivative_text_present():
    assert "mask" in Dropout.derivative_text
    assert "mean" in BatchNormalization.derivative_text


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


def test_dropout_rejects_an_invalid_generator_state():
    d = built(Dropout(0.5), 3)
    state = d.get_state()["rng_state"]
    for bad in [state.astype(np.float64), np.where(np.arange(6) == 2, 2, state).astype(np.uint64),
                np.where(np.arange(6) == 4, 7, state).astype(np.uint64), -np.ones(6, dtype=np.int64)]:
        with pytest.raises(ValueError, match="rng_state"):
            d.set_state({"rng_state": bad})
