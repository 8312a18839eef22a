"""nnlib._conv: the NHWC convolution and pooling kernels against the naive float64 loops of
tests/cnn_reference.py.

The references loop over output positions and window cells and apply TensorFlow's "same" rule
(OH = ceil(H/s), the odd padding cell after) on their own, so they share no code with the kernels.
"""

import numpy as np
import pytest
from cnn_reference import avg_pool, max_pool
from cnn_reference import conv2d as ref_conv
from cnn_reference import conv2d_grads as ref_conv_backward
from cnn_reference import pads as tf_pads

from nnlib import _conv as K

# -- references: tests/cnn_reference.py ----------------------------------------------


def ref_pool(x, pool, s, padding, kind, g=None):
    """(y, dx) of max or average pooling by the loop reference (dx zeros without ``g``)."""
    y, dx_for = (max_pool if kind == "max" else avg_pool)(x, pool, s, padding)
    return y, (np.zeros(x.shape) if g is None else dx_for(np.asarray(g, dtype=np.float64)))


# -- geometry ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 5, 7, 8, 13, 28])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
def test_output_size_and_same_pads_follow_tensorflow(size, kernel, stride, dilation):
    out, before, after = tf_pads(size, kernel, stride, dilation, "same")
    assert K.conv_output_size(size, kernel, stride, dilation, "same") == out
    assert K.same_pads(size, kernel, stride, dilation) == (before, after)
    if size >= dilation * (kernel - 1) + 1:
        assert K.conv_output_size(size, kernel, stride, dilation, "valid") == tf_pads(size, kernel, stride, dilation,
                                                                                       "valid")[0]
    else:
        with pytest.raises(ValueError, match="extent"):
            K.conv_output_size(size, kernel, stride, dilation, "valid")


def test_odd_same_padding_puts_the_extra_cell_after():
    assert K.same_pads(7, 2, 1, 1) == (0, 1)
    assert K.same_pads(8, 3, 2, 1) == (0, 1)
    assert K.same_pads(5, 4, 1, 1) == (1, 2)
    assert K.same_pads(28, 2, 2, 1) == (0, 0)
    assert K.pads_2d((7, 5), (2, 4), (1, 1), (1, 1), "same") == ((0, 1), (1, 2))
    assert K.pads_2d((7, 5), (2, 4), (1, 1), (1, 1), "valid") == ((0, 0), (0, 0))


def test_bad_arguments_raise():
    x, w = np.zeros((1, 4, 4, 1), np.float32), np.zeros((3, 3, 1, 2), np.float32)
    with pytest.raises(ValueError, match="padding"):
        K.conv2d_forward(x, w, padding="full")
    with pytest.raises(ValueError, match="extent"):
        K.conv2d_forward(x, w, dilation=(2, 2))
    with pytest.raises(TypeError, match="dtype"):
        K.conv2d_forward(x, w.astype(np.float64))
    with pytest.raises(TypeError, match="float32 or float64"):
        K.conv2d_forward(x.astype(np.int32), w)
    with pytest.raises(ValueError, match="positive int"):
        K.conv2d_forward(x, w, strides=(0, 1))
    with pytest.raises(TypeError, match="pair"):
        K.max_pool2d_forward(x, (2, 2, 2), (2, 2))
    with pytest.raises(ValueError, match="do not agree"):
        K.conv2d_forward(x, np.zeros((3, 3, 2, 2), np.float32))


# -- convolution -------------------------------------------------------------------

