"""nnlib/layers/normalization.py: BatchNormalization's training forward by hand (batch statistics, Keras's
running update), inference with the running statistics, Keras's defaults, gradient checks through the batch
statistics with random gamma and beta (numeric, symbolic, inside a model, as the first trainable layer), the
centred training gradient, the state (round trip and validation), the argument checks, the registry names
and derivative text. (The table-driven checks of test_layers.py run on it too.)"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

import nnlib as nn
from nnlib.layers import BatchNormalization, Dropout


def built(layer, d_in, seed=0, dtype=np.float64):
    layer.build(d_in, np.random.default_rng(seed), dtype)
    return layer


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


def test_registry_names():
    assert isinstance(nn.layers.get("batch_normalization"), BatchNormalization)
    assert isinstance(nn.layers.get("batch_norm"), BatchNormalization)  # the alias
    assert BatchNormalization.registered_name == "batch_normalization"


def test_derivative_text_present():
    assert "mean" in BatchNormalization.derivative_text


def test_batchnorm_on_images_normalizes_each_channel_over_n_h_w(rng):
    """(N, H, W, C): one gamma, beta and pair of statistics per channel; training mode normalizes each channel
    over every batch entry and position (Keras's axis=-1, PyTorch's BatchNorm2d)."""
    bn = nn.BatchNormalization(momentum=0.5)
    bn.build((3, 4, 2), rng, np.float64)
    assert bn.gamma.shape == bn.beta.shape == bn.moving_mean.shape == (2,)
    x = rng.standard_normal((5, 3, 4, 2)) * [1.0, 3.0] + [2.0, -1.0]
    y = bn.forward(x, training=True)
    assert y.shape == x.shape
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + bn.eps), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bn.moving_mean, 0.5 * mean, rtol=1e-12)
    np.testing.assert_allclose(bn.moving_variance, 0.5 + 0.5 * var, rtol=1e-12)
    flat = nn.BatchNormalization(momentum=0.5)
    flat.build(2, rng, np.float64)
    g = rng.standard_normal(x.shape)
    dx = bn.backward(g)
    np.testing.assert_allclose(flat.forward(x.reshape(-1, 2), training=True), y.reshape(-1, 2), rtol=1e-12)
    np.testing.assert_allclose(flat.backward(g.reshape(-1, 2)), dx.reshape(-1, 2), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(flat.gamma.grad, bn.gamma.grad, rtol=1e-12)


class _ThreadReplicas:
    """``replica_sum`` for layers on threads, one per replica: sums in place, the same order everywhere.

    A replica that never reaches the barrier breaks it after 60 s (BrokenBarrierError), rather than hang."""

    def __init__(self, count: int) -> None:
        self.barrier, self.slots = threading.Barrier(count, timeout=60), [None] * count

    def summer(self, rank: int):
        def replica_sum(values: np.ndarray) -> None:
            self.slots[rank] = values.copy()
            self.barrier.wait()
            total = np.sum(self.slots, axis=0)
            self.barrier.wait()
            values[...] = total
        return replica_sum


@pytest.mark.parametrize("shape, split", [((10, 3), [6, 4]), ((5, 3, 2, 4), [2, 0, 3]), ((3, 2), [1, 1, 1])])
def test_synchronized_batchnorm_on_slices_equals_one_layer_on_the_batch(shape, split, rng):
    """Replicas holding row slices of a batch (one may be empty), with replica_sum set, give the outputs,
    input gradients, running statistics and summed parameter gradients of one layer on the whole batch."""
    x, g = rng.normal(size=shape), rng.normal(size=shape)
    whole = BatchNormalization(momentum=0.5)
    whole.build(shape[1:], np.random.default_rng(0), np.float64)
    whole.gamma.value[...] = rng.normal(size=shape[-1])
    whole.needs_input_grad = True
    y, dx = whole.forward(x, training=True).copy(), whole.backward(g).copy()
    replicas = _ThreadReplicas(len(split))
    layers, results = [], [None] * len(split)
    for rank in range(len(split)):
        layer = BatchNormalization(momentum=0.5)
        layer.build(shape[1:], np.random.default_rng(0), np.float64)
        layer.gamma.value[...] = whole.gamma.value
        layer.needs_input_grad, layer.replica_sum = True, replicas.summer(rank)
        layers.append(layer)
    bounds = np.cumsum([0, *split])

    def run(rank: int) -> None:
        rows = slice(bounds[rank], bounds[rank + 1])
        out = layers[rank].forward(x[rows], training=True).copy()
        results[rank] = (out, layers[rank].backward(g[rows]).copy())

    threads = [threading.Thread(target=run, args=(r,)) for r in range(len(split))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose(np.concatenate([r[0] for r in results]), y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([r[1] for r in results]), dx, rtol=1e-10, atol=1e-12)
    for name in ("gamma", "beta"):
        total = sum(getattr(layer, name).grad for layer in layers)
        np.testing.assert_allclose(total, getattr(whole, name).grad, rtol=1e-12, atol=1e-12)
    for layer in layers:
        for key, value in whole.get_state().items():
            np.testing.assert_allclose(layer.get_state()[key], value, rtol=1e-12)
