"""nnlib/layers/conv.py: Conv2D against the loop reference of tests/cnn_reference.py (forward, dW, db, dx) over
strides, dilations, even kernels, odd sizes and both paddings; TensorFlow's "same" rule by hand; the default
initializers' fan-in; the first layer's skipped input gradient; the argument and shape errors. The gradient
checks, dtypes and round trips of every layer are in test_layers.py."""

import numpy as np
import pytest
from cnn_reference import conv2d, conv2d_grads

import nnlib as nn

CONFIGS = [  # (input (N, H, W, C), filters, kernel, strides, dilation, padding)
    ((2, 5, 5, 1), 2, (3, 3), (1, 1), (1, 1), "valid"),
    ((1, 7, 5, 3), 4, (2, 2), (2, 2), (1, 1), "same"),
    ((3, 6, 7, 2), 1, (2, 3), (1, 2), (1, 1), "same"),
    ((2, 7, 7, 2), 3, (3, 3), (2, 2), (1, 1), "same"),
    ((1, 8, 6, 1), 2, (3, 2), (1, 1), (2, 2), "valid"),
    ((2, 6, 6, 3), 2, (3, 3), (1, 1), (2, 1), "same"),
    ((1, 9, 8, 2), 3, (2, 2), (3, 3), (1, 1), "valid"),
    ((2, 5, 4, 1), 1, (1, 1), (2, 1), (1, 1), "same"),
]


def built(shape, filters, kernel, strides, dilation, padding, dtype=np.float64, seed=0, **kwargs):
    layer = nn.Conv2D(filters, kernel, strides=strides, padding=padding, dilation_rate=dilation, **kwargs)
    rng = np.random.default_rng(seed)
    layer.build(shape[1:], rng, dtype)
    if layer.bias is not None:
        layer.bias.value[...] = rng.uniform(-0.5, 0.5, layer.bias.shape)
    return layer


@pytest.mark.parametrize("shape, filters, kernel, strides, dilation, padding", CONFIGS)
def test_forward_and_backward_match_the_loop_reference(shape, filters, kernel, strides, dilation, padding):
    layer = built(shape, filters, kernel, strides, dilation, padding)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    y = layer.forward(x, training=True).copy()
    y_ref = conv2d(x, layer.weight.value, layer.bias.value, strides, dilation, padding)
    assert y.shape == y_ref.shape == (shape[0], *layer.output_shape)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g)
    dx_ref, dw_ref, db_ref = conv2d_grads(x, layer.weight.value, g, strides, dilation, padding)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, dw_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, db_ref, rtol=1e-12, atol=1e-12)


def test_same_padding_puts_the_odd_row_and_column_at_the_bottom_right():
    """TensorFlow's rule on a 4x4 image, 2x2 ones kernel, stride 1: output 4x4 (ceil(4/1)); total padding 1,
    all of it after, so y[i, j] sums x[i:i+2, j:j+2] with zeros beyond the last row and column."""
    layer = nn.Conv2D(1, 2, padding="same", use_bias=False, weight_init="ones")
    layer.build((4, 4, 1), np.random.default_rng(0), np.float64)
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    y = layer.forward(x)[0, :, :, 0]
    xp = np.zeros((5, 5))
    xp[:4, :4] = x[0, :, :, 0]
    expected = np.array([[xp[i:i + 2, j:j + 2].sum() for j in range(4)] for i in range(4)])
    np.testing.assert_array_equal(y, expected)
    assert y[3, 3] == 15.0 and y[0, 0] == 0 + 1 + 4 + 5
    # stride 2 on 5 pixels, kernel 2: ceil(5/2) = 3 outputs, total padding (3-1)*2 + 2 - 5 = 1, after
    assert nn.Conv2D(1, 2, strides=2, padding="same").compute_output_shape((5, 5, 1)) == (3, 3, 1)
    assert nn.Conv2D(1, 3, strides=2).compute_output_shape((5, 6, 1)) == (2, 2, 1)  # valid drops the rest


def test_weights_have_keras_layout_and_fan_in_init():
    layer = nn.Conv2D(64, (3, 2), activation="relu")
    layer.build((9, 9, 32), np.random.default_rng(0))
    assert layer.weight.shape == (3, 2, 32, 64) and layer.bias.shape == (64,)
    assert [p.name for p in layer.parameters()] == ["weight", "bias"]
    fan_in, fan_out = 3 * 2 * 32, 3 * 2 * 64
    assert abs(layer.weight.value.std() - np.sqrt(2 / fan_in)) < 0.05 * np.sqrt(2 / fan_in)  # He before ReLU
    glorot = nn.Conv2D(64, (3, 2))
    glorot.build((9, 9, 32), np.random.default_rng(0))
    limit = np.sqrt(6 / (fan_in + fan_out))
    assert np.abs(glorot.weight.value).max() <= limit and np.abs(glorot.weight.value).max() > 0.95 * limit
    no_bias = nn.Conv2D(4, 3, use_bias=False)
    no_bias.build((5, 5, 2), np.random.default_rng(0))
    assert no_bias.parameters() == [no_bias.weight] and no_bias.bias is None
    model = nn.Sequential([nn.Conv2D(8, 3, input_shape=(6, 6, 1)), nn.ReLU(), nn.Flatten(), nn.Dense(2)], seed=0)
    assert abs(model.layers[0].weight.value.std() - np.sqrt(2 / 9)) < 0.3 * np.sqrt(2 / 9)  # ReLU follows: He


