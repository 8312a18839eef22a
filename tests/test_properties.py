"""Property-based tests (issue 5): for random shapes and values every layer of the table in
tests/layer_cases.py (every registered layer) keeps its dtype, never mutates its inputs and passes the
gradient check; every loss is finite for extreme logits; optimizers leave a parameter with zero gradient
exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from layer_cases import CASES, IDS, build, pre_activation

import nnlib as nn
from nnlib.parameter import Parameter

PROPS = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

shapes = st.tuples(st.integers(1, 6), st.integers(1, 5))
values = st.floats(-5, 5, allow_nan=False, width=32)
AWAY_FROM_0 = st.builds(lambda m, sign: m * sign, st.floats(1e-3, 3), st.sampled_from([-1.0, 1.0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer_id", IDS)
@PROPS
@given(data=st.data(), shape=shapes, seed=st.integers(0, 2**16))
def test_layer_keeps_dtype_and_never_mutates_inputs(layer_id, dtype, data, shape, seed):
    n, sample = shape[0], CASES[layer_id].sample_shape(shape[1])
    layer = build(layer_id, sample, dtype, seed, spread=1.0)
    x = data.draw(hnp.arrays(dtype, (n, *sample), elements=values))
    params_before = [p.value.copy() for p in layer.parameters()]
    x_before = x.copy()
    y = layer.forward(x, training=True)
    assert y.dtype == dtype and y.shape[0] == n
    g = data.draw(hnp.arrays(dtype, y.shape, elements=values))
    g_before = g.copy()
    dx = layer.backward(g)
    assert dx.dtype == dtype and dx.shape == x.shape
    assert all(p.grad.dtype == dtype for p in layer.parameters())
    np.testing.assert_array_equal(x, x_before)  # forward and backward leave x ...
    np.testing.assert_array_equal(g, g_before)  # ... and the incoming gradient untouched
    for p, before in zip(layer.parameters(), params_before):
        np.testing.assert_array_equal(p.value, before)  # and only an optimizer changes parameters
    if not CASES[layer_id].views:  # Flatten and Reshape hand back reshaped views, as NumPy does
        assert not np.shares_memory(dx, x) and not np.shares_memory(dx, g) and not np.shares_memory(y, x)


@pytest.mark.parametrize("layer_id", IDS)
@PROPS
@given(data=st.data(), shape=shapes, seed=st.integers(0, 2**16))
def test_layer_passes_gradient_check(layer_id, data, shape, seed):
    """In training mode: Dropout with rate > 0 through its fixed-mask variant, BatchNormalization through the
    batch statistics."""
    n, sample = shape[0], CASES[layer_id].sample_shape(shape[1])
    layer = build(layer_id, sample, np.float64, seed, spread=1.0, fixed=True)
    kinked = CASES[layer_id].kinked
    x = data.draw(hnp.arrays(np.float64, (n, *sample), elements=AWAY_FROM_0 if kinked else st.floats(-3, 3)))
    if kinked:  # eps = 1e-6 moves a pre-activation by at most |x| or |W| times eps, far less than 1e-3
        assume(np.abs(pre_activation(layer, x)).min() >= 1e-3)
    result = nn.check_gradients(layer, x, eps=1e-6, seed=seed)
    assert result.ok, str(result)
    assert set(result.errors) == {"input", *(p.name for p in layer.parameters())}


EXTREME = st.sampled_from([-1e4, 1e4, -9999.5, 0.0, 1e4 - 1]) | st.floats(-1e4, 1e4, width=32)
LOSSES = ["softmax_cross_entropy", "mse", "binary_cross_entropy"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss_name", LOSSES)
@PROPS
@given(data=st.data(), n=st.integers(1, 6), c=st.integers(2, 5))
def test_loss_finite_for_extreme_logits(loss_name, dtype, data, n, c):
    loss = nn.losses.get(loss_name)
    z = data.draw(hnp.arrays(dtype, (n, c), elements=EXTREME))
    if loss_name == "softmax_cross_entropy":
        y = data.draw(hnp.arrays(np.intp, (n,), elements=st.integers(0, c - 1)))
    elif loss_name == "binary_cross_entropy":
        y = data.draw(hnp.arrays(dtype, (n, c), elements=st.sampled_from([0.0, 1.0, 0.5])))
    else:
        y = data.draw(hnp.arrays(dtype, (n, c), elements=st.floats(-1, 1, width=32)))
    z_before = z.copy()
    value = loss.forward(z, y)
    grad = loss.backward()
    assert np.isfinite(value) and value >= 0
    assert grad.shape == z.shape and grad.dtype == dtype and np.isfinite(grad).all()
    np.testing.assert_array_equal(z, z_before)


def test_loss_extremes_worked_by_hand():
    """The property above, pinned at one point: a confident wrong answer costs the logit gap."""
    sce = nn.SoftmaxCrossEntropy()
    assert sce.forward(np.array([[1e4, -1e4]], dtype=np.float32), np.array([1])) == 2e4
    assert sce.forward(np.array([[1e4, -1e4]]), np.array([0])) == 0.0
    bce = nn.BinaryCrossEntropy()
    assert bce.forward(np.array([[1e4]]), np.array([[0.0]])) == 1e4


OPTIMIZERS = {
    "sgd": lambda lr: nn.SGD(lr=lr),
    "momentum": lambda lr: nn.Momentum(lr=lr, momentum=0.9),
    "nesterov": lambda lr: nn.Momentum(lr=lr, momentum=0.5, nesterov=True),
    "adam": lambda lr: nn.Adam(lr=lr),
}


@pytest.mark.parametrize("packed", [True, False], ids=["model_params", "loose_params"])
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@PROPS
@given(data=st.data(), d_in=st.integers(1, 4), units=st.integers(1, 4), lr=st.floats(1e-4, 10),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_optimizer_leaves_zero_gradient_entries_alone(opt_name, packed, data, d_in, units, lr, dtype):
    if packed:  # views into one flat buffer, stepped with whole-buffer operations
        model = nn.Sequential([nn.Dense(units, input_dim=d_in), nn.Dense(2)], seed=1, dtype=dtype)
        params = model.parameters()
    else:
        params = [Parameter(data.draw(hnp.arrays(dtype, s, elements=values)), f"p{i}")
                  for i, s in enumerate([(d_in, units), (units,)])]
    masks = []
    for p in params:
        p.grad[...] = data.draw(hnp.arrays(dtype, p.shape, elements=values))
        mask = data.draw(hnp.arrays(bool, p.shape))
        p.grad[mask] = 0.0
        masks.append(mask | (p.grad == 0))
    assume(any(m.any() for m in masks))
    before = [p.value.copy() for p in params]
    OPTIMIZERS[opt_name](lr).step(params)  # the first step, weight_decay 0
    for p, old, zero in zip(params, before, masks):
        np.testing.assert_array_equal(p.value[zero], old[zero])
        assert p.value.dtype == dtype
        if lr >= 1e-2:  # sanity: a large enough gradient does move its entry (by >= 5e-3, many ulps)
            big = np.abs(p.grad) >= 0.5
            assert (p.value[big] != old[big]).all()
