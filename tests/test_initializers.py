"""Tests for nnlib.initializers: shapes, dtypes, empirical spread, reproducibility, and Dense's default choice."""

import math

import numpy as np
import pytest

import nnlib as nn
from nnlib import initializers

FAN_IN, FAN_OUT = 1000, 500
SHAPE = (FAN_IN, FAN_OUT)

# name -> (kind, expected std or uniform limit) for SHAPE, from the textbook formulas
EXPECTED = {
    "he_normal": ("normal", math.sqrt(2 / FAN_IN)),
    "he_uniform": ("uniform", math.sqrt(6 / FAN_IN)),
    "glorot_normal": ("normal", math.sqrt(2 / (FAN_IN + FAN_OUT))),
    "glorot_uniform": ("uniform", math.sqrt(6 / (FAN_IN + FAN_OUT))),
    "lecun_normal": ("normal", math.sqrt(1 / FAN_IN)),
    "zeros": ("constant", 0.0),
    "ones": ("constant", 1.0),
    "normal": ("normal", 0.05),
}


def check_spread(w: np.ndarray, kind: str, param: float) -> None:
    """Assert the sample ``w`` looks like the distribution (kind, std-or-limit), within a few percent."""
    w = w.astype(np.float64)
    if kind == "constant":
        np.testing.assert_array_equal(w, param)
        return
    std = param if kind == "normal" else param / math.sqrt(3)
    assert abs(w.mean()) < 0.01 * std
    assert w.std() == pytest.approx(std, rel=0.03)
    if kind == "uniform":
        assert np.abs(w).max() <= param * (1 + 1e-6)
        assert np.abs(w).max() > 0.99 * param


def test_every_registered_name_is_covered():
    """Each canonical initializer name has an expected distribution here (new ones must be added)."""
    canonical = {initializers.registry.canonical(n) for n in initializers.registry.names()}
    assert canonical == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_dtype_and_spread(name, dtype):
    """Output has the requested shape and dtype and the std/limits of the formula."""
    w = initializers.get(name)(SHAPE, np.random.default_rng(0), dtype)
    assert w.shape == SHAPE and w.dtype == dtype
    check_spread(w, *EXPECTED[name])


@pytest.mark.parametrize("std", [0.01, 0.3, 2])
def test_normal_std_argument(std):
    """Normal(std) draws with that std, whatever the shape; non-positive std is rejected."""
    w = initializers.get({"name": "normal", "config": {"std": std}})((800, 300), np.random.default_rng(1), np.float64)
    check_spread(w, "normal", std)
    assert initializers.Normal(std).get_config() == {"std": float(std)}


@pytest.mark.parametrize("bad", [0, -1.0, "0.1", True, float("nan")])
def test_normal_rejects_bad_std(bad):
    """std must be a positive number."""
    with pytest.raises(ValueError):
        initializers.Normal(bad)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reproducible_from_seed(name):
    """Same seed -> identical arrays; a different seed -> different arrays (for random initializers)."""
    init = initializers.get(name)
    a = init((20, 7), np.random.default_rng(42), np.float32)
    b = init((20, 7), np.random.default_rng(42), np.float32)
    np.testing.assert_array_equal(a, b)
    if EXPECTED[name][0] != "constant":
        assert not np.array_equal(a, init((20, 7), np.random.default_rng(43), np.float32))


def dense_weight_std(layers) -> float:
    model = nn.Sequential(layers, seed=0)
    assert model.built
    return float(model.layers[0].weight.value.astype(np.float64).std())


HE_STD = math.sqrt(2 / FAN_IN)
GLOROT_STD = math.sqrt(6 / (FAN_IN + FAN_OUT)) / math.sqrt(3)


@pytest.mark.parametrize("layers, std", [
    (lambda: [nn.Dense(FAN_OUT, input_dim=FAN_IN), nn.ReLU()], HE_STD),
    (lambda: [nn.Dense(FAN_OUT, input_dim=FAN_IN), nn.LeakyReLU(0.1)], HE_STD),
    (lambda: [nn.Dense(FAN_OUT, input_dim=FAN_IN, activation="relu")], HE_STD),
    (lambda: [nn.Dense(FAN_OUT, input_dim=FAN_IN)], GLOROT_STD),
    (lambda: [nn.Dense(FAN_OUT, input_dim=FAN_IN), nn.Tanh()], GLOROT_STD),
    (lambda: [nn.Dense(FAN_OUT, input_dim=FAN_IN, activation="sigmoid")], GLOROT_STD),
    (lambda: [nn.Dense(FAN_OUT, input_dim=FAN_IN), nn.Dense(3)], GLOROT_STD),
], ids=["relu_after", "leaky_after", "relu_inside", "alone", "tanh_after", "sigmoid_inside", "dense_after"])
def test_dense_default_init_follows_activation(layers, std):
    """Dense with no weight_init uses He (std sqrt(2/fan_in)) before ReLU, Glorot (sqrt(2/(in+out))) otherwise."""
    assert abs(HE_STD - GLOROT_STD) / GLOROT_STD > 0.2  # the two are distinguishable at 3 %
    assert dense_weight_std(layers()) == pytest.approx(std, rel=0.03)


def test_dense_explicit_init_wins():
    """An explicit weight_init overrides the default even before ReLU."""
    std = dense_weight_std([nn.Dense(FAN_OUT, input_dim=FAN_IN, weight_init="lecun_normal"), nn.ReLU()])
    assert std == pytest.approx(math.sqrt(1 / FAN_IN), rel=0.03)
