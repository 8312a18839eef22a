"""nnlib/onnx: models exported to ONNX, checked by onnx's full checker and run in ONNX Runtime against their
own predict at batch sizes 1, 333 and the whole set; float64 graphs; the errors; a user layer's rule; the CLI."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime
import pytest

import nnlib as nn
import nnlib.onnx as nx
from nnlib import cli

N_SAMPLES = 400  # > 333, so the batch sizes 1, 333 and 400 are three different runs
IMAGE = (13, 11, 3)  # odd height and width


def session(model, tmp_path, **kwargs):
    """Export ``model`` to a file, check the file with the full checker, open it in ONNX Runtime."""
    path = tmp_path / "model.onnx"
    model.export(path, **kwargs)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]), proto


def max_error(model, sess, x, atol=1e-5):
    """Assert ONNX Runtime's outputs match ``model.predict`` at batch sizes 1, 333 and all of ``x``;
    return the largest difference."""
    worst = 0.0
    for n in (1, 333, len(x)):
        batch = x[:n].astype(model.dtype)
        (got,) = sess.run(None, {"input": batch})
        expected = model.predict(batch)
        assert got.shape == expected.shape == (n, *model.output_shape) and got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=0, atol=atol)
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def trained(model, x, y, loss, steps=6):
    """A few Adam steps, so weights and BatchNormalization's running statistics are not their initial values."""
    model.compile(nn.Adam(lr=1e-2), loss)
    model.fit(x, y, epochs=1, batch_size=len(x) // steps, shuffle=True, tol=None, verbose=0)
    for layer in model.layers:
        if isinstance(layer, nn.BatchNormalization):
            assert np.abs(layer.moving_mean).max() > 1e-2 and np.abs(layer.moving_variance - 1).max() > 1e-2
    return model


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_SAMPLES, 12)).astype(np.float32) * 2 + 0.5
    images = rng.normal(size=(N_SAMPLES, *IMAGE)).astype(np.float32) + 0.3
    return rng, x, images


# -- MLPs -------------------------------------------------------------------------------------------------

def test_softmax_mlp_with_batchnorm_dropout_and_every_activation(data, tmp_path):
    rng, x, _ = data
    y = rng.integers(0, 4, N_SAMPLES)
    model = trained(nn.Sequential([
        nn.Dense(16, activation="relu"), nn.BatchNormalization(momentum=0.5), nn.Dropout(0.3),
        nn.Dense(12), nn.LeakyReLU(alpha=0.2), nn.Dense(10, activation="tanh"), nn.Sigmoid(),
        nn.Dense(8, activation="leaky_relu"), nn.Linear(), nn.ReLU(), nn.Dense(4)], seed=0), x, y,
        "softmax_cross_entropy")
    sess, proto = session(model, tmp_path)
    assert max_error(model, sess, x) < 1e-5
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Gemm") == 5 and "Dropout" not in ops and "Transpose" not in ops and ops[-1] == "Softmax"
    alphas = [a.f for n in proto.graph.node if n.op_type == "LeakyRelu" for a in n.attribute]
    assert alphas == pytest.approx([0.2, 0.01])
    np.testing.assert_allclose(sess.run(None, {"input": x})[0].sum(axis=1), 1.0, atol=1e-6)


def test_mse_regression_gives_raw_outputs(data, tmp_path):
    rng, x, _ = data
    y = np.column_stack([x[:, 0] * x[:, 1], np.sin(x[:, 2])]) * 3
    model = trained(nn.Sequential([nn.Dense(16, activation="tanh"), nn.BatchNormalization(momentum=0.5),
                                   nn.Dense(8, activation="leaky_relu"), nn.Dense(2)], seed=1), x, y, "mse")
    sess, proto = session(model, tmp_path)
    assert max_error(model, sess, x) < 1e-5
    assert proto.graph.node[-1].op_type == "Gemm" and np.abs(model.predict(x)).max() > 1  # raw, not squashed


def test_binary_cross_entropy_gives_sigmoid_probabilities(data, tmp_path):
    rng, x, _ = data
    y = (x[:, 0] + x[:, 3] > 1).astype(np.float32)
    model = trained(nn.Sequential([nn.Dense(8, activation="relu"), nn.BatchNormalization(momentum=0.5),
                                   nn.Dense(1)], seed=2), x, y, "binary_cross_entropy")
    sess, proto = session(model, tmp_path)
    assert max_error(model, sess, x) < 1e-5
    assert proto.graph.node[-1].op_type == "Sigmoid"


