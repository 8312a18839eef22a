"""The batch split over threads (nnlib._threads): its controls, its region, and results that do not
depend on it (each sample's outputs bit for bit; weight gradients, sums over the batch, to rounding).

Tests use tiny arrays, so they lower MIN_SPLIT_ELEMENTS to make every pass split, and use 3 threads so
the parts are uneven (the machine may have fewer cores: correctness does not need them)."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import nnlib as nn
from nnlib import _blas, _conv, _threads

needs_blas_control = pytest.mark.skipif(_blas.blas_threads() is None,
                                        reason="NumPy's OpenBLAS is not bound here: batches are never split")


@pytest.fixture
def split_everything(monkeypatch):
    """Three threads, and a split for every pass of at least 3 samples."""
    monkeypatch.setattr(_threads, "MIN_SPLIT_ELEMENTS", 1)
    monkeypatch.setattr(_threads, "MIN_SPLIT_PRODUCT", 1)
    before = nn.get_num_threads()
    nn.set_num_threads(3)
    yield
    nn.set_num_threads(before)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError),
                                        ("2", TypeError)])
def test_set_num_threads_refuses_what_is_not_a_positive_int(bad, error):
    before = nn.get_num_threads()
    with pytest.raises(error, match="set_num_threads: n must be a positive int"):
        nn.set_num_threads(bad)
    assert nn.get_num_threads() == before


@pytest.mark.parametrize("value, expected", [("3", 3), (" 1 ", 1)])
def test_the_environment_sets_the_default(monkeypatch, value, expected):
    monkeypatch.setenv("NNLIB_NUM_THREADS", value)
    assert _threads._default_threads() == expected


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_environment_value_is_named(monkeypatch, value):
    monkeypatch.setenv("NNLIB_NUM_THREADS", value)
    with pytest.raises(ValueError, match=f"NNLIB_NUM_THREADS must be a positive int, got '{value}'"):
        _threads._default_threads()


def test_nothing_is_split_outside_a_region(split_everything):
    assert _threads.partition(10, 10**9) == [(0, 10)]


@needs_blas_control
def test_a_region_splits_and_runs_blas_on_one_thread_then_restores_it(split_everything):
    before = _blas.blas_threads()
    with _threads.parallel_region():
        assert _blas.blas_threads() == 1
        assert _threads.partition(10, 10**9) == [(0, 3), (3, 6), (6, 10)]
        assert _threads.partition(2, 10**9) == [(0, 1), (1, 2)]  # never an empty part
        with _threads.parallel_region():  # nested
            assert _blas.blas_threads() == 1
        assert _blas.blas_threads() == 1
    assert _blas.blas_threads() == before
    assert _threads.partition(10, 10**9) == [(0, 10)]


@needs_blas_control
def test_small_passes_are_not_split():
    before = nn.get_num_threads()
    nn.set_num_threads(2)
    try:
        with _threads.parallel_region():
            assert _threads.partition(128, 2 * _threads.MIN_SPLIT_ELEMENTS - 1) == [(0, 128)]
            assert len(_threads.partition(128, 2 * _threads.MIN_SPLIT_ELEMENTS)) == 2
    finally:
        nn.set_num_threads(before)


@needs_blas_control
def test_set_num_threads_while_another_thread_runs_parts(split_everything):
    """Changing the count drops the pool for the next run(); a run() holding the old one finishes on it."""
    errors, done = [], threading.Event()

    def keep_running():
        try:
            with _threads.parallel_region():
                while not done.is_set():
                    _threads.run(_threads.partition(9, 10**9), lambda k, start, stop: None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to land between getting and using a pool
    worker = threading.Thread(target=keep_running)
    worker.start()
    try:
        for n in (2, 3) * 1500:
            nn.set_num_threads(n)
            if errors:
                break
    finally:
        done.set()
        worker.join(30)
        sys.setswitchinterval(interval)
    assert not worker.is_alive() and errors == []


def test_one_thread_never_splits(monkeypatch):
    monkeypatch.setattr(_threads, "MIN_SPLIT_ELEMENTS", 1)
    before = nn.get_num_threads()
    nn.set_num_threads(1)
    try:
        with _threads.parallel_region():
            assert _threads.partition(10, 10**9) == [(0, 10)]
    finally:
        nn.set_num_threads(before)


@needs_blas_control
def test_run_covers_every_part_on_worker_threads_and_reraises_after_all_finish(split_everything):
    seen, names = {}, set()
    lock = threading.Lock()

    def record(k, start, stop):
        with lock:
            seen[k] = (start, stop)
            names.add(threading.current_thread().name)

    with _threads.parallel_region():
        parts = _threads.partition(9, 10**9)
        _threads.run(parts, record)
    assert seen == dict(enumerate(parts)) and "MainThread" in names and len(names) >= 2  # a worker may take two

    finished = []

    def fail_first(k, start, stop):
        if k == 0:
            raise RuntimeError("part 0")
        finished.append(k)

    with _threads.parallel_region(), pytest.raises(RuntimeError, match="part 0"):
        _threads.run(_threads.partition(9, 10**9), fail_first)
    assert sorted(finished) == [1, 2]  # the others ran to the end before the error came out


@needs_blas_control
def test_a_split_inside_a_worker_runs_inline(split_everything):
    inner = []

    def outer(k, start, stop):
        inner.append(_threads.partition(6, 10**9))

    with _threads.parallel_region():
        _threads.run(_threads.partition(9, 10**9), outer)
    assert inner.count([(0, 6)]) == 2 and len(inner) == 3  # the caller's own part may split, workers never


def _conv_results(x, w, b, strides, padding, window_major, rng_seed):
    cache: dict = {}
    y, cols = _conv.conv2d_forward(x, w, b, strides, (1, 1), padding, cache, window_major=window_major)
    g = np.random.default_rng(rng_seed).standard_normal(y.shape).astype(x.dtype)
    dx, dw, db = _conv.conv2d_backward(g, cols, w, x.shape, strides, (1, 1), padding, cache=cache)
    return [a.copy() for a in (y, dx, dw, db)]


@needs_blas_control
@pytest.mark.parametrize("c_in, padding, strides", [(1, "valid", (1, 1)), (1, "same", (2, 2)), (3, "same", (1, 1)),
                                                    (4, "valid", (2, 1))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("window_major", [False, True])
def test_conv_split_over_threads_gives_the_same_results(split_everything, c_in, padding, strides, dtype,
                                                        window_major, rng):
    """Each sample's dx bit for bit; y (other row blocks of the product), dW and db (the threads' shares are
    added) to rounding. c_in=1 is the transposed patch matrix of narrow kernels (bias in the product)."""
    x = rng.standard_normal((7, 9, 8, c_in)).astype(dtype)
    w = rng.standard_normal((3, 3, c_in, 5)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    plain = _conv_results(x, w, b, strides, padding, window_major, 1)
    with _threads.parallel_region():
        split = _conv_results(x, w, b, strides, padding, window_major, 1)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for name, got, want in zip(("y", "dx", "dW", "db"), split, plain):
        if name == "dx":
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, err_msg=name)


@needs_blas_control
@pytest.mark.parametrize("relu", [False, True])
def test_pooling_of_blocks_split_over_threads_is_bit_for_bit_the_same(split_everything, relu, rng):
    x = rng.integers(-2, 3, (7, 2, 2, 3, 4, 3)).astype(np.float32)
    y, mask = (a.copy() for a in _conv.max_pool2d_blocks_forward(x, {}, relu=relu))
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx = _conv.max_pool2d_blocks_backward(g, mask, {}).copy()
    avg, avg_dx = _conv.avg_pool2d_blocks_forward(x, {}).copy(), _conv.avg_pool2d_blocks_backward(g, {}).copy()
    with _threads.parallel_region():
        y2, mask2 = _conv.max_pool2d_blocks_forward(x, {}, relu=relu)
        np.testing.assert_array_equal(y2, y)
        np.testing.assert_array_equal(mask2, mask)
        np.testing.assert_array_equal(_conv.max_pool2d_blocks_backward(g, mask2, {}), dx)
        np.testing.assert_array_equal(_conv.avg_pool2d_blocks_forward(x, {}), avg)
        np.testing.assert_array_equal(_conv.avg_pool2d_blocks_backward(g, {}), avg_dx)


@needs_blas_control
@pytest.mark.parametrize("c_in, padding, pool, relu", [(1, "valid", "max", True), (3, "same", "avg", False),
                                                       (2, "same", "max", True)])
def test_the_fused_inference_pass_split_over_threads_is_bit_for_bit_the_same(split_everything, monkeypatch, c_in,
                                                                             padding, pool, relu, rng):
    """Its blocks of images are the same whichever thread runs them, so every value is."""
    monkeypatch.setattr(_conv, "_FUSED_BLOCK_BYTES", 1)  # a block per image: 7 blocks over 3 threads
    x = rng.standard_normal((7, 9, 8, c_in)).astype(np.float32)
    w = rng.standard_normal((3, 3, c_in, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    plain = _conv.conv2d_pool2d_forward(x, w, b, padding=padding, pool=pool, relu=relu).copy()
    with _threads.parallel_region():
        assert len(_threads.partition(7, 7)) == 3
        np.testing.assert_array_equal(_conv.conv2d_pool2d_forward(x, w, b, padding=padding, pool=pool, relu=relu),
                                      plain)


@needs_blas_control
@pytest.mark.parametrize("pool, strides, padding", [((2, 2), (2, 2), "valid"), ((3, 3), (2, 2), "same"),
                                                    ((2, 3), (2, 3), "valid")])
@pytest.mark.parametrize("relu", [False, True])
def test_pooling_split_over_threads_is_bit_for_bit_the_same(split_everything, pool, strides, padding, relu, rng):
    x = rng.integers(-2, 3, (7, 9, 7, 3)).astype(np.float32)  # ties, and windows of non-positive maxima
    plain_y, plain_mask = (a.copy() for a in _conv.max_pool2d_forward(x, pool, strides, padding, {}, relu=relu))
    g = rng.standard_normal(plain_y.shape).astype(np.float32)
    plain_dx = _conv.max_pool2d_backward(g, plain_mask, x.shape, pool, strides, padding).copy()
    plain_avg = _conv.avg_pool2d_forward(x, pool, strides, padding).copy()
    plain_avg_dx = _conv.avg_pool2d_backward(g, x.shape, pool, strides, padding).copy()
    with _threads.parallel_region():
        y, mask = _conv.max_pool2d_forward(x, pool, strides, padding, {}, relu=relu)
        np.testing.assert_array_equal(y, plain_y)
        np.testing.assert_array_equal(mask, plain_mask)
        np.testing.assert_array_equal(_conv.max_pool2d_backward(g, mask, x.shape, pool, strides, padding), plain_dx)
        np.testing.assert_array_equal(_conv.avg_pool2d_forward(x, pool, strides, padding), plain_avg)
        np.testing.assert_array_equal(_conv.avg_pool2d_backward(g, x.shape, pool, strides, padding), plain_avg_dx)


@needs_blas_control
def test_global_average_pooling_split_over_threads_is_bit_for_bit_the_same(split_everything, rng):
    x, g = rng.standard_normal((7, 5, 4, 3)), rng.standard_normal((7, 3))
    plain_y = _conv.global_avg_pool2d_forward(x).copy()
    plain_dx = _conv.global_avg_pool2d_backward(g, x.shape).copy()
    with _threads.parallel_region():
        np.testing.assert_array_equal(_conv.global_avg_pool2d_forward(x), plain_y)
        np.testing.assert_array_equal(_conv.global_avg_pool2d_backward(g, x.shape), plain_dx)


@needs_blas_control
def test_dense_products_split_over_threads(split_everything, rng):
    x, w, g = rng.standard_normal((10, 6)), rng.standard_normal((6, 4)), rng.standard_normal((10, 4))
    with _threads.parallel_region():
        y = _threads.matmul_rows(x, w, np.empty((10, 4)))
        dw = _threads.matmul_t_sum(x, g, np.empty((6, 4)), {}, "shares")
    np.testing.assert_array_equal(y, x @ w)  # rows of one product each
    np.testing.assert_allclose(dw, x.T @ g, rtol=1e-13, atol=1e-13)
    wide, g_wide = rng.standard_normal((4, 20)), rng.standard_normal((4, 3))  # more outputs than rows
    with _threads.parallel_region():
        dw_wide = _threads.matmul_t_sum(wide, g_wide, np.empty((20, 3)), {}, "shares")
    np.testing.assert_allclose(dw_wide, wide.T @ g_wide, rtol=1e-13, atol=1e-13)


def _small_cnn():
    model = nn.Sequential([nn.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)), nn.MaxPooling2D(2),
                           nn.Conv2D(5, 2, padding="same", activation="relu"), nn.AveragePooling2D(2),
                           nn.Flatten(), nn.Dense(6, activation="relu"), nn.Dense(3)], seed=1)
    model.compile(nn.Adam(lr=1e-2), "softmax_cross_entropy")
    return model


@needs_blas_control
def test_a_cnn_trains_the_same_split_and_whole(split_everything, rng):
    """fit runs in a region: three threads follow one thread's training to rounding, and repeat themselves
    bit for bit (the split is fixed by the thread count and the batch size)."""
    x = rng.standard_normal((40, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 40)

    def trained(threads):
        nn.set_num_threads(threads)
        model = _small_cnn()
        history = model.fit(x, y, epochs=3, batch_size=16, tol=None, verbose=0)
        return model, history.history["loss"]

    one, loss_one = trained(1)
    three, loss_three = trained(3)
    again, loss_again = trained(3)
    np.testing.assert_allclose(loss_three, loss_one, rtol=1e-4)
    for a, b, c in zip(three.get_weights(), one.get_weights(), again.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
        np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(three.predict(x), one.predict(x), rtol=1e-4, atol=1e-6)
    assert _blas.blas_threads() > 0 and not _threads._region_depth  # the region closed


def test_models_without_conv_or_pooling_run_outside_a_region():
    mlp = nn.Sequential([nn.Dense(4, input_dim=3), nn.Dense(2)])
    cnn = _small_cnn()
    assert not any(layer.splits_batch for layer in mlp.layers)
    assert [type(layer).__name__ for layer in cnn.layers if layer.splits_batch] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "AveragePooling2D"]
    from nnlib import training
    assert type(training.parallel_for(mlp)).__name__ == "nullcontext"


@needs_blas_control
@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork on this platform")
def test_a_forked_child_starts_its_own_workers(split_everything):
    import os
    import signal

    with _threads.parallel_region():
        _threads.run(_threads.partition(6, 10**9), lambda k, start, stop: None)  # the parent's pool exists
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a split must not wait on the parent's (absent) threads
        signal.alarm(20)  # a hang ends the child, and the parent reads nothing
        try:
            seen = []
            with _threads.parallel_region():
                _threads.run(_threads.partition(6, 10**9), lambda k, start, stop: seen.append(k))
            os.write(write, bytes(sorted(seen)))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        assert pipe.read() == bytes([0, 1, 2])
    assert os.waitpid(pid, 0)[1] == 0
