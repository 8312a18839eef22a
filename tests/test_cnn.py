"""Convnets as whole models: five Adam steps of a small CNN equal an independent computation (the loop
reference of tests/cnn_reference.py, softmax cross-entropy and Adam written out here); numeric gradient checks
through conv, pooling and BatchNormalization; a CNN trains, saves, loads, resumes bit for bit, and works with
GradientMonitor, explain and summary; forged conv configs in a model file are refused before allocation."""

import re

import numpy as np
import pytest
from cnn_reference import avg_pool, conv2d, conv2d_grads, max_pool
from model_files import MEMORY_BOUND, edit_config, measured

import nnlib as nn


def small_cnn(seed=0, dtype="float64"):
    return nn.Sequential([
        nn.Conv2D(3, 3, padding="same", activation="relu", input_shape=(6, 6, 2)),
        nn.MaxPooling2D(2),
        nn.Conv2D(2, 2, strides=1),
        nn.AveragePooling2D(2, padding="same"),
        nn.Flatten(),
        nn.Dense(3),
    ], seed=seed, dtype=dtype)


def reference_step(weights, x, labels):
    """Loss and gradients of small_cnn, from the definitions (no nnlib)."""
    w1, b1, w2, b2, w3, b3 = weights
    z1 = conv2d(x, w1, b1, padding="same")
    a1 = np.maximum(z1, 0)
    p1, p1_back = max_pool(a1, (2, 2))
    z2 = conv2d(p1, w2, b2)
    p2, p2_back = avg_pool(z2, (2, 2), padding="same")
    flat = p2.reshape(len(x), -1)
    logits = flat @ w3 + b3
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    n = len(x)
    loss = -np.log(probs[np.arange(n), labels]).mean()
    dlogits = probs.copy()
    dlogits[np.arange(n), labels] -= 1
    dlogits /= n
    dw3, db3 = flat.T @ dlogits, dlogits.sum(axis=0)
    dz2 = p2_back((dlogits @ w3.T).reshape(p2.shape))
    dp1, dw2, db2 = conv2d_grads(p1, w2, dz2)
    dz1 = p1_back(dp1) * (z1 > 0)
    _, dw1, db1 = conv2d_grads(x, w1, dz1, padding="same")
    return loss, [dw1, db1, dw2, db2, dw3, db3]


def test_five_adam_steps_of_a_small_cnn_equal_an_independent_computation():
    model = small_cnn()
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    model.compile(nn.optimizers.Adam(lr=lr), "softmax_cross_entropy")
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((5, 6, 6, 2)), rng.integers(0, 3, 5)
    weights = [w.copy() for w in model.get_weights()]
    m = [np.zeros_like(w) for w in weights]
    v = [np.zeros_like(w) for w in weights]
    for t in range(1, 6):
        loss_ref, grads = reference_step(weights, x, labels)
        loss = model.train_on_batch(x, labels)
        assert loss == pytest.approx(loss_ref, rel=1e-12)
        for k, g in enumerate(grads):  # Kingma & Ba, Algorithm 1
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            weights[k] = weights[k] - lr * (m[k] / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + eps)
        for got, want in zip(model.get_weights(), weights):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert model.optimizer.iterations == 5


def test_numeric_gradient_check_through_a_cnn():
    model = nn.Sequential([
        nn.Conv2D(2, 2, strides=2, padding="same", activation="tanh", input_shape=(5, 5, 1)),
        nn.BatchNormalization(),
        nn.Conv2D(2, 2, dilation_rate=1),
        nn.GlobalAveragePooling2D(),
        nn.Dense(2),
    ], seed=1, dtype="float64")
    model.compile("sgd", "softmax_cross_entropy")
    rng = np.random.default_rng(2)
    result = nn.check_gradients(model, rng.standard_normal((4, 5, 5, 1)), rng.integers(0, 2, 4))
    assert result.ok, str(result)
    assert "input" in result.errors and len(result.errors) == 1 + len(model.parameters())


