"""nnlib/model.py: Sequential, the public interface of issue 2 (building, weights, train_on_batch,
loss_and_gradients, predict, evaluate, summary, fit end to end), checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

import nnlib as nn

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([0, 1, 1, 0])


def blobs(n_per_class=10, n_classes=3, dim=2, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(n_classes, dim))
    x = np.vstack([c + rng.normal(0, 0.5, size=(n_per_class, dim)) for c in centres])
    y = np.repeat(np.arange(n_classes), n_per_class)
    return x, y


def spiral(n=100, k=3, seed=0):
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in range(k):
        r = np.linspace(0.0, 1.0, n)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, n) + rng.normal(0, 0.2, n)
        xs.append(np.c_[r * np.sin(t), r * np.cos(t)])
        ys.append(np.full(n, c))
    return np.vstack(xs), np.concatenate(ys)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def small_model(dtype="float64", seed=0, opt=None, loss="softmax_cross_entropy", metrics=("accuracy",)):
    model = nn.Sequential([nn.Dense(3, input_dim=2, activation="tanh"), nn.Dense(2)], seed=seed, dtype=dtype)
    model.compile(opt or nn.SGD(lr=0.5), loss, list(metrics))
    return model


class Recorder(nn.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_batch_end(self, batch, logs=None):
        self.batches.append((batch, logs["size"], logs["loss"]))


# -- building ---------------------------------------------------------------------------------------
def test_build_from_input_dim():
    model = nn.Sequential([nn.Dense(8, input_dim=4, activation="relu"), nn.Dense(2)], seed=0)
    assert model.built
    assert [w.shape for w in model.get_weights()] == [(4, 8), (8,), (8, 2), (2,)]
    assert all(w.dtype == np.float32 for w in model.get_weights())


def test_build_explicit_and_lazy():
    a = nn.Sequential([nn.Dense(8), nn.ReLU(), nn.Dense(2)], seed=3)
    assert not a.built and a.get_weights() == []
    a.build(5)
    assert a.built and [w.shape for w in a.get_weights()] == [(5, 8), (8,), (8, 2), (2,)]

    b = nn.Sequential([nn.Dense(8), nn.ReLU(), nn.Dense(2)], seed=3)
    out = b.predict(np.zeros((3, 5)))
    assert b.built and out.shape == (3, 2)
    for wa, wb in zip(a.get_weights(), b.get_weights()):  # same seed, same init however built
        np.testing.assert_array_equal(wa, wb)

    c = nn.Sequential([nn.Dense(8), nn.ReLU(), nn.Dense(2)], seed=3)
    c.compile("sgd", "softmax_cross_entropy")
    c.fit(np.zeros((4, 5)), np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    assert c.built and [w.shape for w in c.get_weights()] == [(5, 8), (8,), (8, 2), (2,)]


def test_get_weights_returns_copies_in_order():
    model = nn.Sequential([nn.Dense(3, input_dim=2), nn.Dense(4), nn.Dense(1)], seed=0)
    ws = model.get_weights()
    assert [w.shape for w in ws] == [(2, 3), (3,), (3, 4), (4,), (4, 1), (1,)]
    # biases start at zero (bias_init="zeros"), weights do not
    assert all(np.all(ws[i] == 0) for i in (1, 3, 5))
    assert all(np.any(ws[i] != 0) for i in (0, 2, 4))
    ws[0][...] = 123.0
    assert not np.any(model.get_weights()[0] == 123.0)
    # the order matches the layers: W1 maps x to the first layer's outputs
    x = np.array([[1.0, -2.0]])
    w = model.get_weights()
    h = (x @ w[0] + w[1]) @ w[2] + w[3]
    np.testing.assert_allclose(model.predict(x), h @ w[4] + w[5], rtol=1e-5, atol=1e-6)


def test_set_weights_casts_and_writes():
    model = nn.Sequential([nn.Dense(2, input_dim=3)], seed=0)  # float32
    w = np.arange(6, dtype=np.float64).reshape(3, 2) / 3.0
    b = np.array([1, -1])  # ints are accepted and cast
    model.set_weights([w, b])
    got = model.get_weights()
    assert all(a.dtype == np.float32 for a in got)
    np.testing.assert_array_equal(got[0], w.astype(np.float32))
    np.testing.assert_array_equal(got[1], np.array([1.0, -1.0], dtype=np.float32))
    # mutating the source afterwards does not affect the model
    w[...] = 0
    assert np.any(model.get_weights()[0] != 0)


@pytest.mark.parametrize("bad", [
    "count_short", "count_long", "shape_second", "shape_transposed",
])
def test_set_weights_checks_before_writing(bad):
    model = nn.Sequential([nn.Dense(3, input_dim=2), nn.Dense(2)], seed=0)
    before = model.get_weights()
    good = [np.full(w.shape, 7.0) for w in before]
    weights = {
        "count_short": good[:3],
        "count_long": good + [np.zeros(2)],
        "shape_second": [good[0], np.zeros(4), good[2], good[3]],  # first array valid: must not be written
        "shape_transposed": [good[0], good[1], np.zeros((2, 3)), good[3]],
    }[bad]
    with pytest.raises(ValueError, match=r"expected 4 arrays, got|shape"):
        model.set_weights(weights)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


# -- one step, gradients ----------------------------------------------------------------------------
def _hand_forward_backward(w, x, y):
    """Dense(3, tanh) -> Dense(2) -> softmax CE, float64, by the chain rule."""
    w1, b1, w2, b2 = w
    n = x.shape[0]
    h = np.tanh(x @ w1 + b1)
    z = h @ w2 + b2
    p = softmax(z)
    loss = -np.mean(np.log(p[np.arange(n), y]))
    onehot = np.eye(2)[y]
    dz = (p - onehot) / n
    dw2 = h.T @ dz
    db2 = dz.sum(axis=0)
    dh = dz @ w2.T
    da = dh * (1 - h * h)
    dw1 = x.T @ da
    db1 = da.sum(axis=0)
    return loss, [dw1, db1, dw2, db2]


def test_train_on_batch_is_one_sgd_step():
    model = small_model(opt=nn.SGD(lr=0.5))
    w0 = model.get_weights()
    x = np.array([[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0]])
    y = np.array([1, 0, 1])
    want_loss, grads = _hand_forward_backward(w0, x, y)
    loss = model.train_on_batch(x, y)
    assert isinstance(loss, float)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    for got, w, g in zip(model.get_weights(), w0, grads):
        np.testing.assert_allclose(got, w - 0.5 * g, rtol=1e-12, atol=1e-14)
    assert model.optimizer.iterations == 1


def test_train_on_batch_mse_single_dense():
    model = nn.Sequential([nn.Dense(2, input_dim=3)], seed=1, dtype="float64")
    model.compile(nn.SGD(lr=0.1), "mse")
    w = np.array([[0.5, -0.25], [1.0, 0.0], [-1.0, 0.75]])
    b = np.array([0.1, -0.2])
    model.set_weights([w, b])
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    t = np.array([[1.0, 0.0], [0.0, 1.0]])
    out = x @ w + b
    d = 2 * (out - t) / out.size  # MSE mean over all elements, no 1/2
    loss = model.train_on_batch(x, t)
    assert loss == pytest.approx(np.mean((out - t) ** 2), rel=1e-12)
    new_w, new_b = model.get_weights()
    np.testing.assert_allclose(new_w, w - 0.1 * (x.T @ d), rtol=1e-12)
    np.testing.assert_allclose(new_b, b - 0.1 * d.sum(axis=0), rtol=1e-12)


def test_loss_and_gradients_matches_hand_and_central_differences():
    model = small_model(opt=nn.Adam(lr=0.1))
    x = np.array([[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0], [0.1, 0.2]])
    y = np.array([1, 0, 1, 0])
    w0 = model.get_weights()
    loss, grads = model.loss_and_gradients(x, y)
    # no update, no optimizer state
    for a, b in zip(model.get_weights(), w0):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.state == {} and model.optimizer.iterations == 0
    assert [g.shape for g in grads] == [w.shape for w in w0]
    want_loss, want_grads = _hand_forward_backward(w0, x, y)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    for g, wg in zip(grads, want_grads):
        np.testing.assert_allclose(g, wg, rtol=1e-10, atol=1e-13)
    # float64 central differences through the public API
    eps = 1e-6
    for i, w in enumerate(w0):
        num = np.zeros_like(w)
        for j in np.ndindex(w.shape):
            vals = []
            for s in (+1, -1):
                ws = [a.copy() for a in w0]
                ws[i][j] += s * eps
                model.set_weights(ws)
                vals.append(model.evaluate(x, y)["loss"])
            num[j] = (vals[0] - vals[1]) / (2 * eps)
        np.testing.assert_allclose(grads[i], num, rtol=1e-5, atol=1e-8)
    model.set_weights(w0)
    # grads are copies: a later call does not overwrite them
    g_copy = [g.copy() for g in grads]
    model.loss_and_gradients(x[:2], y[:2])
    for a, b in zip(grads, g_copy):
        np.testing.assert_array_equal(a, b)


# -- predict / evaluate -----------------------------------------------------------------------------
def test_predict_probabilities_and_fresh_arrays():
    model = small_model()
    x1 = np.array([[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0]])
    x2 = np.array([[3.0, 3.0], [-3.0, 1.0], [0.0, 0.0]])
    w1, b1, w2, b2 = model.get_weights()
    p1 = model.predict(x1)
    np.testing.assert_allclose(p1, softmax(np.tanh(x1 @ w1 + b1) @ w2 + b2), rtol=1e-12)
    np.testing.assert_allclose(p1.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(p1 > 0) and np.all(p1 < 1)
    saved = p1.copy()
    p2 = model.predict(x2)
    assert p2 is not p1 and not np.shares_memory(p1, p2)
    np.testing.assert_array_equal(p1, saved)
    # the array is the caller's: writing to it does not change the next prediction
    p2[...] = -1
    np.testing.assert_allclose(model.predict(x1), saved, rtol=1e-12)


def test_predict_raw_values_for_mse_and_batching():
    model = nn.Sequential([nn.Dense(4, input_dim=3, activation="relu"), nn.Dense(2)], seed=0, dtype="float64")
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(7, 3))
    w1, b1, w2, b2 = model.get_weights()
    want = np.maximum(x @ w1 + b1, 0) @ w2 + b2
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model.predict(x, batch_size=3), want, rtol=1e-12, atol=1e-14)
    assert np.any(want < 0)  # raw values, not probabilities


def test_evaluate_equals_direct_computation():
    model = small_model()
    x, y = blobs(5, 2, seed=1)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, tol=None)
    w1, b1, w2, b2 = model.get_weights()
    p = softmax(np.tanh(x @ w1 + b1) @ w2 + b2)
    want_loss = -np.mean(np.log(p[np.arange(len(y)), y]))
    want_acc = np.mean(p.argmax(axis=1) == y)
    res = model.evaluate(x, y)
    assert set(res) == {"loss", "accuracy"}
    assert isinstance(res["loss"], float) and isinstance(res["accuracy"], float)
    assert res["loss"] == pytest.approx(want_loss, rel=1e-10)
    assert res["accuracy"] == pytest.approx(want_acc, abs=1e-12)
    res3 = model.evaluate(x, y, batch_size=3)  # chunking does not change the mean
    assert res3["loss"] == pytest.approx(want_loss, rel=1e-10)
    # one-hot targets give the same figures
    res_oh = model.evaluate(x, np.eye(2)[y])
    assert res_oh["loss"] == pytest.approx(want_loss, rel=1e-10)
    assert res_oh["accuracy"] == pytest.approx(want_acc, abs=1e-12)


def test_summary(capsys):
    """One row a layer: name (type), output shape, parameter count; then the exact total line."""
    model = nn.Sequential([nn.Dense(8, input_dim=4), nn.ReLU(), nn.Dense(2)], seed=0)
    model.summary()
    out = capsys.readouterr().out
    for name in ("dense_0", "relu_1", "dense_2"):
        assert name in out
    lines = out.splitlines()
    assert lines[0] == 'Model "sequential"'
    assert lines[2].split() == ["Layer", "(type)", "Output", "shape", "Params"]
    names = ("dense_0", "relu_1", "dense_2")
    row = {name: next(line for line in lines if line.startswith(name + " ")) for name in names}
    assert "(None, 8)" in row["dense_0"] and row["dense_0"].split()[-1] == "40"  # 4*8 + 8
    assert "(None, 8)" in row["relu_1"] and row["relu_1"].split()[-1] == "0"
    assert "(None, 2)" in row["dense_2"] and row["dense_2"].split()[-1] == "18"  # 8*2 + 2
    assert row["dense_0"].split() == ["dense_0", "(Dense)", "(None,", "8)", "40"]
    assert row["relu_1"].split() == ["relu_1", "(ReLU)", "(None,", "8)", "0"]
    assert row["dense_2"].split() == ["dense_2", "(Dense)", "(None,", "2)", "18"]
    assert [line for line in lines if line.startswith("Total params")] == ["Total params: 58"]  # 40 + 0 + 18
    assert lines[-1] == "Total params: 58"
    assert model.count_params() == 58
    nn.Sequential([nn.Dense(8), nn.ReLU()], seed=0).summary()  # unbuilt: no shapes, counts or total yet
    lines = capsys.readouterr().out.splitlines()
    assert lines[4].split() == ["dense_0", "(Dense)", "?", "?"] and lines[-1] == "Total params: ? (not built)"


def test_model_names_new_layers_readably():
    model = nn.Sequential([nn.Dense(4, input_dim=3), nn.BatchNormalization(), nn.ReLU(), nn.Dropout(0.2), nn.Dense(2)])
    assert [layer.name for layer in model.layers] == [
        "dense_0", "batch_normalization_1", "relu_2", "dropout_3", "dense_4"]
    lines = []
    model.summary(print_fn=lines.append)
    assert "batch_normalization_1 (BatchNormalization)" in lines[0]
    assert [p.name for p in model.layers[1].parameters()] == ["batch_normalization_1/gamma",
                                                              "batch_normalization_1/beta"]


# -- learning ---------------------------------------------------------------------------------------
def test_xor_learned():
    model = nn.Sequential([nn.Dense(8, activation="tanh"), nn.Dense(2)], seed=0)
    model.compile(nn.Adam(lr=0.05), "softmax_cross_entropy", ["accuracy"])
    history = model.fit(XOR_X, XOR_Y, epochs=300, batch_size=4, tol=None, verbose=0)
    assert history.epochs_run == 300
    assert model.evaluate(XOR_X, XOR_Y)["accuracy"] == 1.0
    np.testing.assert_array_equal(model.predict(XOR_X).argmax(axis=1), XOR_Y)
    assert history.history["loss"][-1] < 0.05 < history.history["loss"][0]


def test_spiral_learned():
    x, y = spiral(100, 3, seed=0)
    model = nn.Sequential([nn.Dense(64, activation="relu"), nn.Dense(64, activation="relu"), nn.Dense(3)], seed=0)
    model.compile(nn.Adam(lr=0.01), "softmax_cross_entropy", ["accuracy"])
    model.fit(x, y, epochs=200, batch_size=32, tol=None, verbose=0)
    assert model.evaluate(x, y)["accuracy"] >= 0.95


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtypes_train_and_persist(dtype):
    x, y = blobs(10, 3, seed=2)
    model = nn.Sequential([nn.Dense(8, activation="tanh"), nn.Dense(3)], seed=0, dtype=dtype)
    model.compile(nn.Adam(lr=0.05), "softmax_cross_entropy", ["accuracy"])
    history = model.fit(x.astype(np.float64 if dtype == "float32" else np.float32), y, epochs=30,
                        batch_size=8, tol=None, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert all(w.dtype == np.dtype(dtype) for w in model.get_weights())
    assert model.predict(x).dtype == np.dtype(dtype)
    _, grads = model.loss_and_gradients(x, y)
    assert all(g.dtype == np.dtype(dtype) for g in grads)
    assert model.evaluate(x, y)["accuracy"] >= 0.9


def _fit_fresh(seed, **kw):
    x, y = blobs(8, 3, seed=5)
    model = nn.Sequential([nn.Dense(6, activation="relu"), nn.Dense(3)], seed=seed)
    model.compile(nn.Adam(lr=0.01), "softmax_cross_entropy", ["accuracy"])
    hist = model.fit(x, y, epochs=kw.pop("epochs", 5), batch_size=5, tol=None, verbose=0, **kw)
    return model, hist


def test_same_seed_identical_different_seed_differs():
    m1, h1 = _fit_fresh(7)
    m2, h2 = _fit_fresh(7)
    assert h1.history == h2.history
    for a, b in zip(m1.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)
    m3, h3 = _fit_fresh(8)
    assert h3.history["loss"] != h1.history["loss"]
    assert any(not np.array_equal(a, b) for a, b in zip(m1.get_weights(), m3.get_weights()))


def test_fit_does_not_touch_global_numpy_random():
    np.random.seed(1234)
    state = np.random.get_state()
    _fit_fresh(0, validation_split=0.25)
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def test_resume_with_initial_epoch_is_exact():
    x, y = blobs(7, 3, seed=4)  # N=21, batch 5 -> a partial batch each epoch

    def new():
        m = nn.Sequential([nn.Dense(6, activation="tanh"), nn.Dense(3)], seed=11)
        m.compile(nn.Adam(lr=0.02), "softmax_cross_entropy", ["accuracy"])
        return m

    a = new()
    ha = a.fit(x, y, epochs=4, batch_size=5, tol=None, verbose=0)
    b = new()
    hb1 = b.fit(x, y, epochs=2, batch_size=5, tol=None, verbose=0)
    hb2 = b.fit(x, y, epochs=4, initial_epoch=2, batch_size=5, tol=None, verbose=0)
    assert hb1.epoch == [0, 1] and hb2.epoch == [2, 3]
    assert ha.history["loss"] == hb1.history["loss"] + hb2.history["loss"]
    assert ha.history["accuracy"] == hb1.history["accuracy"] + hb2.history["accuracy"]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_shuffle_differs_between_epochs_and_keeps_all_rows():
    # zero weights and lr tiny: each batch-of-one loss identifies its row (targets 0..9 are distinct)
    x = np.arange(20, dtype=float).reshape(10, 2)
    t = np.c_[np.arange(10.0), np.zeros(10)]
    model = nn.Sequential([nn.Dense(2, input_dim=2)], seed=3, dtype="float64")
    model.compile(nn.SGD(lr=1e-12), "mse")
    model.set_weights([np.zeros((2, 2)), np.zeros(2)])
    rec = Recorder()
    model.fit(x, t, epochs=2, batch_size=1, tol=None, verbose=0, callbacks=[rec])
    rows = [[round(np.sqrt(2 * loss)) for _, _, loss in rec.batches[k * 10:(k + 1) * 10]] for k in range(2)]
    assert sorted(rows[0]) == sorted(rows[1]) == list(range(10))  # every row once per epoch
    assert rows[0] != rows[1]  # epoch 1 is shuffled differently from epoch 0
    assert rows[0] != list(range(10))  # and shuffled at all


def test_validation_split_stratified_and_reproducible():
    counts = [30, 20, 10]
    y = np.repeat(np.arange(3), counts)
    x = np.random.default_rng(0).normal(size=(60, 2)) + y[:, None]
    frac = 0.25
    records = []

    def recorder(y_true, y_out):
        records.append(("metric", np.array(y_true)))
        return 0.0

    class Mark(nn.Callback):
        def on_batch_end(self, batch, logs=None):
            records.append(("batch", None))

        def on_epoch_end(self, epoch, logs=None):
            records.append(("epoch", dict(logs)))

    def run():
        records.clear()
        model = nn.Sequential([nn.Dense(3)], seed=21)
        model.compile("sgd", "softmax_cross_entropy", [recorder])
        mark = Mark()
        hist = model.fit(x, y, epochs=1, batch_size=8, validation_split=frac, tol=None, verbose=0,
                         callbacks=[mark])
        last_batch = max(i for i, r in enumerate(records) if r[0] == "batch")
        end = next(i for i, r in enumerate(records) if r[0] == "epoch")
        val_labels = np.concatenate([r[1] for r in records[last_batch + 1:end] if r[0] == "metric"])
        train_labels = np.concatenate([r[1] for r in records[:last_batch] if r[0] == "metric"])
        return hist, mark.params["samples"], val_labels, train_labels

    hist, n_train, val_labels, train_labels = run()
    assert n_train == 45 and val_labels.shape == (15,) and train_labels.shape == (45,)
    got = np.bincount(val_labels, minlength=3)
    exact = np.array(counts) * frac  # 7.5, 5, 2.5
    assert np.all(np.abs(got - exact) <= 1), got
    np.testing.assert_array_equal(got + np.bincount(train_labels, minlength=3), counts)
    assert {"val_loss", "recorder", "val_recorder"} <= set(hist.history)
    hist2, _, val2, _ = run()
    np.testing.assert_array_equal(val_labels, val2)
    assert hist.history == hist2.history


def test_validation_data_adds_val_metrics():
    x, y = blobs(8, 3, seed=0)
    xv, yv = blobs(4, 3, seed=9)
    model = nn.Sequential([nn.Dense(3)], seed=0)
    model.compile(nn.Adam(lr=0.05), "softmax_cross_entropy", ["accuracy"])
    h = model.fit(x, y, epochs=3, batch_size=8, validation_data=(xv, yv), tol=None, verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in h.history.values())
    final = model.evaluate(xv, yv)
    assert h.history["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-6)
    assert h.history["val_accuracy"][-1] == pytest.approx(final["accuracy"])


def test_last_partial_batch_and_weighted_epoch_loss():
    x, y = blobs(5, 2, seed=3)  # N = 10
    model = nn.Sequential([nn.Dense(2)], seed=0, dtype="float64")
    model.compile(nn.SGD(lr=0.1), "softmax_cross_entropy", ["accuracy"])
    rec = Recorder()
    h = model.fit(x, y, epochs=2, batch_size=4, tol=None, verbose=0, callbacks=[rec])
    assert model.optimizer.iterations == 6
    per_epoch = [rec.batches[:3], rec.batches[3:]]
    for e, batches in enumerate(per_epoch):
        assert [b for b, _, _ in batches] == [0, 1, 2]
        assert [s for _, s, _ in batches] == [4, 4, 2]
        weighted = sum(s * loss for _, s, loss in batches) / 10
        assert h.history["loss"][e] == pytest.approx(weighted, rel=1e-12)


def test_binary_cross_entropy_separable():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    x += np.sign(x[:, :1] + x[:, 1:]) * 0.5  # margin
    y = (x[:, 0] + x[:, 1] > 0).astype(float)
    model = nn.Sequential([nn.Dense(1, input_dim=2)], seed=0)
    model.compile(nn.Adam(lr=0.1), "binary_cross_entropy", ["accuracy"])
    h = model.fit(x, y, epochs=60, batch_size=8, tol=None, verbose=0)
    p = model.predict(x)
    assert p.shape == (40, 1) and np.all((p > 0) & (p < 1))
    assert h.history["accuracy"][-1] == pytest.approx(1.0)
    res = model.evaluate(x, y)
    assert res["accuracy"] == 1.0
    assert res["accuracy"] == np.mean((p[:, 0] > 0.5) == (y > 0.5))
    w, b = model.get_weights()
    z = x @ w.astype(np.float64) + b.astype(np.float64)
    want = np.mean(np.maximum(z, 0) - y[:, None] * z + np.log1p(np.exp(-np.abs(z))))
    assert res["loss"] == pytest.approx(want, rel=1e-4)


def test_user_registered_loss_by_name():
    @nn.losses.register("my_loss")
    class HalfSquared(nn.Loss):
        """L = (1/2) mean (y - t)^2."""

        def forward(self, y_pred, y_true):
            self._d = y_pred - np.asarray(y_true).reshape(y_pred.shape)
            return float(0.5 * np.mean(self._d * self._d))

        def backward(self):
            return self._d / self._d.size

    x = np.linspace(-1, 1, 16).reshape(-1, 1)
    t = 2 * x + 1
    model = nn.Sequential([nn.Dense(1)], seed=0, dtype="float64")
    model.compile(nn.SGD(lr=0.5), loss="my_loss")
    assert isinstance(model.loss, HalfSquared)
    h = model.fit(x, t, epochs=100, batch_size=16, tol=None, verbose=0)
    assert h.history["loss"][-1] < 1e-6 < h.history["loss"][0]
    w, b = model.get_weights()
    assert w[0, 0] == pytest.approx(2.0, abs=1e-3) and b[0] == pytest.approx(1.0, abs=1e-3)
    out = x @ w + b
    assert model.evaluate(x, t)["loss"] == pytest.approx(0.5 * np.mean((out - t) ** 2), rel=1e-9)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copied_model_keeps_training_its_own_weights(how):
    """A deep-copied or unpickled model trains exactly like the original (its parameters are
    re-packed into one buffer, so the optimizer's flat path updates the copy's real weights)."""
    import copy
    import pickle

    rng = np.random.default_rng(0)
    x, y = rng.random((64, 5)), rng.integers(0, 3, 64)
    model = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(3)], seed=0)
    model.compile("adam", "softmax_cross_entropy")
    model.fit(x, y, epochs=2, verbose=0)
    clone = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    before = clone.get_weights()
    model.fit(x, y, epochs=4, initial_epoch=2, verbose=0)
    clone.fit(x, y, epochs=4, initial_epoch=2, verbose=0)
    assert not np.array_equal(before[0], clone.get_weights()[0])
    for a, b in zip(model.get_weights(), clone.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_the_public_passes_need_a_built_model():
    model = nn.Sequential([nn.ReLU(), nn.Dense(2)], seed=0)
    with pytest.raises(RuntimeError, match=r"not built: fit it, or call build\(input_shape\), before forward\(\)"):
        model.forward(np.ones((2, 3), np.float32))
    with pytest.raises(RuntimeError, match=r"not built: fit it, or call build\(input_shape\), before backward\(\)"):
        model.backward(np.ones((2, 2), np.float32))
