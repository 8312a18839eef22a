"""nnlib/layers/pooling.py: MaxPooling2D (first-maximum gradient, ties, overlapping windows, "same" padding that
never wins), AveragePooling2D ("same" divides by the real entries), GlobalAveragePooling2D, against the loop
reference of tests/cnn_reference.py and by hand; argument and shape errors. The gradient checks, dtypes and
round trips of every layer are in test_layers.py."""

import numpy as np
import pytest
from cnn_reference import avg_pool, max_pool

import nnlib as nn

CONFIGS = [  # (input shape, pool, strides, padding)
    ((2, 6, 6, 3), (2, 2), None, "valid"),
    ((1, 7, 5, 2), (2, 2), None, "valid"),  # odd sizes: the last row/column dropped
    ((2, 7, 5, 2), (2, 2), None, "same"),
    ((1, 6, 7, 1), (3, 3), (2, 2), "valid"),  # overlapping windows
    ((2, 5, 5, 2), (3, 2), (1, 2), "same"),
    ((1, 4, 6, 2), (2, 3), (2, 3), "valid"),
    ((2, 9, 9, 1), (3, 3), (2, 2), "same"),
]


def built(cls, shape, pool, strides, padding):
    layer = cls(pool, strides, padding)
    layer.build(shape[1:], np.random.default_rng(0), np.float64)
    return layer


@pytest.mark.parametrize("shape, pool, strides, padding", CONFIGS)
@pytest.mark.parametrize("cls, reference", [(nn.MaxPooling2D, max_pool), (nn.AveragePooling2D, avg_pool)])
def test_pooling_matches_the_loop_reference(cls, reference, shape, pool, strides, padding):
    layer = built(cls, shape, pool, strides, padding)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    y = layer.forward(x, training=True).copy()
    y_ref, dx_for = reference(x, pool, strides, padding)
    assert y.shape == y_ref.shape == (shape[0], *layer.output_shape)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose(layer.backward(g), dx_for(g), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, pool, strides, padding", CONFIGS)
def test_max_pooling_ties_send_the_gradient_to_the_first_maximum(shape, pool, strides, padding):
    """Inputs of few distinct values (a flat background, zeros after ReLU): every window's gradient goes to
    its first maximum in row-major order, whole, as PyTorch's rule."""
    layer = built(nn.MaxPooling2D, shape, pool, strides, padding)
    x = np.random.default_rng(2).integers(0, 2, shape).astype(np.float64)
    y = layer.forward(x, training=True).copy()
    y_ref, dx_for = max_pool(x, pool, strides, padding)
    np.testing.assert_array_equal(y, y_ref)
    g = np.random.default_rng(3).standard_normal(y.shape)
    np.testing.assert_allclose(layer.backward(g), dx_for(g), rtol=1e-12, atol=1e-12)


def test_max_pooling_by_hand():
    """A 2x2 pool over a 4x4 channel of ties: each window's gradient lands on its top-left maximum only."""
    x = np.array([[1, 1, 0, 2], [0, 1, 2, 2], [3, 0, 5, 5], [3, 3, 5, 5]], float).reshape(1, 4, 4, 1)
    layer = nn.MaxPooling2D()
    y = layer.forward(x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[1, 2], [3, 5]])
    dx = layer.backward(np.array([[10.0, 20.0], [30.0, 40.0]]).reshape(1, 2, 2, 1))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[10, 0, 0, 20], [0, 0, 0, 0], [30, 0, 40, 0], [0, 0, 0, 0]])


def test_max_pooling_padding_never_wins():
    """"same" pads with cells that lose to any value: an all-negative image still pools to its own values."""
    x = -np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    layer = nn.MaxPooling2D(2, padding="same")
    y = layer.forward(x)[0, :, :, 0]
    np.testing.assert_array_equal(y, [[-1, -3], [-7, -9]])


def test_average_pooling_same_divides_by_the_real_entries():
    """Keras/TF: a 2x2 window hanging over the bottom/right padding of a 3x3 image is the mean of its real
    entries (2 or 1), not a sum over 4."""
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    layer = nn.AveragePooling2D(2, padding="same")
    y = layer.forward(x)[0, :, :, 0]
    np.testing.assert_allclose(y, [[(1 + 2 + 4 + 5) / 4, (3 + 6) / 2], [(7 + 8) / 2, 9.0]])
    dx = layer.backward(np.ones((1, 2, 2, 1)))[0, :, :, 0]
    np.testing.assert_allclose(dx, [[0.25, 0.25, 0.5], [0.25, 0.25, 0.5], [0.5, 0.5, 1.0]])


def test_global_average_pooling():
    x = np.random.default_rng(4).standard_normal((3, 4, 5, 2))
    layer = nn.GlobalAveragePooling2D()
    assert layer.compute_output_shape((4, 5, 2)) == (2,)
    np.testing.assert_allclose(layer.forward(x), x.mean(axis=(1, 2)), rtol=1e-12)
    g = np.random.default_rng(5).standard_normal((3, 2))
    np.testing.assert_allclose(layer.backward(g), np.broadcast_to(g[:, None, None, :] / 20, x.shape), rtol=1e-12)


def test_strides_default_to_the_pool_size_and_config_round_trips():
    layer = nn.MaxPooling2D((2, 3))
    assert layer.strides == (2, 3)
    assert layer.compute_output_shape((7, 7, 4)) == (3, 2, 4)
    config = nn.AveragePooling2D(3, 2, "SAME", name="p").get_config()
    assert config == {"name": "p", "pool_size": [3, 3], "strides": [2, 2], "padding": "same"}
    assert nn.layers.get({"name": "average_pooling2d", "config": config}).get_config() == config


@pytest.mark.parametrize("make, error, match", [
    (lambda: nn.MaxPooling2D(0), ValueError, r"MaxPooling2D: pool_size must be a positive int, got 0"),
    (lambda: nn.AveragePooling2D(2, strides=(1, 0)), ValueError, r"AveragePooling2D: strides must be a positive"),
    (lambda: nn.MaxPooling2D(2, padding="causal"), ValueError, r"MaxPooling2D: padding must be one of"),
    (lambda: nn.MaxPooling2D(2.0), TypeError, r"pool_size must be a positive int"),
    (lambda: nn.MaxPooling2D(5, input_shape=(4, 4, 1)), ValueError,
     r"MaxPooling2D\(5\): the pool 5x5 is larger than its input of 4x4 \(samples of shape \(4, 4, 1\)\)"),
    (lambda: nn.Sequential([nn.GlobalAveragePooling2D()]).build(16), ValueError, r"takes images of shape"),
    (lambda: nn.MaxPooling2D().forward(np.zeros((2, 4, 4))), ValueError, r"add the channel axis"),
])
def test_arguments_and_shapes_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()
