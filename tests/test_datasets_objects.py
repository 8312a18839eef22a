"""fit, evaluate and predict on Keras PyDataset-like objects: len(ds) batches, ds[i] -> (x_batch, y_batch),
an optional on_epoch_end(); each batch checked before its step."""

import numpy as np
import pytest

import nnlib as nn


class Batches:
    """The rows of (x, y) in batches of ``size``, shuffled by on_epoch_end, as a user would write one."""

    def __init__(self, x, y, size, shuffle_seed=None):
        self.x, self.y, self.size = x, y, size
        self.order = np.arange(len(x))
        self.rng = None if shuffle_seed is None else np.random.default_rng(shuffle_seed)
        self.epochs_ended = 0

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, i):
        rows = self.order[i * self.size:(i + 1) * self.size]
        return self.x[rows], self.y[rows]

    def on_epoch_end(self):
        self.epochs_ended += 1
        if self.rng is not None:
            self.order = self.rng.permutation(len(self.x))


def _model():
    m = nn.Sequential([nn.Dense(8, activation="relu", input_dim=5), nn.Dense(3)], seed=0)
    m.compile("adam", "softmax_cross_entropy", ["accuracy"])
    return m


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((70, 5)).astype(np.float32), rng.integers(0, 3, 70)


def test_a_dataset_trains_as_the_same_batches_of_arrays_do(data):
    x, y = data
    ds, val = Batches(x, y, 16), Batches(x[:30], y[:30], 7)
    a, b = _model(), _model()
    ha = a.fit(ds, epochs=3, validation_data=val, tol=None, verbose=0)
    hb = b.fit(x, y, epochs=3, batch_size=16, shuffle=False, validation_data=(x[:30], y[:30]), tol=None, verbose=0)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(ha.history[key], hb.history[key], rtol=1e-6)
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(p, q)
    assert ds.epochs_ended == 3 and val.epochs_ended == 0  # once per epoch, the training dataset's hook
    np.testing.assert_allclose(a.evaluate(val)["loss"], a.evaluate(x[:30], y[:30])["loss"], rtol=1e-6)
    np.testing.assert_array_equal(a.predict(ds), a.predict(x))


def test_on_epoch_end_reshuffles_and_training_follows_it(data):
    x, y = data
    ds = Batches(x, y, 16, shuffle_seed=3)
    model = _model()
    history = model.fit(ds, epochs=4, tol=None, verbose=0)
    assert ds.epochs_ended == 4 and len(history.history["loss"]) == 4
    assert not np.array_equal(ds.order, np.arange(70))


def test_a_bad_batch_is_named_and_its_step_changes_nothing(data):
    x, y = data
    x_bad = x.copy()
    x_bad[37, 2] = np.nan  # in batch 2
    model = _model()
    model.build(5)
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"x\[2\] x contains nan at row 5, column 2"):
        model.fit(Batches(x_bad, y, 16), epochs=1, tol=None, verbose=0)
    # batches 0 and 1 trained; batch 2's step never ran: the weights are those after batch 1
    reference = _model()
    reference.build(5)
    reference.fit(x[:32], y[:32], epochs=1, batch_size=16, shuffle=False, tol=None, verbose=0)
    for p, q in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(p, q)
    assert not all(np.array_equal(p, q) for p, q in zip(model.get_weights(), before))


@pytest.mark.parametrize("call, match", [
    (lambda m, ds, x, y: m.fit(ds, y, verbose=0), "y must be None when x is a dataset"),
    (lambda m, ds, x, y: m.evaluate(ds, y), "y must be None when x is a dataset"),
    (lambda m, ds, x, y: m.fit(ds, validation_split=0.2, verbose=0), "validation_split needs arrays"),
    (lambda m, ds, x, y: m.fit(x, verbose=0), "fit\\(\\) needs y"),
    (lambda m, ds, x, y: m.fit(Batches(x[:0], y[:0], 4), verbose=0), "at least one batch"),
    (lambda m, ds, x, y: m.fit([1, 2, 3], verbose=0), "fit\\(\\) needs y"),
])
def test_misused_datasets_are_refused_before_anything_changes(data, call, match):
    x, y = data
    model = _model()
    before = model.get_weights()
    with pytest.raises((ValueError, TypeError), match=match):
        call(model, Batches(x, y, 16), x, y)
    for p, q in zip(model.get_weights(), before):
        np.testing.assert_array_equal(p, q)
    assert model.history is None