def test_batchnorm_on_samples_of_any_rank_normalizes_the_last_axis(data, tmp_path):
    rng, x, _ = data
    y = rng.integers(0, 3, N_SAMPLES)
    model = trained(nn.Sequential([nn.Reshape((4, 3)), nn.BatchNormalization(momentum=0.5), nn.Flatten(),
                                   nn.Dense(3)], seed=3), x, y, "softmax_cross_entropy")
    sess, proto = session(model, tmp_path)
    assert max_error(model, sess, x) < 1e-5
    assert [n.op_type for n in proto.graph.node].count("Transpose") == 2  # (N, 4, 3) -> (N, 3, 4) and back


# -- CNNs -------------------------------------------------------------------------------------------------

CNNS = {
    # nnlib fuses each conv with its 2x2 pooling in predict and moves the ReLUs past the max pooling
    "reference-like": lambda: [
        nn.Conv2D(6, 3, padding="same", activation="relu"), nn.MaxPooling2D(2),
        nn.Conv2D(8, 3, padding="same", activation="relu"), nn.MaxPooling2D(2),
        nn.Flatten(), nn.Dense(16, activation="relu"), nn.Dense(5)],
    "same-stride-2-even-kernel-dilation": lambda: [
        nn.Conv2D(5, 4, strides=2, padding="same"), nn.BatchNormalization(momentum=0.5), nn.LeakyReLU(0.1),
        nn.Conv2D(6, (2, 3), strides=(1, 2), padding="same", dilation_rate=2, activation="tanh"),
        nn.AveragePooling2D(3, strides=2, padding="same"), nn.GlobalAveragePooling2D(), nn.Dense(5)],
    "valid-pools-no-bias": lambda: [
        nn.Conv2D(4, 3, dilation_rate=(2, 1), use_bias=False, activation="sigmoid"),
        nn.MaxPooling2D(3, strides=2), nn.AveragePooling2D(2), nn.Dropout(0.2), nn.Flatten(), nn.Dense(5)],
    "same-pools-first": lambda: [
        nn.MaxPooling2D(3, strides=2, padding="same"), nn.Conv2D(4, 2, activation="relu"),
        nn.AveragePooling2D(2, padding="same"), nn.Conv2D(6, 1, strides=2, padding="same"),
        nn.MaxPooling2D((2, 1), strides=1, padding="same"), nn.Flatten(), nn.Dense(5)],
    "batchnorm-first-and-fused-average": lambda: [
        nn.BatchNormalization(momentum=0.5), nn.Conv2D(4, 3), nn.AveragePooling2D(2), nn.ReLU(),
        nn.Conv2D(4, 3, padding="same", activation="relu"), nn.MaxPooling2D(2, padding="same"),
        nn.Reshape((-1,)), nn.Dense(5)],
}


@pytest.mark.parametrize("name", sorted(CNNS))
def test_cnn_matches_predict(name, data, tmp_path):
    rng, _, images = data
    y = rng.integers(0, 5, N_SAMPLES)
    model = trained(nn.Sequential(CNNS[name](), seed=4), images, y, "softmax_cross_entropy")
    sess, proto = session(model, tmp_path)
    assert max_error(model, sess, images) < 1e-5
    ops = [n.op_type for n in proto.graph.node]
    # NHWC -> NCHW once at the first conv/pool/BatchNorm, back once before Flatten/Reshape (or none at all)
    pooled_to_flat = any(isinstance(layer, nn.GlobalAveragePooling2D) for layer in model.layers)
    assert ops.count("Transpose") == (1 if pooled_to_flat else 2)
    assert "Cast" not in ops and ops[-1] == "Softmax"


def test_conv_pads_and_kernel_layout_are_written_out(data, tmp_path):
    """TF's "same" with an odd total padding puts the extra row/column at the bottom/right: ONNX's pads
    [top, left, bottom, right]; kernels go to (C_out, C_in, KH, KW)."""
    model = nn.Sequential([nn.Conv2D(5, (4, 2), strides=2, padding="same", input_shape=IMAGE)], seed=0)
    proto = nx.to_onnx(model)
    (conv,) = [n for n in proto.graph.node if n.op_type == "Conv"]
    attrs = {a.name: list(a.ints) for a in conv.attribute}
    # H=13, k=4, s=2: out 7, total pad 6*2+4-13 = 3 -> 1 top, 2 bottom; W=11, k=2, s=2: out 6, total 1 -> 0, 1
    assert attrs == {"kernel_shape": [4, 2], "strides": [2, 2], "dilations": [1, 1], "pads": [1, 0, 2, 1]}
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    np.testing.assert_array_equal(weights[conv.input[1]], model.layers[0].weight.value.transpose(3, 2, 0, 1))