CONV_CASES = [
    # (N, H, W, C, F, (KH, KW), strides, dilation)
    (3, 7, 5, 3, 4, (3, 3), (1, 1), (1, 1)),
    (1, 7, 5, 1, 1, (3, 3), (2, 2), (1, 1)),
    (3, 7, 5, 3, 4, (2, 2), (1, 1), (1, 1)),
    (1, 7, 5, 3, 4, (2, 3), (2, 1), (1, 1)),
    (3, 7, 5, 1, 4, (2, 3), (3, 3), (1, 1)),
    (3, 7, 5, 3, 1, (3, 2), (1, 2), (2, 1)),
    (1, 7, 5, 3, 4, (2, 2), (2, 2), (2, 2)),
    (3, 8, 6, 1, 4, (3, 3), (3, 2), (1, 2)),
    (1, 9, 7, 3, 4, (3, 3), (2, 2), (2, 2)),
    (3, 5, 7, 3, 4, (1, 1), (2, 1), (1, 1)),
]


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_naive_loops(case, padding, rng):
    n, h, wd, c, f, kernel, s, d = case
    x = rng.standard_normal((n, h, wd, c))
    w = rng.standard_normal((*kernel, c, f))
    b = rng.standard_normal(f)
    y, cols = K.conv2d_forward(x, w, b, s, d, padding)
    np.testing.assert_allclose(y, ref_conv(x, w, b, s, d, padding), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    dx, dw, db = K.conv2d_backward(g, cols, w, x.shape, s, d, padding)
    rdx, rdw, rdb = ref_conv_backward(x, w, g, s, d, padding)
    np.testing.assert_allclose(dx, rdx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, rdw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, rdb, rtol=1e-12, atol=1e-12)


def test_same_padding_with_odd_totals_pads_after(rng):
    # 7x5 input, 2x4 kernel: pads (0, 1) rows and (1, 2) columns; check the values against an explicit np.pad
    x = rng.standard_normal((2, 7, 5, 3))
    w = rng.standard_normal((2, 4, 3, 2))
    y, _ = K.conv2d_forward(x, w, padding="same")
    assert y.shape == (2, 7, 5, 2)
    xp = np.pad(x, ((0, 0), (0, 1), (1, 2), (0, 0)))
    np.testing.assert_allclose(y, ref_conv(xp, w, None, (1, 1), (1, 1), "valid"), rtol=1e-12, atol=1e-12)
    # stride 2 on 8 rows with a 3x3 kernel: OH = 4, total pad 1, after
    x = rng.standard_normal((1, 8, 8, 1))
    w = rng.standard_normal((3, 3, 1, 1))
    y, _ = K.conv2d_forward(x, w, strides=(2, 2), padding="same")
    assert y.shape == (1, 4, 4, 1)
    xp = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    np.testing.assert_allclose(y, ref_conv(xp, w, None, (2, 2), (1, 1), "valid"), rtol=1e-12, atol=1e-12)


def test_conv_dx_matches_central_differences(rng):
    x = rng.standard_normal((2, 5, 4, 2))
    w = rng.standard_normal((2, 3, 2, 3))
    b = rng.standard_normal(3)
    g = rng.standard_normal((2, 3, 2, 3))  # stride 2, same: ceil(5/2) x ceil(4/2)

    def loss(xx):
        return float(np.sum(K.conv2d_forward(xx, w, b, (2, 2), (1, 1), "same")[0] * g))

    _, cols = K.conv2d_forward(x, w, b, (2, 2), (1, 1), "same")
    dx, _, _ = K.conv2d_backward(g, cols, w, x.shape, (2, 2), (1, 1), "same")
    num = np.zeros_like(x)
    eps = 1e-6
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num[idx] = (loss(xp) - loss(xm)) / (2 * eps)
    np.testing.assert_allclose(dx, num, rtol=1e-7, atol=1e-8)


def test_conv_backward_options_and_output_arrays(rng):
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    y, cols = K.conv2d_forward(x, w)  # no bias
    g = rng.standard_normal(y.shape).astype(np.float32)
    dw_out, db_out = np.empty_like(w), np.empty(4, np.float32)
    dx, dw, db = K.conv2d_backward(g, cols, w, x.shape, need_dx=False, dw_out=dw_out, db_out=db_out)
    assert dx is None and dw is dw_out and db is db_out
    _, rdw, rdb = ref_conv_backward(x, w, g, (1, 1), (1, 1), "valid")
    np.testing.assert_allclose(dw_out, rdw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db_out, rdb, rtol=1e-4, atol=1e-4)
    _, _, db = K.conv2d_backward(g, cols, w, x.shape, need_db=False)
    assert db is None
    with pytest.raises(ValueError, match="dw_out"):
        K.conv2d_backward(g, cols, w, x.shape, dw_out=np.empty(w.shape))  # float64 for float32 data
    with pytest.raises(ValueError, match="do not agree"):
        K.conv2d_backward(g, cols, w, (2, 7, 6, 3))


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_chunked_batches_give_the_same_results(padding, rng, monkeypatch):
    x = rng.standard_normal((5, 7, 6, 3))
    w = rng.standard_normal((3, 2, 3, 4))
    b = rng.standard_normal(4)
    y, cols = K.conv2d_forward(x, w, b, (2, 1), (1, 2), padding)
    y, cols = y.copy(), cols.copy()
    g = rng.standard_normal(y.shape)
    dx, dw, db = (a.copy() for a in K.conv2d_backward(g, cols, w, x.shape, (2, 1), (1, 2), padding))
    monkeypatch.setattr(K, "_CHUNK_BYTES", 1)  # one sample per chunk
    for tile in (1, 4, 12, 4096):  # the bias added to 1, 1, 3 (with a remainder) and 1024 rows at a time
        monkeypatch.setattr(K, "_BIAS_TILE", tile)
        y1, cols1 = K.conv2d_forward(x, w, b, (2, 1), (1, 2), padding, cache={})
        np.testing.assert_array_equal(cols1, cols)
        np.testing.assert_allclose(y1, y, rtol=1e-14, atol=1e-14)
    for got, want in zip(K.conv2d_backward(g, cols1, w, x.shape, (2, 1), (1, 2), padding, cache={}), (dx, dw, db)):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


# -- pooling -----------------------------------------------------------------------

POOL_CASES = [
    # (H, W, pool, strides, padding)
    (7, 5, (2, 2), (2, 2), "valid"),  # tiles, remainder row and column dropped
    (8, 6, (2, 2), (2, 2), "same"),  # tiles: no padding needed
    (7, 5, (2, 2), (2, 2), "same"),  # odd: one padding row/column after
    (7, 5, (3, 3), (1, 1), "valid"),  # overlapping windows
    (7, 5, (3, 3), (2, 2), "same"),
    (7, 5, (3, 2), (2, 1), "same"),
    (6, 6, (3, 3), (3, 3), "valid"),
    (7, 5, (1, 2), (1, 2), "valid"),
    (5, 7, (2, 3), (3, 2), "valid"),  # stride > pool: gaps
]


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool_matches_naive_loops(case, rng):
    h, wd, pool, s, padding = case
    x = rng.standard_normal((3, h, wd, 2))
    y, mask = K.max_pool2d_forward(x, pool, s, padding)
    g = rng.standard_normal(y.shape)
    ry, rdx = ref_pool(x, pool, s, padding, "max", g)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_allclose(K.max_pool2d_backward(g, mask, x.shape, pool, s, padding), rdx, rtol=1e-15, atol=0)
    y2, none = K.max_pool2d_forward(x, pool, s, padding, need_mask=False)
    assert none is None
    np.testing.assert_array_equal(y2, ry)


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool_ties_send_the_gradient_to_the_first_maximum(case, rng):
    h, wd, pool, s, padding = case
    x = rng.integers(0, 2, (2, h, wd, 3)).astype(np.float32)  # mostly ties
    x[0] = 0.0  # every window entirely tied
    y, mask = K.max_pool2d_forward(x, pool, s, padding)
    g = rng.standard_normal(y.shape).astype(np.float32)
    _, rdx = ref_pool(x, pool, s, padding, "max", g)
    np.testing.assert_allclose(K.max_pool2d_backward(g, mask, x.shape, pool, s, padding), rdx, rtol=1e-6, atol=1e-6)


def test_max_pool_first_max_is_row_major():
    x = np.zeros((1, 2, 2, 1))
    x[0, 0, 1, 0] = x[0, 1, 0, 0] = 1.0  # two maxima: (0, 1) comes first in row-major order
    y, mask = K.max_pool2d_forward(x, (2, 2), (2, 2))
    dx = K.max_pool2d_backward(np.ones((1, 1, 1, 1)), mask, x.shape, (2, 2), (2, 2))
    assert y[0, 0, 0, 0] == 1.0
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.0, 1.0], [0.0, 0.0]])