def test_a_dataset_whose_items_are_not_pairs_is_named(data):
    x, _ = data

    class XOnly:
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return x[i * 10:(i + 1) * 10]

    model = _model()
    with pytest.raises(ValueError, match=r"x\[0\] must be a tuple \(x_batch, y_batch\), got ndarray"):
        model.fit(XOnly(), verbose=0)
    model.build(5)
    assert model.predict(XOnly()).shape == (20, 3)  # predict takes batches of x alone


def test_memmap_dataset_reads_blocks_shuffled_by_epoch_and_trains(tmp_path):
    from nnlib.data import MemmapDataset

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1000, 5), dtype=np.uint8)
    y = rng.integers(0, 3, 1000)
    np.save(tmp_path / "x.npy", x)
    ds = MemmapDataset(tmp_path / "x.npy", y, batch_size=64, seed=7, block_rows=100)
    assert len(ds) == 16 and isinstance(ds.x, np.memmap)
    first = np.concatenate([ds[i][0] for i in range(len(ds))])
    assert sorted(map(bytes, first)) == sorted(map(bytes, x))  # every row once
    order = ds.order()
    assert not np.array_equal(order, np.arange(1000))
    # rows stay in their blocks: each run of 100 consecutive order entries is one block's rows
    assert all(len(set(order[k:k + 100] // 100)) == 1 for k in range(0, 1000, 100))
    ds.on_epoch_end()
    assert not np.array_equal(ds.order(), order)
    resumed = MemmapDataset(x, y, batch_size=64, seed=7, block_rows=100)
    resumed.epoch = 1
    np.testing.assert_array_equal(resumed.order(), ds.order())  # a function of (seed, epoch) only
    np.testing.assert_array_equal(MemmapDataset(x, y, shuffle=False).order(), np.arange(1000))
    ds.epoch = 0
    model = _model()
    history = model.fit(ds, epochs=2, tol=None, verbose=0)
    assert len(history.history["loss"]) == 2 and ds.epoch == 2
    with pytest.raises(IndexError, match="has 16 batches, got index 16"):
        ds[16]


@pytest.mark.parametrize("args, error, match", [
    (("nope.txt", [0]), FileNotFoundError, "nope"),
    ((np.zeros(5), np.zeros(5)), ValueError, "shape \\(N, ...\\)"),
    ((np.zeros((4, 2)), np.zeros(3)), ValueError, "y must have 4 rows"),
    ((np.zeros((4, 2), dtype=object), np.zeros(4)), ValueError, "numeric"),
    (([[1, 2]], [0]), TypeError, "a .npy path or an array"),
])
def test_memmap_dataset_refuses_bad_arguments(args, error, match):
    from nnlib.data import MemmapDataset

    with pytest.raises(error, match=match):
        MemmapDataset(*args)


def test_memmap_dataset_never_unpickles(tmp_path):
    from nnlib.data import MemmapDataset

    np.save(tmp_path / "objects.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Python objects|allow_pickle"):  # refused before any unpickling
        MemmapDataset(tmp_path / "objects.npy", [0])


def test_sequences_of_rows_stay_data_and_batches_of_memmap_slices_are_cast(tmp_path):
    from collections import deque

    import nnlib.training as training

    rows = [list(map(float, r)) for r in np.arange(15).reshape(3, 5)]
    for seq in (rows, tuple(rows), deque(rows), range(3)):
        assert not training.is_dataset(seq)
    model = _model()
    np.testing.assert_array_equal(model.predict(deque(rows)), model.predict(np.array(rows, np.float32)))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 5))  # float64 on disk: each batch is a memmap slice in float64
    np.save(tmp_path / "x.npy", x)
    xm, y = np.load(tmp_path / "x.npy", mmap_mode="r"), rng.integers(0, 3, 60)

    class Slices:
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return self.x[i * 20:(i + 1) * 20], y[i * 20:(i + 1) * 20]

    a, b = _model(), _model()
    a.fit(Slices(xm), epochs=2, tol=None, verbose=0)
    b.fit(Slices(x.astype(np.float32)), epochs=2, tol=None, verbose=0)
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(p, q)