def test_uncompiled_model_with_image_outputs_gives_nhwc_raw_values(data, tmp_path):
    _, x, _ = data
    flat = np.tile(x, (1, 6))[:, :63]  # (N, 63) rows made into 7x9 images by the model itself
    model = nn.Sequential([nn.Reshape((7, 9, 1), input_shape=(63,)),
                           nn.Conv2D(3, 3, padding="same", activation="sigmoid"),
                           nn.MaxPooling2D(2, padding="same")], seed=5)
    sess, proto = session(model, tmp_path)
    assert max_error(model, sess, flat) < 1e-5
    out = proto.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in out] == ["N", 4, 5, 3]
    assert [n.op_type for n in proto.graph.node][-1] == "Transpose"  # NCHW back to nnlib's NHWC


def test_a_model_of_dropout_alone_is_an_identity(data, tmp_path):
    _, x, _ = data
    model = nn.Sequential([nn.Dropout(0.5, input_shape=(12,))])
    sess, proto = session(model, tmp_path)
    assert max_error(model, sess, x) == 0.0 and [n.op_type for n in proto.graph.node] == ["Identity"]


# -- the graph's signature --------------------------------------------------------------------------------

def test_one_input_and_one_output_with_dynamic_batch_names_and_meaning(tmp_path):
    model = nn.Sequential([nn.Conv2D(2, 3, input_shape=(8, 8, 1)), nn.Flatten(), nn.Dense(3)])
    model.compile("adam", "softmax_cross_entropy")
    proto = model.export(tmp_path / "m.onnx")
    assert isinstance(proto, onnx.ModelProto) and (tmp_path / "m.onnx").stat().st_size > 0
    assert proto.opset_import[0].version == nx.OPSET == 17 and proto.ir_version == 8
    (inp,), (out,) = proto.graph.input, proto.graph.output
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in (inp, out)]
    assert (inp.name, out.name) == (nx.INPUT_NAME, nx.OUTPUT_NAME) == ("input", "output")
    assert dims == [["N", 8, 8, 1], ["N", 3]]
    text = nx.describe(proto)
    assert "input  'input': float32 (N, 8, 8, 1), a batch of 8x8 images with 1 channel, channels-last" in text
    assert "output 'output': float32 (N, 3), class probabilities" in text
    assert proto.producer_name == "nnlib"


# -- float64 ------------------------------------------------------------------------------------------------

def test_float64_mlp_is_a_float64_graph_that_matches_to_double_rounding(data, tmp_path):
    rng, x, _ = data
    model = trained(nn.Sequential([nn.Dense(16, activation="tanh"), nn.BatchNormalization(momentum=0.5),
                                   nn.Dense(3)], seed=6, dtype="float64"), x, rng.integers(0, 3, N_SAMPLES),
                    "softmax_cross_entropy")
    sess, proto = session(model, tmp_path)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert all(t.data_type == onnx.TensorProto.DOUBLE for t in proto.graph.initializer)
    assert max_error(model, sess, x, atol=1e-13) < 1e-13


def test_float64_cnn_runs_conv_and_average_pooling_in_float32_and_says_so(data, tmp_path):
    rng, _, images = data
    model = nn.Sequential(CNNS["batchnorm-first-and-fused-average"](), seed=7, dtype="float64")
    model = trained(model, images, rng.integers(0, 5, N_SAMPLES), "softmax_cross_entropy")
    with pytest.warns(UserWarning, match=r"conv2d_1 \(Conv2D\), average_pooling2d_2 \(AveragePooling2D\), "
                                         r"conv2d_4 \(Conv2D\) run in float32 between Cast nodes"):
        sess, proto = session(model, tmp_path)
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    ops = [n.op_type for n in proto.graph.node]
    # into float32 before conv2d_1 (its AveragePool shares it) and conv2d_4; back after each
    assert ops.count("Cast") == 4
    assert max_error(model, sess, images, atol=1e-5) > 1e-12  # float32 arithmetic in there, to its rounding


def test_float64_model_exported_as_float32(data, tmp_path):
    rng, _, images = data
    model = nn.Sequential(CNNS["valid-pools-no-bias"](), seed=8, dtype="float64")
    model = trained(model, images, rng.integers(0, 5, N_SAMPLES), "softmax_cross_entropy")
    sess, proto = session(model, tmp_path, dtype="float32")  # no warning: filterwarnings=error would fail it
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in proto.graph.initializer)
    (got,) = sess.run(None, {"input": images})
    np.testing.assert_allclose(got, model.predict(images), rtol=0, atol=1e-5)