def test_first_layer_skips_its_input_gradient():
    model = nn.Sequential([nn.Conv2D(2, 3, input_shape=(5, 5, 1), activation="tanh"), nn.Flatten(), nn.Dense(2)],
                          seed=0, dtype="float64")
    model.compile("sgd", "mse")
    conv = model.layers[0]
    assert conv.needs_input_grad is False
    x = np.random.default_rng(0).standard_normal((3, 5, 5, 1))
    model.forward(x, training=True)
    assert conv.backward(np.ones((3, 3, 3, 2))) is None
    dw = conv.weight.grad.copy()
    conv.needs_input_grad = True
    model.forward(x, training=True)
    dx = conv.backward(np.ones((3, 3, 3, 2)))
    assert dx.shape == x.shape
    np.testing.assert_allclose(conv.weight.grad, dw, rtol=1e-12)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"filters": 0, "kernel_size": 3}, ValueError, r"Conv2D: filters must be a positive int, got 0"),
    ({"filters": 2.5, "kernel_size": 3}, TypeError, r"Conv2D: filters must be a positive int"),
    ({"filters": 2, "kernel_size": (3, 0)}, ValueError, r"Conv2D: kernel_size must be a positive int, got 0"),
    ({"filters": 2, "kernel_size": (3, 3, 3)}, TypeError, r"kernel_size must be a positive int or a pair"),
    ({"filters": 2, "kernel_size": 3, "strides": 0}, ValueError, r"Conv2D: strides must be a positive int, got 0"),
    ({"filters": 2, "kernel_size": 3, "dilation_rate": -1}, ValueError, r"Conv2D: dilation_rate must be a positive"),
    ({"filters": 2, "kernel_size": 3, "padding": "full"}, ValueError,
     r"Conv2D: padding must be one of 'valid', 'same', got 'full'"),
    ({"filters": 2, "kernel_size": 3, "padding": 1}, TypeError, r"padding must be 'valid' or 'same', got 1"),
    ({"filters": 2, "kernel_size": 3, "use_bias": 1}, TypeError, r"use_bias must be True or False"),
    ({"filters": 2, "kernel_size": 3, "activation": "softmax"}, ValueError, r"softmax"),
    ({"filters": 2, "kernel_size": 5, "input_shape": (4, 4, 1)}, ValueError,
     r"Conv2D\(2, 5\): the kernel 5x5 is larger than its input of 4x4 \(samples of shape \(4, 4, 1\)\)"),
])
def test_arguments_validated(kwargs, error, match):
    with pytest.raises(error, match=match):
        nn.Conv2D(**kwargs)


def test_shapes_refused_at_build_and_in_forward():
    with pytest.raises(ValueError, match=r"the kernel 3x3 \(dilated to 5x5\) is larger than its input of 4x6"):
        nn.Sequential([nn.Conv2D(2, 3, dilation_rate=2)], seed=0).build((4, 6, 1))
    with pytest.raises(ValueError, match=r"takes images of shape \(H, W, C\), got samples of shape \(784,\): "
                                         r"reshape them first, e.g. nn.Reshape\(\(28, 28, 1\)\)"):
        nn.Sequential([nn.Conv2D(2, 3)], seed=0).build(784)
    with pytest.raises(ValueError, match=r"got samples of shape \(28, 28\): add the channel axis: "
                                         r"nn.Reshape\(\(28, 28, 1\)\) first, or x\[\.\.\., None\]"):
        nn.Sequential([nn.Conv2D(2, 3)], seed=0).build((28, 28))
    layer = nn.Conv2D(2, 3)
    layer.build((6, 6, 1), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"built for 1 input channels, got 3"):
        layer.forward(np.zeros((2, 6, 6, 3), np.float32))
    with pytest.raises(ValueError, match=r"takes images of shape \(H, W, C\), got samples of shape \(6, 6\)"):
        layer.forward(np.zeros((2, 6, 6), np.float32))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 6, 6, 1\), got \(2, 5, 6, 1\)"):
        layer.forward(np.zeros((2, 5, 6, 1), np.float32))
    # the model refuses 2-D images before anything changes
    model = nn.Sequential([nn.Conv2D(2, 3), nn.Flatten(), nn.Dense(2)], seed=0)
    model.compile("sgd", "softmax_cross_entropy")
    with pytest.raises(ValueError, match=r"add the channel axis"):
        model.fit(np.zeros((4, 6, 6)), np.zeros(4, int), verbose=0)
    assert not model.built


def test_float32_stays_float32_and_inputs_are_untouched():
    layer = nn.Conv2D(3, 2, strides=2, padding="same", activation="relu")
    layer.build((5, 5, 2), np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((4, 5, 5, 2)).astype(np.float32)
    x0 = x.copy()
    y = layer.forward(x, training=True)
    g = np.ones_like(y)
    dx = layer.backward(g)
    assert y.dtype == dx.dtype == layer.weight.grad.dtype == layer.bias.grad.dtype == np.float32
    np.testing.assert_array_equal(x, x0)
    assert (g == 1).all()


def test_config_round_trip_keeps_every_argument():
    layer = nn.Conv2D(5, (3, 2), strides=(2, 1), padding="SAME", dilation_rate=(1, 2), activation="leaky_relu",
                      use_bias=False, weight_init="he_uniform", input_shape=(9, 9, 2), name="c")
    config = layer.get_config()
    assert config["padding"] == "same" and config["kernel_size"] == [3, 2] and config["input_shape"] == [9, 9, 2]
    clone = nn.layers.get({"name": "conv2d", "config": config})
    assert clone.get_config() == config
    assert repr(layer) == "Conv2D(5, (3, 2), strides=(2, 1), padding='same', activation='leaky_relu', name='c')"
