"""nnlib/layers/reshape.py: Flatten's (H, W, C) order, Reshape's target shapes (with -1), their shape checks
and errors, and both inside models. The gradient checks, dtypes and round trips are in test_layers.py."""

import numpy as np
import pytest

import nnlib as nn


def test_flatten_is_row_major_over_h_w_c_as_keras():
    """Feature k of a flattened (H, W, C) image is x[h, w, c] with k = (h W + w) C + c (Keras, channels last)."""
    x = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    layer = nn.Flatten()
    assert layer.compute_output_shape((3, 4, 2)) == (24,)
    y = layer.forward(x)
    assert y.shape == (2, 24) and y.dtype == np.float32
    for h, w, c in [(0, 0, 1), (1, 2, 0), (2, 3, 1)]:
        assert y[1, (h * 4 + w) * 2 + c] == x[1, h, w, c]
    g = np.random.default_rng(0).standard_normal((2, 24)).astype(np.float32)
    dx = layer.backward(g)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx.reshape(2, -1), g)


def test_reshape_adds_the_channel_axis_and_infers_minus_one():
    x = np.random.default_rng(1).standard_normal((5, 784))
    np.testing.assert_array_equal(nn.Reshape((28, 28, 1)).forward(x), x.reshape(5, 28, 28, 1))
    assert nn.Reshape((-1, 7)).compute_output_shape((784,)) == (112, 7)
    assert nn.Reshape([4, -1]).compute_output_shape((2, 6)) == (4, 3)
    layer = nn.Reshape((2, -1))
    layer.build((6,), np.random.default_rng(0))
    assert layer.output_shape == (2, 3)
    g = np.arange(30.0).reshape(5, 2, 3)
    layer.forward(np.zeros((5, 6), np.float32))
    np.testing.assert_array_equal(layer.backward(g), g.reshape(5, 6))


@pytest.mark.parametrize("target, shape, match", [
    ((28, 28, 1), (700,), r"Reshape\(\(28, 28, 1\).*\) cannot reshape samples of shape \(700,\) \(700 numbers\) "
                          r"into \(28, 28, 1\) \(784 numbers\)"),
    ((-1, 3), (7,), r"7 is not a multiple of 3"),
])
def test_reshape_refuses_a_size_that_does_not_match(target, shape, match):
    with pytest.raises(ValueError, match=match):
        nn.Reshape(target).compute_output_shape(shape)
    model = nn.Sequential([nn.Reshape(target), nn.Flatten(), nn.Dense(2)], seed=0)
    with pytest.raises(ValueError, match=match):
        model.build(shape)
    assert not model.built and all(not layer.built for layer in model.layers)  # checked before anything built


@pytest.mark.parametrize("target, error, match", [
    ((-1, -1), ValueError, r"at most one -1"),
    ((0, 3), ValueError, r"target_shape must be a non-empty tuple of positive ints, got \(0, 3\)"),
    ((2.0, 3), TypeError, r"target_shape must be a tuple of positive ints"),
    (12, TypeError, r"target_shape must be a tuple of ints, got 12"),
    ((), ValueError, r"non-empty"),
])
def test_reshape_arguments_validated(target, error, match):
    with pytest.raises(error, match=match):
        nn.Reshape(target)


def test_built_layers_refuse_other_sample_shapes():
    layer = nn.Flatten()
    layer.build((4, 4, 2), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"Flatten\(\) expected input of shape \(N, 4, 4, 2\), got \(3, 4, 4, 3\)"):
        layer.forward(np.zeros((3, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"declared with input_shape=\(4, 4, 2\), got samples of shape \(4, 4\)"):
        nn.Flatten(input_shape=(4, 4, 2)).compute_output_shape((4, 4))


def test_a_model_of_images_builds_from_input_shape_or_the_data(capsys):
    """input_shape= on the first layer builds at once; without it the first fit builds from x.shape[1:];
    summary shows (None, 4, 4, 1)-style shapes; predict returns the output shape."""
    declared = nn.Sequential([nn.Reshape((4, 4, 1), input_shape=(16,)), nn.Flatten(), nn.Dense(3)], seed=0)
    assert declared.built and declared.input_shape == (16,) and declared.output_shape == (3,)
    declared.summary()
    out = capsys.readouterr().out
    assert "(None, 4, 4, 1)" in out and "(None, 16)" in out
    model = nn.Sequential([nn.BatchNormalization(), nn.Flatten(), nn.Dense(3)], seed=0)
    model.compile("adam", "softmax_cross_entropy")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 4, 4, 2)), rng.integers(0, 3, 20)
    model.fit(x, y, epochs=1, verbose=0)
    assert model.input_shape == (4, 4, 2) and model.input_dim is None and model.output_dim == 3
    assert model.layers[0].gamma.shape == (2,)  # per channel
    assert model.predict(x[:5]).shape == (5, 3)
    with pytest.raises(ValueError, match=r"x has samples of shape \(4, 4\), the model expects \(4, 4, 2\)"):
        model.predict(x[..., 0])
    one_channel = nn.Sequential([nn.Flatten(input_shape=(4, 4, 1)), nn.Dense(3)], seed=0)
    with pytest.raises(ValueError, match=r"add the channel axis with x\[\.\.\., None\]"):
        one_channel.predict(x[..., 0])
    assert one_channel.predict(x[..., :1]).shape == (20, 3)
    build_call = nn.Sequential([nn.Flatten(), nn.Dense(2)], seed=0)
    build_call.build((28, 28, 1))
    assert build_call.layers[1].weight.shape == (784, 2)


def test_dense_on_images_suggests_flatten():
    with pytest.raises(ValueError, match=r"takes flat samples of shape \(D,\), got samples of shape \(28, 28\): "
                                         r"put nn.Flatten\(\) before it"):
        nn.Sequential([nn.Dense(3)], seed=0).build((28, 28))
    with pytest.raises(ValueError, match=r"put nn.Flatten\(\) before it"):
        nn.Dense(3, input_shape=(28, 28))
    layer = nn.Dense(3)
    layer.build(4, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"takes flat inputs of shape \(N, 4\), got \(2, 2, 4\): put nn.Flatten"):
        layer.forward(np.zeros((2, 2, 4), np.float32))
    assert nn.Dense(3, input_shape=(4,)).get_config()["input_dim"] == 4  # Keras's spelling, Dense's config
    with pytest.raises(ValueError, match="not both"):
        nn.Dense(3, input_dim=4, input_shape=(4,))


def test_image_outputs_need_flatten_before_a_loss():
    model = nn.Sequential([nn.Reshape((2, 2), input_shape=(4,))], seed=0)
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"outputs have shape \(None, 2, 2\); the losses take \(N, D\) outputs: "
                                         r"end the model with nn.Flatten\(\)"):
        model.fit(np.zeros((3, 4)), np.zeros((3, 4)), verbose=0)


def test_input_shape_validated():
    for bad, error in [((28, 0), ValueError), ((28.0, 28), TypeError), ("28", TypeError), ((), ValueError)]:
        with pytest.raises(error, match="input_shape"):
            nn.ReLU(input_shape=bad)
        with pytest.raises(error, match="input_shape"):
            nn.Sequential([nn.ReLU()]).build(bad)


def test_model_file_keeps_the_input_shape(tmp_path):
    model = nn.Sequential([nn.Flatten(input_shape=(3, 2, 2)), nn.Dense(2)], seed=0)
    model.save(tmp_path / "m.nnlib")
    loaded = nn.load_model(tmp_path / "m.nnlib")
    assert loaded.input_shape == (3, 2, 2)
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