# -- errors -------------------------------------------------------------------------------------------------

class Swish(nn.Layer):
    """y = x sigmoid(beta x): a user layer, element-wise."""

    def __init__(self, beta: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.beta = beta

    # y = x s, s = sigmoid(beta x)  =>  dx = g (s + beta x s (1 - s))
    def forward(self, x, training=False):
        self._x, self._s = x, nn.functional.sigmoid(self.beta * x)
        return x * self._s

    def backward(self, grad_out):
        return grad_out * (self._s + self.beta * self._x * self._s * (1 - self._s))


class ChannelScale(nn.Layer):
    """y[..., c] = x[..., c] * scale[c], on images: its rule asks for channels on axis 1."""

    def build(self, input_shape, rng, dtype=np.float32):
        out = super().build(input_shape, rng, dtype)
        self.scale = np.linspace(0.5, 2.0, input_shape[-1]).astype(dtype)
        return out

    # y = x scale  =>  dx = g scale
    def forward(self, x, training=False):
        return x * self.scale

    def backward(self, grad_out):
        return grad_out * self.scale


@pytest.fixture
def rules(monkeypatch):
    """A private copy of the rule table: what a test registers is gone after it."""
    monkeypatch.setattr(nx.graph, "_RULES", dict(nx.graph._RULES))


def test_a_registered_user_rule_exports_the_layer(rules, data, tmp_path):
    rng, _, images = data

    @nx.register_export(Swish)
    def swish(layer, graph, x):
        beta = graph.constant([layer.beta], "beta")
        return graph.node("Mul", [x, graph.node("Sigmoid", [graph.node("Mul", [x, beta])])])

    @nx.register_export(ChannelScale, layout="channels_first")
    def channel_scale(layer, graph, x):
        return graph.node("Mul", [x, graph.constant(layer.scale.reshape(-1, 1, 1), "scale")])  # (C, 1, 1)

    assert swish.__name__ == "swish"  # the decorator gives the rule back
    model = nn.Sequential([nn.Conv2D(4, 3, padding="same"), Swish(beta=1.5), ChannelScale(), nn.MaxPooling2D(2),
                           Swish(beta=0.5), nn.Flatten(), nn.Dense(3)], seed=9)
    model = trained(model, images, rng.integers(0, 3, N_SAMPLES), "softmax_cross_entropy")
    sess, proto = session(model, tmp_path)
    assert max_error(model, sess, images) < 1e-5
    # Swish's rule takes nnlib's layout (the default): NHWC around it, NCHW for ChannelScale and the pooling
    assert [n.op_type for n in proto.graph.node] == [
        "Transpose", "Conv", "Transpose", "Mul", "Sigmoid", "Mul", "Transpose", "Mul", "MaxPool",
        "Transpose", "Mul", "Sigmoid", "Mul", "Flatten", "Gemm", "Softmax"]
    assert "swish_1/beta" in {t.name for t in proto.graph.initializer}


def test_a_subclass_needs_its_own_rule_or_export_like(rules, data, tmp_path):
    class MyDense(nn.Dense):
        pass

    model = nn.Sequential([MyDense(3, input_dim=12)])
    with pytest.raises(TypeError, match=r"layer 'dense_0' \(MyDense\) has no ONNX export rule: .*"
                                        r"export_like\(MyDense, Dense\)"):
        nx.to_onnx(model)
    nx.export_like(MyDense, nn.Dense)
    sess, _ = session(model, tmp_path)
    assert max_error(model, sess, data[1]) < 1e-5
    with pytest.raises(TypeError, match="layer_class must subclass Dense"):
        nx.export_like(nn.ReLU, nn.Dense)
    with pytest.raises(TypeError, match="parent_class must be a layer class with an export rule"):
        nx.export_like(MyDense, Swish)


def test_a_layer_without_a_rule_is_named(rules):
    model = nn.Sequential([nn.Dense(4, input_dim=3), Swish(name="my_swish"), nn.Dense(2)])
    with pytest.raises(TypeError, match=r"layer 'my_swish' \(Swish\) has no ONNX export rule: write one with "
                                        r"@nnlib.onnx.register_export\(Swish\)"):
        model.export("unused.onnx")
    inner = nn.Sequential([nn.Dense(4, input_dim=3, activation=Swish())])  # as a Dense's activation
    with pytest.raises(TypeError, match=r"\(Swish\) has no ONNX export rule"):
        nx.to_onnx(inner)


def test_an_unbuilt_model_and_wrong_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot export a model that is not built: fit it or call build"):
        nn.Sequential([nn.Dense(3)]).export(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    model = nn.Sequential([nn.Dense(3, input_dim=2)])
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64', got 'float16'"):
        model.export(tmp_path / "m.onnx", dtype="float16")
    with pytest.raises(TypeError, match="path must be a non-empty str or os.PathLike, got 3"):
        model.export(3)
    with pytest.raises(TypeError, match="model must be an nnlib Sequential, got Dense"):
        nx.to_onnx(nn.Dense(3))
    with pytest.raises(TypeError, match="layer_class must be a subclass of nnlib.Layer, got <class 'int'>"):
        nx.register_export(int)
    with pytest.raises(ValueError, match="layout must be one of"):
        nx.register_export(Swish, layout="nchw")


def test_a_rule_that_builds_a_wrong_graph_is_caught(rules):
    @nx.register_export(Swish)
    def keeps_the_input(layer, graph, x):
        return "not a tensor"

    model = nn.Sequential([nn.Dense(4, input_dim=3), Swish()])
    with pytest.raises(TypeError, match="export rule of .* must return the name of a tensor of the graph"):
        nx.to_onnx(model)

    class Half(nn.Layer):
        def compute_output_shape(self, input_shape):
            return (input_shape[0] // 2,)

    @nx.register_export(Half)
    def wrong_width(layer, graph, x):
        return graph.node("Relu", [x])  # keeps all 4 features: the checker compares with nnlib's (2,)

    with pytest.raises(ValueError, match=r"fails onnx's checker: .*half_1/Relu.*differ in dimension 1: \(4\) vs "
                                         r"\(2\)"):
        nx.to_onnx(nn.Sequential([nn.Dense(4, input_dim=3), Half(), nn.Dense(2)]))


def test_a_loss_with_its_own_transform_or_softmax_of_images_is_refused():
    class Scaled(nn.MSE):
        def transform(self, y_pred):
            return 2 * y_pred

    model = nn.Sequential([nn.Dense(2, input_dim=3)])
    model.compile("adam", Scaled())
    with pytest.raises(TypeError, match="its own transform"):
        nx.to_onnx(model)
    images = nn.Sequential([nn.Conv2D(2, 1, input_shape=(3, 3, 1))])
    images.compile("adam", "softmax_cross_entropy")
    with pytest.raises(ValueError, match=r"outputs have shape \(N, 3, 3, 2\): Softmax needs flat"):
        nx.to_onnx(images)


def test_without_the_onnx_package_the_error_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    with pytest.raises(ImportError, match=r'pip install "nnlib\[onnx\]"'):
        nn.Sequential([nn.Dense(2, input_dim=3)]).export(tmp_path / "m.onnx")


# -- the command line -------------------------------------------------------------------------------------

def test_cli_export_writes_a_file_onnx_runtime_runs(data, tmp_path, capsys):
    rng, _, images = data
    model = trained(nn.Sequential(CNNS["reference-like"](), seed=10), images, rng.integers(0, 5, N_SAMPLES),
                    "softmax_cross_entropy")
    model.save(tmp_path / "m.nnlib")
    status = cli.main(["export", str(tmp_path / "m.nnlib"), str(tmp_path / "m.onnx")])
    out, err = capsys.readouterr()
    assert status == 0 and err == ""
    assert f"wrote {tmp_path / 'm.onnx'}: ONNX opset 17, 13 nodes" in out
    assert "input  'input': float32 (N, 13, 11, 3)" in out and "output 'output': float32 (N, 5), class prob" in out
    sess = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert max_error(nn.load_model(tmp_path / "m.nnlib"), sess, images) < 1e-5


def test_cli_export_errors_are_one_line(tmp_path, capsys, monkeypatch):
    status = cli.main(["export", str(tmp_path / "missing.nnlib"), str(tmp_path / "m.onnx")])
    assert status == 1 and capsys.readouterr().err.startswith("nnlib: error: ")
    nn.Sequential([nn.Dense(2, input_dim=3)]).save(tmp_path / "m.nnlib")
    monkeypatch.setitem(sys.modules, "onnx", None)
    status = cli.main(["export", str(tmp_path / "m.nnlib"), str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert status == 1 and err == 'nnlib: error: exporting to ONNX needs the onnx package: pip install "nnlib[onnx]"\n'
