"""nnlib/layers/dropout.py: inverted dropout in training (kept units scaled, backward through the same mask,
the expected value kept), the identity at inference and at rate 0, the rate check, masks seeded by the model
and not shifting the other layers' initial weights, the generator state (round trip and validation), the
registry name and derivative text. (Gradient checks with a fixed mask, in inference mode and symbolically,
and the config and file round trips, run with every other layer in test_layers.py.)"""

from __future__ import annotations

import numpy as np
import pytest

import nnlib as nn
from nnlib.layers import Dropout


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


def test_dropout_rejects_an_invalid_generator_state():
    d = built(Dropout(0.5), 3)
    state = d.get_state()["rng_state"]
    for bad in [state.astype(np.float64), np.where(np.arange(6) == 2, 2, state).astype(np.uint64),
                np.where(np.arange(6) == 4, 7, state).astype(np.uint64), -np.ones(6, dtype=np.int64)]:
        with pytest.raises(ValueError, match="rng_state"):
            d.set_state({"rng_state": bad})


def test_dropout_fit_and_predict_in_a_model(rng):
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    model = nn.Sequential([nn.Dense(16, activation="relu"), Dropout(0.5), nn.Dense(2)], seed=0)
    model.compile("adam", "softmax_cross_entropy")
    model.fit(x, y, epochs=3, verbose=0, tol=None)
    np.testing.assert_array_equal(model.predict(x), model.predict(x))  # inference is deterministic


def test_registry_name():
    assert isinstance(nn.layers.get("dropout"), Dropout)
    assert Dropout.registered_name == "dropout"


def test_derivative_text_present():
    assert "mask" in Dropout.derivative_text