def image_data(n=60, seed=0):
    """Two classes of 8x8 images told apart by where a bright square sits."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.3, (n, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 2, n)
    for i, label in enumerate(y):
        r = 1 if label == 0 else 5
        x[i, r:r + 2, r:r + 2, 0] += 1.0
    return x, y


def test_a_cnn_learns_saves_loads_and_resumes_bit_for_bit(tmp_path):
    x, y = image_data()

    def model():
        m = nn.Sequential([nn.Conv2D(4, 3, activation="relu"), nn.MaxPooling2D(2), nn.Dropout(0.25), nn.Flatten(),
                           nn.Dense(2)], seed=3)
        m.compile(nn.optimizers.Adam(lr=0.01), "softmax_cross_entropy", ["accuracy"])
        return m

    straight = model()
    straight.fit(x, y, epochs=6, batch_size=16, tol=None, verbose=0)
    assert straight.evaluate(x, y)["accuracy"] > 0.9
    assert straight.predict(x).dtype == np.float32

    first = model()
    first.fit(x, y, epochs=3, batch_size=16, tol=None, verbose=0)
    first.save(tmp_path / "half.nnlib")
    resumed = nn.load_model(tmp_path / "half.nnlib")
    resumed.fit(x, y, epochs=6, initial_epoch=3, batch_size=16, tol=None, verbose=0)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(resumed.predict(x), straight.predict(x))
    assert [type(layer) for layer in resumed.layers] == [type(layer) for layer in straight.layers]


def test_summary_gradient_monitor_and_explain_know_conv_layers(capsys):
    x, y = image_data(32)
    model = nn.Sequential([nn.Conv2D(4, 3, padding="same", activation="relu", input_shape=(8, 8, 1)),
                           nn.MaxPooling2D(2), nn.Conv2D(6, 3), nn.GlobalAveragePooling2D(), nn.Dense(2)], seed=0)
    model.summary()
    out = capsys.readouterr().out
    for shape in ("(None, 8, 8, 4)", "(None, 4, 4, 4)", "(None, 2, 2, 6)", "(None, 6)", "(None, 2)"):
        assert shape in out
    assert re.search(r"conv2d_0 \(Conv2D\)\s+\(None, 8, 8, 4\)\s+40\b", out)  # 3*3*1*4 + 4
    assert f"Total params: {40 + 3 * 3 * 4 * 6 + 6 + 6 * 2 + 2:,}" in out
    model.compile("adam", "softmax_cross_entropy")
    monitor = nn.callbacks.GradientMonitor()
    history = model.fit(x, y, epochs=2, batch_size=8, callbacks=[monitor], tol=None, verbose=0)
    assert any(key.startswith("grad_norm/conv2d_0") for key in history.history)
    steps = nn.explain(model, x[:4], y[:4])
    names = [step["name"] for step in steps]
    assert names == ["loss", "dense_4", "global_average_pooling2d_3", "conv2d_2", "max_pooling2d_1", "conv2d_0"]
    assert steps[-1]["from_right_shape"] == (4, 8, 8, 4)


def conv_file(tmp_path):
    model = nn.Sequential([nn.Conv2D(4, 3, input_shape=(8, 8, 1)), nn.Flatten(), nn.Dense(2)], seed=0)
    model.save(tmp_path / "conv.nnlib")
    return tmp_path / "conv.nnlib"


@pytest.mark.parametrize("forge, match", [
    (lambda c: c["layers"][0]["config"].update(filters=10**7),
     r"weight arrays have shapes .* need \[\(3, 3, 1, 10000000\)"),
    (lambda c: c["layers"][0]["config"].update(kernel_size=[1, 1]), r"need \[\(1, 1, 1, 4\)"),
    (lambda c: (c.update(input_shape=[8, 8, 10**6]), c["layers"][0]["config"].pop("input_shape")),
     r"need \[\(3, 3, 1000000, 4\)"),
    (lambda c: c["layers"][0]["config"].update(kernel_size=[100, 100]), r"the kernel 100x100 is larger than"),
    (lambda c: c["layers"][0]["config"].update(padding="full"), r"padding must be one of"),
])
def test_forged_conv_configs_are_refused_before_allocation(tmp_path, forge, match):
    path = edit_config(tmp_path, forge, source=conv_file(tmp_path))
    error, peak = measured(lambda: nn.load_model(path))
    assert isinstance(error, ValueError), repr(error)
    assert re.search(match, str(error)), str(error)
    assert peak < MEMORY_BOUND


def test_predict_on_images_runs_in_chunks_that_bound_memory():
    """predict/evaluate pass at most 16 MB of the widest layer's outputs at a time (167 images of 28x28x32 float32
    maps), 1024 rows for MLPs; the figures do not depend on the chunking."""
    from nnlib.training import inference_chunk

    cnn = nn.Sequential([nn.Conv2D(32, 3, padding="same", input_shape=(28, 28, 1)), nn.Flatten(), nn.Dense(2)],
                        seed=0)
    assert inference_chunk(cnn) == (16 << 20) // (28 * 28 * 32 * 4) == 167
    assert inference_chunk(nn.Sequential([nn.Dense(256, input_dim=784), nn.Dense(10)])) == 1024
    x = np.random.default_rng(0).random((400, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(cnn.predict(x), cnn.predict(x, batch_size=400), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("padding", ["same", "valid"])  # "valid": the 2x2 path, with an odd row/column dropped
@pytest.mark.parametrize("make_relu", ["activation", "layer"])
def test_relu_moved_past_max_pooling_trains_bit_for_bit_the_same(make_relu, padding):
    """A ReLU right before MaxPooling2D (a Conv2D's activation, or a ReLU layer) is applied after the pooling,
    on 4x fewer elements; an identity layer in between keeps the textbook order. Ties after ReLU (windows of
    zeros) and both paddings included, five Adam steps leave the weights equal bit for bit."""
    def model(split):
        if make_relu == "activation":
            head = [nn.Conv2D(4, 3, activation="relu", input_shape=(7, 7, 1))]
        else:
            head = [nn.Conv2D(4, 3, input_shape=(7, 7, 1)), nn.ReLU()]
        m = nn.Sequential([*head, *([nn.Linear()] if split else []), nn.MaxPooling2D(2, padding=padding),
                           nn.Flatten(), nn.Dense(3)], seed=5)
        m.compile("adam", "softmax_cross_entropy")
        return m

    fused, plain = model(False), model(True)
    fused._window_major = set()  # the ReLU move alone; window-major blocks sum dW in another order (tested below)
    pool = fused.layers[-3]
    assert pool.relu_after and not plain.layers[-3].relu_after
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 7, 7, 1)).astype(np.float32), rng.integers(0, 3, 16)
    for _ in range(5):
        assert fused.train_on_batch(x, y) == plain.train_on_batch(x, y)
    pooled = x
    for layer in fused.layers[:-2]:
        pooled = layer.forward(pooled)
    assert (pooled == 0).any() and (pooled > 0).any()  # windows whose maximum was <= 0, and others
    for a, b in zip(fused.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fused.predict(x), plain.predict(x))
    result = nn.check_gradients(fused_copy := model(False), rng.standard_normal((3, 7, 7, 1)), y[:3])
    assert result.ok and fused_copy.layers[-3].relu_after, str(result)


def _pairing_model(conv_activation, pool, hw=(9, 9), padding="valid"):
    model = nn.Sequential([nn.Conv2D(4, 3, activation=conv_activation, input_shape=(*hw, 2), padding=padding),
                           pool, nn.Conv2D(3, 2, activation="relu"), nn.MaxPooling2D(2), nn.Flatten(),
                           nn.Dense(3)], seed=2)
    model.compile("adam", "softmax_cross_entropy")
    return model


@pytest.mark.parametrize("conv_activation, pool, hw, padding, paired", [
    ("relu", nn.MaxPooling2D(2), (9, 9), "valid", {0, 2}),  # 7x7 conv outputs: the last row and column dropped
    (None, nn.AveragePooling2D(2), (8, 10), "same", {0, 2}),
    ("relu", nn.AveragePooling2D(2), (9, 9), "valid", {2}),  # ReLU before an average: not moved, not paired
    ("tanh", nn.MaxPooling2D(2), (9, 9), "valid", {2}),
    ("relu", nn.MaxPooling2D(3), (12, 12), "valid", {2}),  # 3x3 windows
    ("relu", nn.MaxPooling2D(2, padding="same"), (8, 8), "valid", {0, 2}),  # 6x6: "same" pads nothing
    ("relu", nn.MaxPooling2D(2, padding="same"), (9, 9), "valid", {2}),  # 7x7: "same" pads a row and column
])
def test_convolutions_hand_window_major_blocks_to_a_2x2_pooling(conv_activation, pool, hw, padding, paired):
    """Paired layers train like unpaired ones (the same sums of other orders: to rounding); predict and
    explain (which runs the layers one by one, in the usual layout) agree."""
    pool = type(pool).from_config(pool.get_config())  # a fresh layer per model
    model = _pairing_model(conv_activation, pool, hw, padding)
    reference = _pairing_model(conv_activation, type(pool).from_config(pool.get_config()), hw, padding)
    reference._window_major = set()
    assert model._window_major == paired
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, *hw, 2)).astype(np.float32), rng.integers(0, 3, 12)
    for _ in range(4):
        np.testing.assert_allclose(model.train_on_batch(x, y), reference.train_on_batch(x, y), rtol=1e-5)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.predict(x), reference.predict(x), rtol=1e-4, atol=1e-6)
    records = nn.explain(model, x[:3], y[:3], verbose=0)
    assert all(len(r["to_left_shape"]) in (2, 4) for r in records)  # no window-major shapes in sight
    assert nn.check_gradients(model, x[:2].astype(np.float64), y[:2]).ok


def test_inference_runs_each_convolution_and_its_pooling_as_one_pass(monkeypatch):
    """predict and evaluate call the fused kernel for each pair; the values are the layers' own, one by one,
    to rounding; backward after such a pass is refused (it kept nothing), and the pass leaves the training
    forward's buffers alone, so a step's gradients do not depend on a predict in between."""
    import copy

    from nnlib import _conv

    calls = []
    fused = _conv.conv2d_pool2d_forward

    def spy(*args, **kwargs):
        calls.append(args[6] if len(args) > 6 else kwargs.get("pool", "max"))
        return fused(*args, **kwargs)

    monkeypatch.setattr(_conv, "conv2d_pool2d_forward", spy)
    model = _pairing_model(None, nn.AveragePooling2D(2), (8, 10), "same")
    assert model._window_major == {0, 2}
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((7, 8, 10, 2)).astype(np.float32), rng.integers(0, 3, 7)
    out = model.predict(x)
    assert calls == ["avg", "max"]
    layer_by_layer = x
    for layer in model.layers:  # the usual layout, one layer at a time
        layer_by_layer = layer.forward(layer_by_layer)
    np.testing.assert_allclose(out, model.loss.transform(layer_by_layer), rtol=1e-5, atol=1e-6)
    model.evaluate(x, y)
    assert len(calls) == 4
    with pytest.raises(RuntimeError, match="backward\\(\\) follows forward\\(x, training=True\\)"):
        model.backward(np.ones((7, 3), np.float32))

    def step_gradients(predict_between):
        m = _pairing_model(None, nn.AveragePooling2D(2), (8, 10), "same")
        m.loss.forward(m.forward(x, training=True), y)
        if predict_between:
            m.predict(x[:3])
            m.forward(x, training=True)  # backward needs its own forward: the flag is per pass
        m.backward(m.loss.backward())
        return [p.grad.copy() for p in m.parameters()]

    for a, b in zip(step_gradients(False), step_gradients(True)):
        np.testing.assert_array_equal(a, b)
    conv = model.layers[0]
    assert conv._pooled_buffers and not copy.deepcopy(conv)._pooled_buffers  # a cache is never copied
    with pytest.raises(ValueError, match="forward_pooled needs no activation"):
        nn.Sequential([nn.Conv2D(2, 3, activation="tanh", input_shape=(6, 6, 1))]).layers[0].forward_pooled(
            x[:, :6, :6, :1], "max")
