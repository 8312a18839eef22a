"""Memory-mapped inputs (np.memmap, np.load(..., mmap_mode="r")): fit, evaluate and predict cast each batch,
never the whole array, and check the file in chunks once; the results equal those of the array in memory."""

import tracemalloc

import numpy as np
import pytest

import nnlib as nn
from nnlib.data import BatchIterator, check_features


def _model(seed=0):
    m = nn.Sequential([nn.Dense(16, activation="relu", input_dim=64), nn.Dense(3)], seed=seed)
    m.compile("adam", "softmax_cross_entropy", ["accuracy"])
    return m


@pytest.fixture
def mapped(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (600, 64), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    return np.load(tmp_path / "x.npy", mmap_mode="r"), x, rng.integers(0, 3, 600)


def test_a_memmapped_uint8_fit_equals_the_fit_of_the_array_cast_in_memory(mapped):
    xm, x, y = mapped
    a, b = _model(), _model()
    ha = a.fit(xm, y, epochs=3, batch_size=32, validation_split=0.2, tol=None, verbose=0)
    hb = b.fit(x.astype(np.float32), y, epochs=3, batch_size=32, validation_split=0.2, tol=None, verbose=0)
    assert ha.history == hb.history
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(a.predict(xm), b.predict(x.astype(np.float32)))
    assert a.evaluate(xm, y) == b.evaluate(x.astype(np.float32), y)
    hv = a.fit(x.astype(np.float32), y, epochs=4, initial_epoch=3, validation_data=(xm, y), tol=None, verbose=0)
    assert np.isfinite(hv.history["val_loss"][0])


def test_check_features_keeps_a_memmap_in_its_file_and_batches_are_cast(mapped):
    xm, x, _ = mapped
    checked = check_features(xm, "x", np.float32, 64, lazy=True)
    assert checked.dtype == np.uint8 and np.shares_memory(checked, xm)  # no copy, no cast
    assert check_features(xm, "x", np.float32, 64).dtype == np.float32  # without lazy: cast once, as before
    assert check_features(x, "x", np.float32, 64, lazy=True).dtype == np.float32  # arrays in memory: as before
    batches = BatchIterator(checked, np.zeros(600), 50, np.float32)
    order = np.random.default_rng(1).permutation(600)
    for i, (xb, _) in enumerate(batches(order)):
        assert xb.dtype == np.float32
        np.testing.assert_array_equal(xb, x[order[i * 50:(i + 1) * 50]].astype(np.float32))


def test_fit_on_a_memmap_allocates_batches_not_the_array(tmp_path):
    rows = 40000
    np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(rows, 64))[:] = 7
    xm = np.load(tmp_path / "big.npy", mmap_mode="r")
    y = np.arange(rows) % 3
    model = _model()
    model.fit(xm[:256], y[:256], epochs=1, batch_size=128, verbose=0)  # build and warm the buffers
    tracemalloc.start()
    try:
        model.fit(xm, y, epochs=1, batch_size=128, tol=None, verbose=0)
        model.predict(xm)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    float32_copy = rows * 64 * 4  # 10 MB: what casting the whole input would allocate
    # what remains: the epoch's index order (8 bytes a row), predict's result (12 bytes a row), y's copies
    assert peak < float32_copy / 2, f"peak {peak / 1e6:.1f} MB against a {float32_copy / 1e6:.1f} MB float32 copy"


def test_a_nan_in_a_memmap_is_named_before_any_weight_changes(tmp_path):
    f = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float64, shape=(300, 64))
    f[:] = 0.5
    f[257, 3] = np.nan
    f[100, 0] = 1e300  # too large for float32: named first
    f.flush()
    xm = np.load(tmp_path / "f.npy", mmap_mode="r")
    model = _model()
    model.build(64)
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"x contains 1e\+300 at row 100, column 0, too large for float32"):
        model.fit(xm, np.zeros(300, int), verbose=0)
    xm_nan = np.load(tmp_path / "f.npy", mmap_mode="r+")
    xm_nan[100, 0] = 0.0
    with pytest.raises(ValueError, match="x contains nan at row 257, column 3"):
        model.predict(xm_nan)
    for p, q in zip(model.get_weights(), before):
        np.testing.assert_array_equal(p, q)