def test_max_pool_padding_never_wins_even_against_minus_inf():
    # "same" pads 5x5 with one cell on every side; every real cell is -inf, so padding cells tie the max
    assert K.pads_2d((5, 5), (3, 3), (2, 2), (1, 1), "same") == ((1, 1), (1, 1))
    x = np.full((1, 5, 5, 1), -np.inf)
    y, mask = K.max_pool2d_forward(x, (3, 3), (2, 2), "same")
    assert y.shape == (1, 3, 3, 1) and np.all(y == -np.inf)
    dx = K.max_pool2d_backward(np.ones(y.shape), mask, x.shape, (3, 3), (2, 2), "same")
    _, rdx = ref_pool(x, (3, 3), (2, 2), "same", "max", np.ones(y.shape))
    np.testing.assert_array_equal(dx, rdx)
    assert dx.sum() == 9.0  # no gradient lost in the padding
    assert dx[0, 0, 0, 0] == 1.0  # the top-left window's first real cell


@pytest.mark.parametrize("case", POOL_CASES)
def test_avg_pool_matches_naive_loops(case, rng):
    h, wd, pool, s, padding = case
    x = rng.standard_normal((3, h, wd, 2))
    y = K.avg_pool2d_forward(x, pool, s, padding)
    g = rng.standard_normal(y.shape)
    ry, rdx = ref_pool(x, pool, s, padding, "avg", g)
    np.testing.assert_allclose(y, ry, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(K.avg_pool2d_backward(g, x.shape, pool, s, padding), rdx, rtol=1e-12, atol=1e-12)


def test_avg_pool_same_divides_by_the_real_cells():
    x = np.ones((1, 3, 3, 1))
    x[0, 2, 2, 0] = 4.0
    # 2x2 stride 2 "same" on 3x3: OH = 2, one padding row and column after
    y = K.avg_pool2d_forward(x, (2, 2), (2, 2), "same")
    np.testing.assert_allclose(y[0, :, :, 0], [[1.0, 1.0], [1.0, 4.0]])  # windows of 4, 2, 2 and 1 real cells
    dx = K.avg_pool2d_backward(np.ones((1, 2, 2, 1)), x.shape, (2, 2), (2, 2), "same")
    np.testing.assert_allclose(dx[0, :, :, 0], [[0.25, 0.25, 0.5], [0.25, 0.25, 0.5], [0.5, 0.5, 1.0]])


def test_global_avg_pool(rng):
    x = rng.standard_normal((3, 7, 5, 4))
    y = K.global_avg_pool2d_forward(x)
    np.testing.assert_allclose(y, x.mean(axis=(1, 2)), rtol=1e-13)
    g = rng.standard_normal((3, 4))
    dx = K.global_avg_pool2d_backward(g, x.shape)
    np.testing.assert_allclose(dx, np.broadcast_to(g[:, None, None, :] / 35, x.shape), rtol=1e-15)


# -- contract: dtypes, read-only inputs, reused caches -------------------------------


def _all_kernels(x, w, b, cache):
    """Every kernel's outputs for one batch (copies, as the cache is reused)."""
    out = {}
    for padding in ("valid", "same"):
        y, cols = K.conv2d_forward(x, w, b, (2, 1), (1, 2), padding, cache)
        out[f"conv y {padding}"], out[f"conv cols {padding}"] = y.copy(), cols.copy()
        g = np.linspace(-1, 1, y.size, dtype=x.dtype).reshape(y.shape)
        for name, a in zip(("dx", "dw", "db"), K.conv2d_backward(g, cols, w, x.shape, (2, 1), (1, 2), padding,
                                                                 cache=cache)):
            out[f"conv {name} {padding}"] = a.copy()
        for pool, s in (((2, 2), (2, 2)), ((3, 3), (2, 1))):
            y, mask = K.max_pool2d_forward(x, pool, s, padding, cache)
            out[f"max y {pool} {padding}"] = y.copy()
            g = np.linspace(-1, 1, y.size, dtype=x.dtype).reshape(y.shape)
            out[f"max dx {pool} {padding}"] = K.max_pool2d_backward(g, mask, x.shape, pool, s, padding, cache).copy()
            out[f"avg y {pool} {padding}"] = K.avg_pool2d_forward(x, pool, s, padding, cache).copy()
            out[f"avg dx {pool} {padding}"] = K.avg_pool2d_backward(g, x.shape, pool, s, padding, cache).copy()
    y = K.global_avg_pool2d_forward(x, cache)
    out["gap y"] = y.copy()
    out["gap dx"] = K.global_avg_pool2d_backward(y, x.shape, cache).copy()
    return out


def test_float32_stays_float32(rng):
    x = rng.standard_normal((2, 7, 5, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    for name, a in _all_kernels(x, w, b, {}).items():
        assert a.dtype == np.float32, name
    _, mask = K.max_pool2d_forward(x, (2, 2), (2, 2))
    assert mask.dtype == np.bool_


def test_inputs_are_not_mutated(rng):
    x = rng.standard_normal((2, 7, 5, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    before = [a.copy() for a in (x, w, b)]
    _all_kernels(x, w, b, {})
    for a, a0 in zip((x, w, b), before):
        np.testing.assert_array_equal(a, a0)
    # the backward passes' inputs too: grad_out, cols and the mask
    y, cols = K.conv2d_forward(x, w, b, padding="same")
    g = rng.standard_normal(y.shape).astype(np.float32)
    g0, cols0 = g.copy(), cols.copy()
    K.conv2d_backward(g, cols, w, x.shape, padding="same")
    np.testing.assert_array_equal(g, g0)
    np.testing.assert_array_equal(cols, cols0)
    for pool, s in (((2, 2), (2, 2)), ((3, 3), (1, 1))):
        y, mask = K.max_pool2d_forward(x, pool, s, "same")
        g = rng.standard_normal(y.shape).astype(np.float32)
        g0, mask0 = g.copy(), mask.copy()
        K.max_pool2d_backward(g, mask, x.shape, pool, s, "same")
        K.avg_pool2d_backward(g, x.shape, pool, s, "same")
        np.testing.assert_array_equal(g, g0)
        np.testing.assert_array_equal(mask, mask0)


def test_a_reused_cache_is_right_across_batch_sizes(rng):
    w = rng.standard_normal((3, 3, 3, 4))
    b = rng.standard_normal(4)
    x3 = rng.standard_normal((3, 7, 5, 3))
    x1 = rng.standard_normal((1, 7, 5, 3)) * 10.0
    cache = {}
    runs = [(x, _all_kernels(x, w, b, cache)) for x in (x3, x1, x3, x1)]
    for x, got in runs:
        want = _all_kernels(x, w, b, {})
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


# -- window-major blocks: a convolution computing only what a 2x2 pooling after it reads -----------------


def _blocks(image):
    """(N, H, W, C) -> window-major (N, 2, 2, H//2, W//2, C): blocks[n, a, b, i, j] = image[n, 2i + a, 2j + b]."""
    n, h, w, c = image.shape
    return image[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 2, 4, 1, 3, 5)


def _image(blocks, hw):
    """The inverse of _blocks, zeros in a dropped odd row or column."""
    n, _, _, oh, ow, c = blocks.shape
    image = np.zeros((n, *hw, c), blocks.dtype)
    image[:, :2 * oh, :2 * ow] = blocks.transpose(0, 3, 1, 4, 2, 5).reshape(n, 2 * oh, 2 * ow, c)
    return image


@pytest.mark.parametrize("c_in, hw, strides, dilation, padding", [
    (1, (9, 8), (1, 1), (1, 1), "valid"),  # odd output rows: the last one is not computed
    (1, (8, 8), (1, 1), (1, 1), "same"),
    (3, (11, 10), (2, 1), (1, 2), "same"),
    (4, (9, 9), (1, 1), (2, 1), "valid"),
])
@pytest.mark.parametrize("bias", [True, False])
def test_window_major_convolution_is_the_same_convolution(c_in, hw, strides, dilation, padding, bias, rng):
    x = rng.standard_normal((5, *hw, c_in))
    w = rng.standard_normal((3, 3, c_in, 4))
    b = rng.standard_normal(4) if bias else None
    y, cols = (a.copy() for a in K.conv2d_forward(x, w, b, strides, dilation, padding))
    cache = {}
    yb, colsb = K.conv2d_forward(x, w, b, strides, dilation, padding, cache, window_major=True)
    assert yb.shape == (5, 2, 2, y.shape[1] // 2, y.shape[2] // 2, 4)
    np.testing.assert_allclose(yb, _blocks(y), rtol=1e-13, atol=1e-13)
    # a gradient for the computed outputs only: the same as one with zeros on the dropped row and column
    gb = rng.standard_normal(yb.shape)
    dx_b, dw_b, db_b = (None if a is None else a.copy() for a in
                        K.conv2d_backward(gb, colsb, w, x.shape, strides, dilation, padding, need_db=bias,
                                          cache=cache))
    dx, dw, db = K.conv2d_backward(_image(gb, y.shape[1:3]), cols, w, x.shape, strides, dilation, padding,
                                   need_db=bias)
    np.testing.assert_allclose(dx_b, dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw_b, dw, rtol=1e-12, atol=1e-12)
    if bias:
        np.testing.assert_allclose(db_b, db, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="do not agree"):
        K.conv2d_backward(gb[:, :, :, :-1], colsb, w, x.shape, strides, dilation, padding, cache=cache)


@pytest.mark.parametrize("hw", [(6, 8), (7, 5)])
@pytest.mark.parametrize("relu", [False, True])
def test_pooling_of_blocks_is_bit_for_bit_the_pooling_of_the_image(hw, relu, rng):
    x = rng.integers(-2, 3, (4, *hw, 3)).astype(np.float32)  # ties everywhere, windows of non-positive maxima
    x[0] = 0.0
    y, mask = K.max_pool2d_forward(x, (2, 2), (2, 2), relu=relu)
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx = K.max_pool2d_backward(g, mask, x.shape, (2, 2), (2, 2))
    yb, maskb = K.max_pool2d_blocks_forward(np.ascontiguousarray(_blocks(x)), relu=relu)
    np.testing.assert_array_equal(yb, y)
    np.testing.assert_array_equal(_image(K.max_pool2d_blocks_backward(g, maskb), hw), dx)
    y_plain, _ = K.max_pool2d_blocks_forward(np.ascontiguousarray(_blocks(x)), need_mask=False, relu=relu)
    np.testing.assert_array_equal(y_plain, y)
    xf = rng.standard_normal((4, *hw, 3))
    np.testing.assert_array_equal(K.avg_pool2d_blocks_forward(np.ascontiguousarray(_blocks(xf))),
                                  K.avg_pool2d_forward(xf, (2, 2), (2, 2)))
    gf = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(_image(K.avg_pool2d_blocks_backward(gf), hw),
                                  K.avg_pool2d_backward(gf, xf.shape, (2, 2), (2, 2)))


def test_pooling_of_blocks_refuses_what_is_not_blocks(rng):
    with pytest.raises(ValueError, match="window-major blocks"):
        K.max_pool2d_blocks_forward(rng.standard_normal((2, 3, 2, 4, 4, 1)))
    _, mask = K.max_pool2d_blocks_forward(rng.standard_normal((2, 2, 2, 4, 4, 1)))
    with pytest.raises(ValueError, match="mask must be"):
        K.max_pool2d_blocks_backward(rng.standard_normal((2, 4, 3, 1)), mask)


def test_narrow_patches_keep_their_bias_row_right_when_a_cache_is_reused(rng):
    """A 3x3 kernel on one channel keeps its patches transposed with a row of ones for the bias, written once
    per buffer: a call without bias (zeros there), a batch of another size, then with bias again."""
    w, b = rng.standard_normal((3, 3, 1, 4)), rng.standard_normal(4)
    cache = {}
    for n, bias in ((3, b), (3, None), (5, b), (3, b), (3, None)):
        x = rng.standard_normal((n, 6, 6, 1))
        y, cols = K.conv2d_forward(x, w, bias, cache=cache)
        y_fresh, _ = K.conv2d_forward(x, w, bias)
        np.testing.assert_allclose(y, y_fresh, rtol=1e-13, atol=1e-13)
        g = rng.standard_normal(y.shape)
        got = K.conv2d_backward(g, cols, w, x.shape, need_dx=False, need_db=bias is not None, cache=cache)
        want = K.conv2d_backward(g, cols.copy(), w, x.shape, need_dx=False, need_db=bias is not None)
        for a, e in zip(got[1:], want[1:]):
            if e is not None:
                np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


def test_narrow_patches_with_another_kernel_on_a_reused_cache(rng):
    """The rows after the patch entries depend on the kernel's size too: a 3x3 then a 2x2 kernel ("same":
    as many positions) on one cache, with a bias, match a fresh cache."""
    cache = {}
    x = rng.standard_normal((2, 6, 6, 1))
    for kernel in (3, 2, 3):
        w, b = rng.standard_normal((kernel, kernel, 1, 4)), rng.standard_normal(4)
        y, _ = K.conv2d_forward(x, w, b, padding="same", cache=cache)
        np.testing.assert_allclose(y, K.conv2d_forward(x, w, b, padding="same")[0], rtol=1e-13, atol=1e-13)


def test_narrow_patches_survive_a_full_cache(rng):
    """Buffers taken after the patches may clear a full cache (cached_buffer keeps at most 32 entries): the
    backward pass still finds the forward's patches."""
    cache = {f"other/{i}": None for i in range(28)}  # y and the patches fill it to 32; the weights clear it
    w, b = rng.standard_normal((3, 3, 1, 2)), rng.standard_normal(2)
    x = rng.standard_normal((3, 5, 5, 1))
    y, cols = K.conv2d_forward(x, w, b, cache=cache)
    assert "other/0" not in cache  # it was cleared
    g = rng.standard_normal(y.shape)
    _, dw, db = K.conv2d_backward(g, cols, w, x.shape, need_dx=False, cache=cache)
    _, dw_fresh, db_fresh = K.conv2d_backward(g, cols.copy(), w, x.shape, need_dx=False)
    np.testing.assert_allclose(dw, dw_fresh, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, db_fresh, rtol=1e-12, atol=1e-12)


# -- the fused inference pass: convolution and 2x2 pooling over blocks of images ---------------------


@pytest.mark.parametrize("c_in, hw, strides, dilation, padding", [
    (1, (9, 8), (1, 1), (1, 1), "valid"),  # narrow patches (bias in the product); an odd output row dropped
    (1, (8, 7), (2, 1), (1, 1), "same"),
    (3, (11, 10), (2, 1), (1, 2), "same"),  # patch rows, bias added after the pooling
    (4, (9, 9), (1, 1), (2, 1), "valid"),
])
@pytest.mark.parametrize("pool, relu", [("max", False), ("max", True), ("avg", False)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("block_bytes", [1, 1 << 30])  # one image per block, or the whole batch in one
def test_fused_convolution_and_pooling_is_the_loop_reference(c_in, hw, strides, dilation, padding, pool, relu,
                                                              bias, block_bytes, rng, monkeypatch):
    monkeypatch.setattr(K, "_FUSED_BLOCK_BYTES", block_bytes)
    x = rng.standard_normal((5, *hw, c_in))
    w = rng.standard_normal((3, 3, c_in, 4))
    b = rng.standard_normal(4) if bias else None
    conv = ref_conv(x, w, np.zeros(4) if b is None else b, strides, dilation, padding)
    want, _ = ref_pool(np.maximum(conv, 0) if relu else conv, (2, 2), (2, 2), "valid", pool)
    x_before = x.copy()
    got = K.conv2d_pool2d_forward(x, w, b, strides, dilation, padding, pool, relu)
    assert got.shape == want.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(x, x_before)
    if relu:
        assert (got == 0).any() and (got > 0).any()  # the ReLU cut something and kept something


def test_fused_pass_keeps_float32_and_reuses_its_cache_across_batch_sizes(rng, monkeypatch):
    monkeypatch.setattr(K, "_FUSED_BLOCK_BYTES", 3 * 36 * 13 * 4)  # 3 images per block: a partial last block
    x = rng.standard_normal((8, 8, 8, 2)).astype(np.float32)
    w = rng.standard_normal((3, 3, 2, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    want, _ = ref_pool(ref_conv(x, w, b, padding="same"), (2, 2), (2, 2), "valid", "max")
    cache = {}
    for n in (8, 5, 8, 1):
        got = K.conv2d_pool2d_forward(x[:n], w, b, padding="same", cache=cache)
        assert got.dtype == np.float32 and got.shape == (n, 4, 4, 5)
        np.testing.assert_allclose(got, want[:n], rtol=1e-5, atol=1e-5)


def test_fused_pass_refuses_bad_arguments(rng):
    x, w = rng.standard_normal((2, 6, 6, 1)), rng.standard_normal((3, 3, 1, 2))
    with pytest.raises(ValueError, match="pool must be 'max' or 'avg', got 'min'"):
        K.conv2d_pool2d_forward(x, w, pool="min")
    with pytest.raises(ValueError, match="relu=True needs pool='max'"):
        K.conv2d_pool2d_forward(x, w, pool="avg", relu=True)
    with pytest.raises(ValueError, match="at least 2x2"):
        K.conv2d_pool2d_forward(rng.standard_normal((2, 3, 6, 1)), w)
    with pytest.raises(TypeError, match="w must have dtype float64"):
        K.conv2d_pool2d_forward(x, w.astype(np.float32))
    with pytest.raises(ValueError, match="do not agree"):
        K.conv2d_pool2d_forward(x, rng.standard_normal((3, 3, 2, 2)))
