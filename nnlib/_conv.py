"""NumPy kernels for 2-D convolution and pooling on channels-last (NHWC) float batches.

Private: the layers wrap these functions; they hold no model state. Every array
argument is read only. Scratch and output arrays come from the optional ``cache``
dict (see :func:`nnlib._buffers.cached_buffer`): the caller owns a returned array
only until its next call with the same cache, which is what lets a training step
run without fresh allocations. Without a cache every call allocates.

Inside :func:`nnlib._threads.parallel_region` each function splits its batch over threads
(every buffer is taken from the cache first, on the calling thread); each sample's
results are the same either way, and only ``dW``/``db``, sums over the batch, add the
threads' shares in one more step.

Conventions (Keras/TensorFlow): ``x`` is (N, H, W, C); a kernel ``w`` is
(KH, KW, C_in, C_out); strides ``(sh, sw)`` and dilations ``(dh, dw)`` are pairs of
positive ints; a kernel's extent is ``ek = d*(k - 1) + 1``. ``"valid"`` pads nothing,
``OH = (H - ekh)//sh + 1``; ``"same"`` gives ``OH = ceil(H/sh)`` with total padding
``max((OH - 1)*sh + ekh - H, 0)``, split ``total//2`` before, the rest (the extra
row or column) after.

How the convolution is fast: ``x`` becomes a patch matrix ("cols", one row per
output position, columns in (kh, kw, c) order) so that the whole layer is one BLAS
product with ``w.reshape(KH*KW*C, C_out)``; the backward pass is two more products
and a col2im that adds the patches back, one strided slice per kernel offset.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._buffers import cached_buffer, cached_ones
from ._threads import partition, run

__all__ = [
    "conv_output_size",
    "same_pads",
    "pads_2d",
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_pool2d_forward",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
    "max_pool2d_blocks_forward",
    "max_pool2d_blocks_backward",
    "avg_pool2d_blocks_forward",
    "avg_pool2d_blocks_backward",
]

Pair = tuple[int, int]
Pads = tuple[tuple[int, int], tuple[int, int]]

# Patch-matrix rows are built and multiplied in chunks of about this many bytes, so that
# the rows im2col just wrote (or the dcols rows col2im is about to read) are still in
# cache. Measured on the Keras-convnet shapes (2-core EPYC, 1 MiB L2, 32 MiB L3): see
# the _chunk_samples docstring.
_CHUNK_BYTES = 2 << 20
# The bias is added to R = _BIAS_TILE // F rows at a time (see _add_bias).
_BIAS_TILE = 512
# Patches of fewer than _NARROW values (a 3x3 kernel on one channel: 9) are stored transposed, one row of
# N*OH*OW per patch entry, padded to _NARROW rows: the entries, a row of ones (the bias), zeros. OpenBLAS's
# weight-gradient product cols^T g on 9-wide patch rows is slow and does not speed up on two threads; measured
# on the Keras convnet's first layer (86528 positions, 2 threads each taking half): that product 3.6 ms on
# 9-wide rows, 2.0 ms on 16 rows; the patch copies 0.39 ms (0.62 ms for 9-wide rows); the forward product
# adds the bias itself, 2.2 ms against 2.4 ms for 9-wide rows and a bias pass.
_NARROW = 16
# conv2d_pool2d_forward (inference) works on blocks of images whose patches and convolution outputs take about
# this many bytes. Measured on 2 threads (2-core EPYC, 1 MiB L2 each), Keras convnet's and the reference CNN's
# layers with their pooling, 193 and 167 images, medians of 25 interleaved calls against the unfused pass:
# 7.2, 10.6, 8.6, 17.2 ms; blocks of 256 KiB 19.2, 23.7, 16.8, 21.6 (small operations lose to each one's
# overhead and the two threads' turns at the GIL); 1 MiB 7.9, 9.5, 7.0, 15.3; 2 MiB 6.1, 8.8, 5.5, 13.8;
# 4 MiB 6.2, 10.3, 6.1, 15.0.
_FUSED_BLOCK_BYTES = 2 << 20


# -- geometry --------------------------------------------------------------------


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


def _pair(value: Any, what: str) -> Pair:
    """``value`` as a pair of positive ints; a single int means the same for both axes."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        v = _positive_int(value, what)
        return v, v
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{what} must be a pair of positive ints, got {value!r}")
    return _positive_int(value[0], what), _positive_int(value[1], what)


def _check_padding(padding: Any) -> str:
    if padding not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return padding


def conv_output_size(size: int, kernel: int, stride: int = 1, dilation: int = 1, padding: str = "valid") -> int:
    """Output length along one axis.

    ``"valid"``: ``(size - ek)//stride + 1`` with ``ek = dilation*(kernel - 1) + 1``;
    ``"same"``: ``ceil(size/stride)`` (Keras/TensorFlow).

    Raises
    ------
    ValueError
        For ``"valid"`` padding when ``size`` is smaller than the kernel's extent,
        or for a padding other than ``"valid"``/``"same"``.
    """
    size = _positive_int(size, "size")
    kernel = _positive_int(kernel, "kernel")
    stride = _positive_int(stride, "stride")
    dilation = _positive_int(dilation, "dilation")
    if _check_padding(padding) == "same":
        return -(-size // stride)
    extent = dilation * (kernel - 1) + 1
    if size < extent:
        raise ValueError(f"'valid' padding needs size >= the kernel's extent {extent}, got {size}")
    return (size - extent) // stride + 1


def same_pads(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """``(before, after)`` padding of ``"same"`` along one axis; an odd total puts the extra one after."""
    out = conv_output_size(size, kernel, stride, dilation, "same")
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def pads_2d(hw: Pair, kernel: Pair, strides: Pair = (1, 1), dilation: Pair = (1, 1), padding: str = "valid") -> Pads:
    """``((top, bottom), (left, right))`` for an (H, W) input; all zero for ``"valid"``."""
    (h, w), (kh, kw) = _pair(hw, "hw"), _pair(kernel, "kernel")
    (sh, sw), (dh, dw) = _pair(strides, "strides"), _pair(dilation, "dilation")
    if _check_padding(padding) == "valid":
        return (0, 0), (0, 0)
    return same_pads(h, kh, sh, dh), same_pads(w, kw, sw, dw)


def _geometry(x_shape: tuple[int, ...], kernel: Pair, strides: Pair, dilation: Pair,
              padding: str) -> tuple[int, int, Pads]:
    """``(OH, OW, pads)`` for an NHWC shape."""
    if len(x_shape) != 4:
        raise ValueError(f"expected an (N, H, W, C) input, got shape {tuple(x_shape)}")
    _, h, w, _ = x_shape
    oh = conv_output_size(h, kernel[0], strides[0], dilation[0], padding)
    ow = conv_output_size(w, kernel[1], strides[1], dilation[1], padding)
    return oh, ow, pads_2d((h, w), kernel, strides, dilation, padding)


def _check_float(a: Any, what: str, ndim: int) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{what} must be a float32 or float64 ndarray, got {getattr(a, 'dtype', type(a).__name__)}")
    if a.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimensions, got shape {a.shape}")
    return a


def _same_dtype(dtype: np.dtype, **arrays: np.ndarray) -> None:
    for name, a in arrays.items():
        if a.dtype != dtype:  # a silent cast would change the result's precision
            raise TypeError(f"{name} must have dtype {dtype}, got {a.dtype}")


def _taps(size: int, out: int, kernel: int, stride: int, dilation: int, before: int) -> list[tuple[int, int, int]]:
    """For each kernel offset ``a`` the outputs ``i0 <= i < i1`` whose input ``i*stride + a*dilation - before``
    lies inside ``[0, size)``, and the first such input ``r0`` (padding cells are skipped, not stored)."""
    taps = []
    for a in range(kernel):
        off = a * dilation - before
        i0 = max(0, -(off // stride))  # ceil(-off / stride)
        i1 = min(out, (size - 1 - off) // stride + 1)
        taps.append((i0, max(i0, i1), i0 * stride + off))
    return taps


def _pad_buffer(x_shape: tuple[int, ...], pads: Pads, dtype: np.dtype, cache: dict, key: str) -> np.ndarray | None:
    """The buffer for ``x`` inside its border, or None when there is no padding."""
    (top, bottom), (left, right) = pads
    if top == bottom == left == right == 0:
        return None
    n, h, w, c = x_shape
    return cached_buffer(cache, key, (n, h + top + bottom, w + left + right, c), dtype)


def _fill_padded(x: np.ndarray, xp: np.ndarray | None, pads: Pads, fill: float) -> np.ndarray:
    """``x`` inside a border of ``fill``, written into ``xp`` (``x`` itself when ``xp`` is None)."""
    if xp is None:
        return x
    (top, _), (left, _) = pads
    h, w = x.shape[1:3]
    # the border is written on every call, as a cached buffer may be new (uninitialised); the interior is x
    xp[:, :top] = fill
    xp[:, top + h:] = fill
    xp[:, top:top + h, :left] = fill
    xp[:, top:top + h, left + w:] = fill
    xp[:, top:top + h, left:left + w] = x
    return xp


def _window_view(xp: np.ndarray, out_hw: Pair, kernel: Pair, strides: Pair, dilation: Pair) -> np.ndarray:
    """Read-only (N, OH, OW, KH, KW, C) view ``v[n,i,j,a,b,c] = xp[n, i*sh + a*dh, j*sw + b*dw, c]``."""
    s0, s1, s2, s3 = xp.strides
    shape = (xp.shape[0], *out_hw, *kernel, xp.shape[3])
    return as_strided(xp, shape, (s0, s1 * strides[0], s2 * strides[1], s1 * dilation[0], s2 * dilation[1], s3),
                      writeable=False)


def _chunk_samples(n: int, row_bytes: int) -> int:
    """Samples per chunk so a chunk of patch rows is about ``_CHUNK_BYTES``.

    Measured at N=128 float32, 3x3 kernels (medians of 9 interleaved repeats, chunks of
    1, 2, 4, 8 MiB and none): the backward pass gains most, as col2im reads each chunk's
    dcols back from cache: 13x13x32 -> 64 filters 39 -> 23 ms, "same" 14x14x32 -> 64
    51 -> 35 ms, 28x28x32 -> 64 (cols ~100 MB) 183 -> 122 ms; the forward pass changes
    by 0-10 %. 2 MiB was best or within noise of it on every shape.
    """
    return max(1, min(n, _CHUNK_BYTES // max(row_bytes, 1)))


# -- convolution -----------------------------------------------------------------


def _patch_view(xp: np.ndarray, grid: tuple[int, ...], kernel: Pair, strides: Pair, dilation: Pair) -> np.ndarray:
    """Read-only view of the patches of padded ``xp``, (N, *grid, KH, KW, C).

    ``grid`` is (OH, OW), output positions in row-major order, or (2, 2, OH2, OW2), window-major order for a
    2x2 pooling that follows: position (a, b, i, j) is output (2i + a, 2j + b) (see ``window_major``)."""
    if len(grid) == 2:
        return _window_view(xp, grid, kernel, strides, dilation)
    s0, s1, s2, s3 = xp.strides
    (sh, sw), (dh, dw) = strides, dilation
    return as_strided(xp, (xp.shape[0], *grid, *kernel, xp.shape[3]),
                      (s0, s1 * sh, s2 * sw, s1 * 2 * sh, s2 * 2 * sw, s1 * dh, s2 * dw, s3), writeable=False)


def _im2col(patches: np.ndarray, cols: np.ndarray) -> None:
    """``cols = patches`` (views of the same shape, (N, *grid, KH, KW, C))."""
    kh, kw, c = cols.shape[-3:]
    if c == 1 and cols.strides[-1] < cols.strides[0]:
        # One channel into patch rows: the single strided copy below would run an inner loop of KW elements;
        # KH*KW copies of whole output rows were measured 2-3x faster here (and slower for every C >= 2 tried,
        # up to 8x). Transposed patches (one row per kernel entry, see _NARROW) take the single copy: its inner
        # loop runs along a row, 20 % faster than KH*KW copies (2x2-pooled 28x28 images, blocks of 16-18).
        for a in range(kh):
            for b in range(kw):
                np.copyto(cols[..., a, b, :], patches[..., a, b, :])
    else:
        # One copy from a strided window view writes cols front to back, where KH*KW slice copies each touch
        # every cache line of it: measured up to 8x faster for C = 2..64 (about even only for C = 2, 3 at
        # dilation 2). It needs "same" inputs padded first, which beat clipped per-offset copies 3x (C = 32).
        np.copyto(cols, patches)


def _col2im(dcols: np.ndarray, dx: np.ndarray, strides: Pair, dilation: Pair, pads: Pads) -> None:
    """``dx[n, i*sh + a*dh - top, j*sw + b*dw - left, c] += dcols[n,i,j,a,b,c]``, skipping padding cells."""
    _, oh, ow, kh, kw, _ = dcols.shape
    (sh, sw), (dh, dw), ((top, _), (left, _)) = strides, dilation, pads
    rows = _taps(dx.shape[1], oh, kh, sh, dh, top)
    cols = _taps(dx.shape[2], ow, kw, sw, dw, left)
    for a, (i0, i1, r0) in enumerate(rows):
        for b, (j0, j1, q0) in enumerate(cols):
            if i0 < i1 and j0 < j1:
                dx[:, r0:r0 + sh * (i1 - i0 - 1) + 1:sh, q0:q0 + sw * (j1 - j0 - 1) + 1:sw, :] += \
                    dcols[:, i0:i1, j0:j1, a, b, :]


def _grid(oh: int, ow: int, window_major: bool) -> tuple[int, ...]:
    """The output positions computed: all of (OH, OW), or (2, 2, OH//2, OW//2) for a 2x2 pooling after."""
    if not window_major:
        return (oh, ow)
    if oh < 2 or ow < 2:
        raise ValueError(f"window_major needs an output of at least 2x2, got {oh}x{ow}")
    return (2, 2, oh // 2, ow // 2)


def _conv_args(x: Any, w: Any, bias: Any, strides: Any, dilation: Any, padding: Any
               ) -> tuple[np.ndarray, np.ndarray, Pair, Pair, tuple[int, int, Pads]]:
    """The forward arguments checked: ``(x, w, strides, dilation, (OH, OW, pads))``."""
    x = _check_float(x, "x", 4)
    w = _check_float(w, "w", 4)
    _same_dtype(x.dtype, w=w)
    if bias is not None:
        _check_float(bias, "bias", 1)
        _same_dtype(x.dtype, bias=bias)
    kh, kw, c_in, f = w.shape
    if c_in != x.shape[3] or (bias is not None and bias.shape != (f,)):
        raise ValueError(f"x {x.shape}, w {w.shape} and bias {None if bias is None else bias.shape} do not agree")
    strides, dilation = _pair(strides, "strides"), _pair(dilation, "dilation")
    return x, w, strides, dilation, _geometry(x.shape, (kh, kw), strides, dilation, _check_padding(padding))


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    strides: Pair = (1, 1),
    dilation: Pair = (1, 1),
    padding: str = "valid",
    cache: dict | None = None,
    window_major: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """2-D convolution (cross-correlation, as in Keras) of an NHWC batch.

    Parameters
    ----------
    x : ndarray (N, H, W, C), float32 or float64
    w : ndarray (KH, KW, C, F), same dtype as ``x``
    bias : ndarray (F,) or None
    strides, dilation : pair of positive ints
    padding : "valid" or "same"
    cache : dict, optional
        Scratch and output buffers; ``y`` and ``cols`` live in it.
    window_major : bool
        For a 2x2, stride-2 pooling that comes next: compute only the outputs it reads (an odd last row or
        column is dropped) in the order of its windows, ``y[n, a, b, i, j] = out[n, 2i + a, 2j + b]``, so
        that the pooling reads four contiguous blocks instead of strided cells (see
        :func:`max_pool2d_blocks_forward`).

    Returns
    -------
    y : ndarray (N, OH, OW, F), or (N, 2, 2, OH//2, OW//2, F) with ``window_major``
    cols : ndarray (N, OH, OW, KH, KW, C), or (N, 2, 2, OH//2, OW//2, KH, KW, C)
        The patch matrix (padding cells are zeros); pass it to :func:`conv2d_backward`.
    """
    x, w, strides, dilation, (oh, ow, pads) = _conv_args(x, w, bias, strides, dilation, padding)
    n, _, _, c = x.shape
    kh, kw, _, f = w.shape
    grid = _grid(oh, ow, window_major)
    cache = {} if cache is None else cache

    # y[n,i,j,f] = sum_{a,b,c} xpad[n, i*sh + a*dh, j*sw + b*dw, c] w[a,b,c,f] + bias[f], i.e. y2d = cols2d w2d + bias
    #   =>  dW = cols2d^T g2d,  db = 1^T g2d,  dx = col2im(g2d w2d^T)   (any order of the positions, the same sums)
    xp = _pad_buffer(x.shape, pads, x.dtype, cache, "conv2d/xpad")
    y = cached_buffer(cache, "conv2d/y", (n, *grid, f), x.dtype)
    k, p = kh * kw * c, math.prod(grid)
    y2d = y.reshape(n * p, f)
    narrow = k < _NARROW
    tiled = None
    if narrow:
        # columns [patch; 1; 0 ...]: the product with [w2d; bias] adds the bias, and colsT g gives db as row k
        cols_t = cached_buffer(cache, "conv2d/narrow_cols", (_NARROW, n * p), x.dtype)
        # the rows after the patch entries (ones, zeros) never change: written once per buffer
        tail = cache.get("conv2d/narrow_tail")
        tail_written = tail is not None and tail[0] is cols_t and tail[1] == (k, bias is not None)
        item, length = x.itemsize, n * p * x.itemsize
        position_strides = [item * math.prod(grid[d + 1:]) for d in range(len(grid))]
        cols = as_strided(cols_t, (n, *grid, kh, kw, c),
                          (p * item, *position_strides, kw * c * length, c * length, length))
        used = k + (bias is not None)
        w2d = cached_buffer(cache, "conv2d/narrow_w", (used, f), x.dtype)
        w2d[:k] = w.reshape(k, f)
        if bias is not None:
            w2d[k] = bias
    else:
        cols = cached_buffer(cache, "conv2d/cols", (n, *grid, kh, kw, c), x.dtype)
        w2d, cols2d = w.reshape(k, f), cols.reshape(n * p, k)
        if bias is not None:
            tiled = cached_buffer(cache, "conv2d/bias_tile", (max(1, _BIAS_TILE // f) * f,), x.dtype)
            tiled.reshape(-1, f)[...] = bias

    def samples(_: int, start: int, stop: int) -> None:
        xs = _fill_padded(x[start:stop], None if xp is None else xp[start:stop], pads, 0.0)
        patches = _patch_view(xs, grid, (kh, kw), strides, dilation)
        step = _chunk_samples(stop - start, p * k * x.itemsize)
        for n0 in range(start, stop, step):
            n1 = min(stop, n0 + step)
            _im2col(patches[n0 - start:n1 - start], cols[n0:n1])
            rows = slice(n0 * p, n1 * p)
            if narrow:
                if not tail_written:
                    cols_t[k:used, rows] = 1.0
                    cols_t[used:, rows] = 0.0
                np.matmul(cols_t[:used, rows].T, w2d, out=y2d[rows])
                continue
            np.matmul(cols2d[rows], w2d, out=y2d[rows])
            if tiled is not None:
                _add_bias(y2d[rows], bias, tiled)  # while this chunk of y is in cache

    run(partition(n, n * p * (_NARROW if narrow else k)), samples)
    if narrow:
        cache["conv2d/narrow_tail"] = (cols_t, (k, bias is not None))
        cols = cols.view()
        cols.flags.writeable = False
        # conv2d_backward knows the transposed patches by this object, and uses all their rows (ones included)
        cache["conv2d/narrow_view"] = (cols, bias is not None, cols_t)
    return y, cols


def conv2d_pool2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    strides: Pair = (1, 1),
    dilation: Pair = (1, 1),
    padding: str = "valid",
    pool: str = "max",
    relu: bool = False,
    cache: dict | None = None,
) -> np.ndarray:
    """Inference through a convolution and the 2x2, stride-2 pooling after it, one block of images at a time.

    The values of ``max_pool2d_blocks_forward(conv2d_forward(..., window_major=True)[0], relu=relu)`` (or
    ``avg_pool2d_blocks_forward`` for ``pool="avg"``) to rounding, without the full patch matrix or
    convolution output: each thread builds the patches of :data:`_FUSED_BLOCK_BYTES` worth of images, multiplies
    them and pools the product while both are still in cache, and only the pooled images reach memory. The
    bias is in the product for narrow patches (as in :func:`conv2d_forward`), else added after the pooling, to
    4x fewer values (the same values for max: rounding is monotone).
    Rows of a product can round differently from the same rows in a taller one (OpenBLAS), so values may
    differ from the unfused pass in the last bits. Nothing is kept for a backward pass.

    Parameters
    ----------
    x, w, bias, strides, dilation, padding
        As for :func:`conv2d_forward`; the output must be at least 2x2 (an odd last row or column is
        dropped, as the pooling does).
    pool : {"max", "avg"}
    relu : bool
        ReLU after the pooling (only with ``"max"``, where it equals ReLU before it).
    cache : dict, optional
        Scratch buffers (one set per thread) and the returned array.

    Returns
    -------
    ndarray (N, OH//2, OW//2, F)
    """
    x, w, strides, dilation, (oh, ow, pads) = _conv_args(x, w, bias, strides, dilation, padding)
    if pool not in ("max", "avg"):
        raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
    if relu and pool != "max":
        raise ValueError("relu=True needs pool='max' (ReLU commutes with max pooling, not with averaging)")
    n, _, _, c = x.shape
    kh, kw, _, f = w.shape
    grid = _grid(oh, ow, True)
    cache = {} if cache is None else cache
    k, p = kh * kw * c, math.prod(grid)
    images = max(1, min(n, _FUSED_BLOCK_BYTES // (p * (k + f) * x.itemsize)))
    n_blocks = -(-n // images)
    parts = partition(n_blocks, n * p * k)
    out = cached_buffer(cache, "convpool/y", (n, *grid[2:], f), x.dtype)
    item, length = x.itemsize, images * p * x.itemsize
    narrow = k < _NARROW
    tiled = None  # the bias added after the pooling, when the product does not add it
    if narrow:  # patches stored transposed, as conv2d_forward does, with a row of ones: the product adds the bias
        used = k + (bias is not None)
        w2d = np.concatenate([w.reshape(k, f), bias[None]]) if bias is not None else w.reshape(k, f)
        position_strides = [item * math.prod(grid[d + 1:]) for d in range(len(grid))]
    else:
        w2d = w.reshape(k, f)
        if bias is not None:
            tiled = cached_buffer(cache, "convpool/bias_tile", (max(1, _BIAS_TILE // f) * f,), x.dtype)
            tiled.reshape(-1, f)[...] = bias
    scratch = []
    for part in range(len(parts)):
        if narrow:
            cols_t = cached_buffer(cache, f"convpool/cols_t{part}", (used, images * p), x.dtype)
            cols_t[k:] = 1.0
            cols = as_strided(cols_t, (images, *grid, kh, kw, c),
                              (p * item, *position_strides, kw * c * length, c * length, length))
        else:
            cols_t, cols = None, cached_buffer(cache, f"convpool/cols{part}", (images, *grid, kh, kw, c), x.dtype)
        scratch.append((_pad_buffer((images, *x.shape[1:]), pads, x.dtype, cache, f"convpool/xpad{part}"),
                        cols, cols_t, cached_buffer(cache, f"convpool/conv{part}", (images, *grid, f), x.dtype),
                        cached_buffer(cache, f"convpool/top{part}", (images, *grid[2:], f), x.dtype)))
    quarter = x.dtype.type(0.25)
    relu_initial = {"initial": 0.0} if relu and tiled is None else {}

    # y = pool over a 2x2 window of (cols w2d) + bias: the products of conv2d_forward, the sums of the blocks' pooling
    def blocks(part: int, first: int, stop: int) -> None:
        xp, cols, cols_t, conv, top = scratch[part]
        # views made once (as_strided is slow Python, run under the GIL the other thread may be waiting for)
        patches = _patch_view(x if xp is None else xp, grid, (kh, kw), strides, dilation)
        for block in range(first, stop):
            n0, n1 = block * images, min(n, (block + 1) * images)
            m = n1 - n0
            if xp is None:
                _im2col(patches[n0:n1], cols[:m])
            else:
                _fill_padded(x[n0:n1], xp[:m], pads, 0.0)
                _im2col(patches[:m], cols[:m])
            product = conv[:m].reshape(m * p, f)
            if narrow:
                np.matmul(cols_t[:, :m * p].T, w2d, out=product)
            else:
                np.matmul(cols[:m].reshape(m * p, k), w2d, out=product)
            ys, cs, t = out[n0:n1], conv[:m], top[:m]
            if pool == "max":
                # the max of the 4 blocks in one pass, and of 0 for a ReLU with no bias left to add (relu(max)
                # = max(0, max)): measured 1.5-2.5x faster than 3 maximums and ReLU's two passes; only the sign
                # of zeros differs from y * [y > 0] (-0.0 is 0.0 here)
                np.maximum.reduce(cs.reshape(m, 4, -1), axis=1, out=ys.reshape(m, -1), **relu_initial)
            else:
                np.add(cs[:, 0, 0], cs[:, 0, 1], out=t)
                np.add(cs[:, 1, 0], cs[:, 1, 1], out=ys)
                np.add(t, ys, out=ys)
                ys *= quarter
            if tiled is not None:
                _add_bias(ys.reshape(-1, f), bias, tiled)
                if relu:  # ReLU's own form, y * [y > 0], the mask in y's dtype (np.maximum(y, 0) is ~3x slower)
                    np.greater(ys, 0, out=t)
                    np.multiply(ys, t, out=ys)

    run(parts, blocks)
    return out


def _add_bias(y2d: np.ndarray, bias: np.ndarray, tiled: np.ndarray) -> None:
    """``y2d += bias`` for contiguous (rows, F) ``y2d``, ``tiled = tile(bias, R)``.

    R rows at a time as one row of R*F: NumPy's inner loop runs over R*F elements instead of F
    (for F = 32 filters, measured 1.5x faster)."""
    rows, f = y2d.shape
    r = tiled.size // f
    main = rows // r * r if r > 1 else 0
    if main:
        flat = y2d[:main].reshape(main // r, r * f)  # a view: y2d is C-contiguous
        flat += tiled
    y2d[main:] += bias


def conv2d_backward(
    grad_out: np.ndarray,
    cols: np.ndarray,
    w: np.ndarray,
    x_shape: tuple[int, int, int, int],
    strides: Pair = (1, 1),
    dilation: Pair = (1, 1),
    padding: str = "valid",
    *,
    need_dx: bool = True,
    need_db: bool = True,
    dw_out: np.ndarray | None = None,
    db_out: np.ndarray | None = None,
    cache: dict | None = None,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients of :func:`conv2d_forward` given ``g = dL/dy``.

    Parameters
    ----------
    grad_out : ndarray (N, OH, OW, F), or (N, 2, 2, OH//2, OW//2, F) after a ``window_major`` forward
    cols : ndarray (N, OH, OW, KH, KW, C), or (N, 2, 2, OH//2, OW//2, KH, KW, C)
        The patch matrix :func:`conv2d_forward` returned for this batch.
    w : ndarray (KH, KW, C, F)
    x_shape : (N, H, W, C)
        The forward input's shape.
    strides, dilation, padding
        As in the forward call.
    need_dx, need_db : bool
        Whether to compute ``dx`` (skip it for a model's first layer) and ``db``.
    dw_out : ndarray (KH, KW, C, F), C-contiguous, optional
        Written with ``dW`` (e.g. the weight's gradient array); else a cache buffer.
    db_out : ndarray (F,), optional
        Written with ``db``; else a cache buffer.
    cache : dict, optional

    Returns
    -------
    dx : ndarray (N, H, W, C) or None
    dw : ndarray (KH, KW, C, F)
    db : ndarray (F,) or None
    """
    window_major = isinstance(grad_out, np.ndarray) and grad_out.ndim == 6
    grad_out = _check_float(grad_out, "grad_out", 6 if window_major else 4)
    cols = _check_float(cols, "cols", 8 if window_major else 6)
    w = _check_float(w, "w", 4)
    dtype = grad_out.dtype
    _same_dtype(dtype, cols=cols, w=w)
    kh, kw, c, f = w.shape
    strides, dilation = _pair(strides, "strides"), _pair(dilation, "dilation")
    x_shape = tuple(int(s) for s in x_shape)
    oh, ow, pads = _geometry(x_shape, (kh, kw), strides, dilation, _check_padding(padding))
    grid = _grid(oh, ow, window_major)
    n = x_shape[0]
    if x_shape[3] != c or cols.shape != (n, *grid, kh, kw, c) or grad_out.shape != (n, *grid, f):
        raise ValueError(
            f"grad_out {grad_out.shape}, cols {cols.shape}, w {w.shape} and x_shape {x_shape} do not agree")
    cache = {} if cache is None else cache
    k, p = kh * kw * c, math.prod(grid)
    g2d = np.ascontiguousarray(grad_out).reshape(n * p, f)
    narrow_view = cache.get("conv2d/narrow_view")
    narrow = narrow_view is not None and narrow_view[0] is cols  # the forward's transposed patches (_NARROW)
    if narrow:
        _, ones_column, cols_t = narrow_view
        width = _NARROW
    else:
        cols2d = cols.reshape(n * p, k)  # a copy only if the caller passed a non-contiguous cols
        ones_column = False
        width = k

    if dw_out is None:
        dw_out = cached_buffer(cache, "conv2d/dw", w.shape, dtype)
    elif not (isinstance(dw_out, np.ndarray) and dw_out.shape == w.shape and dw_out.dtype == dtype
              and dw_out.flags.c_contiguous):
        raise ValueError(f"dw_out must be a C-contiguous {dtype} array of shape {w.shape}")
    if need_db:
        if db_out is None:
            db_out = cached_buffer(cache, "conv2d/db", (f,), dtype)
        elif not (isinstance(db_out, np.ndarray) and db_out.shape == (f,) and db_out.dtype == dtype):
            raise ValueError(f"db_out must be a {dtype} array of shape {(f,)}")
    parts = partition(n, n * p * width)
    # one thread and plain rows: the products write dW and db directly; else each part its share, added below
    split = len(parts) > 1 or narrow
    db_product = need_db and not ones_column  # else db is row k of cols^T g
    dw_parts = cached_buffer(cache, "conv2d/dw_parts", (len(parts), width, f), dtype) if split else None
    db_parts = cached_buffer(cache, "conv2d/db_parts", (len(parts), f), dtype) if split and db_product else None
    ones = cached_ones(cache, n * p, dtype) if db_product else None
    dx = cached_buffer(cache, "conv2d/dx", x_shape, dtype) if need_dx else None
    w2d_t = w.reshape(k, f).T
    step = _chunk_samples(max(stop - start for start, stop in parts), p * k * dtype.itemsize)
    # window-major: dx from g back in image order (one small copy), so that col2im adds KH*KW slices per
    # chunk, not four times as many smaller ones; the positions are the computed (2 OH2, 2 OW2)
    image_grid = (2 * grid[2], 2 * grid[3]) if window_major else grid
    g_image = cached_buffer(cache, "conv2d/g_image", (n, *image_grid, f), dtype) if need_dx and window_major \
        else None
    dcols = cached_buffer(cache, "conv2d/dcols", (len(parts), step, *image_grid, kh, kw, c), dtype) \
        if need_dx else None

    def samples(part: int, start: int, stop: int) -> None:
        rows = slice(start * p, stop * p)
        if narrow:
            np.matmul(cols_t[:, rows], g2d[rows], out=dw_parts[part])  # cols^T g
        else:
            np.matmul(cols2d[rows].T, g2d[rows], out=dw_parts[part] if split else dw_out.reshape(k, f))
        if db_product:  # db = 1^T g: a matrix-vector product, faster than g.sum(axis=0)
            np.matmul(ones[:(stop - start) * p], g2d[rows], out=db_parts[part] if split else db_out)
        if not need_dx:
            return
        g_rows = g2d
        if g_image is not None:
            oh2, ow2 = grid[2], grid[3]
            np.copyto(g_image[start:stop].reshape(stop - start, oh2, 2, ow2, 2, f),
                      grad_out[start:stop].transpose(0, 3, 1, 4, 2, 5))
            g_rows = g_image.reshape(n * p, f)
        # dx = col2im(g w2d^T), a chunk of samples at a time so each chunk's dcols is read back from cache
        for n0 in range(start, stop, step):
            n1 = min(stop, n0 + step)
            chunk = dcols[part, :n1 - n0]
            np.matmul(g_rows[n0 * p:n1 * p], w2d_t, out=chunk.reshape((n1 - n0) * p, k))
            dx[n0:n1].fill(0)
            _col2im(chunk, dx[n0:n1], strides, dilation, pads)

    run(parts, samples)
    if split:
        total = dw_parts[0] if len(parts) == 1 else np.sum(dw_parts, axis=0, out=dw_parts[0])
        dw_out.reshape(k, f)[...] = total[:k]
        if need_db:
            db_out[...] = total[k] if ones_column else (db_parts[0] if len(parts) == 1 else db_parts.sum(axis=0))
    return dx, dw_out, db_out if need_db else None


# -- pooling ---------------------------------------------------------------------


def _pool_args(x_shape: tuple[int, ...], pool: Any, strides: Any, padding: Any) -> tuple[Pair, Pair, int, int, Pads]:
    pool, strides = _pair(pool, "pool"), _pair(strides, "strides")
    oh, ow, pads = _geometry(x_shape, pool, strides, (1, 1), _check_padding(padding))
    return pool, strides, oh, ow, pads


def _pool_grad_args(grad_out: Any, x_shape: Any, pool: Any, strides: Any, padding: Any
                    ) -> tuple[np.ndarray, tuple[int, ...], Pair, Pair, int, int, Pads]:
    """The checked arguments of a pooling backward pass: ``grad_out`` must be (N, OH, OW, C) for ``x_shape``."""
    grad_out = _check_float(grad_out, "grad_out", 4)
    x_shape = tuple(int(s) for s in x_shape)
    pool, strides, oh, ow, pads = _pool_args(x_shape, pool, strides, padding)
    n, _, _, c = x_shape
    if grad_out.shape != (n, oh, ow, c):
        raise ValueError(f"grad_out must have shape {(n, oh, ow, c)}, got {grad_out.shape}")
    return grad_out, x_shape, pool, strides, oh, ow, pads


def _tiles(a: np.ndarray, out_hw: Pair, pool: Pair) -> np.ndarray:
    """(N, OH, PH, OW, PW, C) view of ``a[:, :OH*PH, :OW*PW]``: the windows of a pool whose stride is its size.

    Built with explicit strides (a view by construction: the backward pass writes through it)."""
    s0, s1, s2, s3 = a.strides
    (oh, ow), (ph, pw) = out_hw, pool
    shape = (a.shape[0], oh, ph, ow, pw, a.shape[3])
    return as_strided(a, shape, (s0, s1 * ph, s1, s2 * pw, s2, s3), writeable=a.flags.writeable)


def _fast_pool(pool: Pair, strides: Pair, pads: Pads) -> bool:
    """Whether the windows tile the input: stride == pool size and no padding (the remainder is dropped)."""
    return pool == strides and pads == ((0, 0), (0, 0))


def _rows_buffer(x_shape: tuple[int, ...], out_hw: Pair, pool: Pair, dtype: np.dtype, cache: dict,
                 key: str) -> np.ndarray | None:
    """Scratch for :func:`_reduce_tiles`: (N, OH, PH, OW, C), or None for a pool one column wide."""
    if pool[1] == 1:
        return None
    return cached_buffer(cache, key, (x_shape[0], out_hw[0], pool[0], out_hw[1], x_shape[3]), dtype)


def _reduce_tiles(op: np.ufunc, xt: np.ndarray, y: np.ndarray, rows: np.ndarray | None) -> None:
    """``y = op``-reduction of the (N, OH, PH, OW, PW, C) tiles over PH and PW (``rows`` from :func:`_rows_buffer`).

    Separable: PW - 1 ops on half-reduced rows, then PH - 1 on whole rows, where one op per window cell
    would take PH*PW - 1 strided passes (measured 1.6x faster for 2x2)."""
    ph, pw = xt.shape[2], xt.shape[4]
    if pw == 1:
        rows = xt[:, :, :, :, 0]
    else:
        op(xt[:, :, :, :, 0], xt[:, :, :, :, 1], out=rows)
        for b in range(2, pw):
            op(rows, xt[:, :, :, :, b], out=rows)
    if ph == 1:
        np.copyto(y, rows[:, :, 0])
        return
    op(rows[:, :, 0], rows[:, :, 1], out=y)
    for a in range(2, ph):
        op(y, rows[:, :, a], out=y)


def _keep_first(cells: list[np.ndarray], free: np.ndarray) -> None:
    """Clear every True in ``cells`` (bool views, one per window cell in row-major order) but each
    window's first: ``free`` marks the windows whose maximum is not taken yet."""
    if len(cells) < 2:
        return
    np.logical_not(cells[0], out=free)
    last = len(cells) - 1
    for k in range(1, len(cells)):
        np.logical_and(cells[k], free, out=cells[k])
        if k < last:
            np.logical_xor(free, cells[k], out=free)  # free &= ~cell, as cell is inside free now


def max_pool2d_forward(
    x: np.ndarray,
    pool: Pair,
    strides: Pair,
    padding: str = "valid",
    cache: dict | None = None,
    need_mask: bool = True,
    relu: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Max pooling of an NHWC batch; padding cells never win (they count as -inf).

    Parameters
    ----------
    x : ndarray (N, H, W, C), float32 or float64
    pool, strides : pair of positive ints
    padding : "valid" or "same"
    cache : dict, optional
    need_mask : bool
        Whether to mark the winners for :func:`max_pool2d_backward` (not needed for inference).
    relu : bool
        Apply ReLU to the result, ``y * (y > 0)`` (ReLU's own form), and mark no winner in a window
        whose maximum is not positive: the same values and gradients as ReLU before the pooling.

    Returns
    -------
    y : ndarray (N, OH, OW, C)
    mask : bool ndarray or None
        True at each window's first maximum in row-major order (PyTorch's rule for ties), laid out as
        (N, OH, PH, OW, PW, C) when ``strides == pool`` and there is no padding (the windows tile the
        input), else (N, OH, OW, PH, PW, C). Pass it to :func:`max_pool2d_backward` unchanged.
    """
    x = _check_float(x, "x", 4)
    pool, strides, oh, ow, pads = _pool_args(x.shape, pool, strides, padding)
    cache = {} if cache is None else cache
    n, _, _, c = x.shape
    ph, pw = pool
    y = cached_buffer(cache, "maxpool/y", (n, oh, ow, c), x.dtype)
    free = cached_buffer(cache, "maxpool/free", (n, oh, ow, c), np.bool_) if need_mask else None
    positive = cached_buffer(cache, "maxpool/positive", (n, oh, ow, c), np.bool_) if relu else None
    fast = _fast_pool(pool, strides, pads)
    rows = _rows_buffer(x.shape, (oh, ow), pool, x.dtype, cache, "maxpool/rows") if fast else None
    xp = None if fast else _pad_buffer(x.shape, pads, x.dtype, cache, "maxpool/xpad")
    mask = None
    if need_mask:
        mask = cached_buffer(cache, "maxpool/mask", _max_mask_shape(n, oh, ow, c, pool, fast), np.bool_)

    def relu_of(start: int, stop: int) -> np.ndarray | None:
        """ReLU on this part of y; its positive entries."""
        if not relu:
            return None
        ys, pos = y[start:stop], positive[start:stop]
        np.greater(ys, 0, out=pos)
        np.multiply(ys, pos, out=ys)
        return pos

    def marks_after_relu(m: np.ndarray, pos: np.ndarray | None, layout: tuple) -> None:
        if pos is not None:
            np.logical_and(m, pos[layout], out=m)

    # y[n,i,j,c] = max_{a,b} xpad[n, i*sh + a, j*sw + b, c]  =>  dx at each window's first argmax = g[n,i,j,c]
    def tiles(_: int, start: int, stop: int) -> None:
        xt = _tiles(x[start:stop], (oh, ow), pool)
        _reduce_tiles(np.maximum, xt, y[start:stop], None if rows is None else rows[start:stop])
        if mask is None:
            relu_of(start, stop)
            return
        # winners = ties with the max in one pass over x (sequential reads), then ties broken cell by cell.
        # Measured (26x26x32, N=128): forward 11 ms + backward 3.7 ms, where a running argmax index
        # (np.copyto where=) took 27 + 8 ms.
        m = mask[start:stop]
        np.equal(xt, y[start:stop, :, None, :, None, :], out=m)
        _keep_first([m[:, :, a, :, b] for a in range(ph) for b in range(pw)], free[start:stop])
        marks_after_relu(m, relu_of(start, stop), (slice(None), slice(None), None, slice(None), None))

    def windows(_: int, start: int, stop: int) -> None:
        xs = _fill_padded(x[start:stop], None if xp is None else xp[start:stop], pads, -np.inf)
        win = _window_view(xs, (oh, ow), pool, strides, (1, 1))
        ys = y[start:stop]
        np.copyto(ys, win[:, :, :, 0, 0])
        for a in range(ph):
            for b in range(pw):
                if a or b:
                    np.maximum(ys, win[:, :, :, a, b], out=ys)
        if mask is None:
            relu_of(start, stop)
            return
        m = mask[start:stop]
        np.equal(win, ys[:, :, :, None, None, :], out=m)
        # a padding cell ties an all -inf window: clear the padding so the first real cell takes the gradient
        for axis, taps in ((1, _taps(x.shape[1], oh, ph, strides[0], 1, pads[0][0])),
                           (2, _taps(x.shape[2], ow, pw, strides[1], 1, pads[1][0]))):
            for k, (i0, i1, _) in enumerate(taps):
                cell = m[:, :, :, k] if axis == 1 else m[:, :, :, :, k]
                index = [slice(None)] * 4
                index[axis] = slice(0, i0)
                cell[tuple(index)] = False
                index[axis] = slice(i1, None)
                cell[tuple(index)] = False
        _keep_first([m[:, :, :, a, b] for a in range(ph) for b in range(pw)], free[start:stop])
        marks_after_relu(m, relu_of(start, stop), (slice(None), slice(None), slice(None), None, None))

    run(partition(n, x.size), tiles if fast else windows)
    return y, mask


def _max_mask_shape(n: int, oh: int, ow: int, c: int, pool: Pair, fast: bool) -> tuple[int, ...]:
    """The layout of :func:`max_pool2d_forward`'s mask."""
    return (n, oh, pool[0], ow, pool[1], c) if fast else (n, oh, ow, *pool, c)


def max_pool2d_backward(
    grad_out: np.ndarray,
    mask: np.ndarray,
    x_shape: tuple[int, int, int, int],
    pool: Pair,
    strides: Pair,
    padding: str = "valid",
    cache: dict | None = None,
) -> np.ndarray:
    """Gradient of :func:`max_pool2d_forward`: each window's ``g`` goes to its first maximum; overlapping
    windows add up.

    Parameters
    ----------
    grad_out : ndarray (N, OH, OW, C)
    mask : bool ndarray
        The forward pass's mask (computed with ``need_mask=True``).
    x_shape : (N, H, W, C)
    pool, strides, padding
        As in the forward call.
    cache : dict, optional

    Returns
    -------
    dx : ndarray (N, H, W, C)
    """
    grad_out, x_shape, pool, strides, oh, ow, pads = _pool_grad_args(grad_out, x_shape, pool, strides, padding)
    n, h, w, c = x_shape
    fast = _fast_pool(pool, strides, pads)
    ph, pw = pool
    shape = _max_mask_shape(n, oh, ow, c, pool, fast)
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != shape:
        raise ValueError(f"mask must be the forward pass's bool array of shape {shape}")
    cache = {} if cache is None else cache
    dtype = grad_out.dtype
    dx = cached_buffer(cache, "maxpool/dx", x_shape, dtype)
    dwin = None if fast else cached_buffer(cache, "maxpool/dwin", shape, dtype)

    def samples(_: int, start: int, stop: int) -> None:
        g, m, d = grad_out[start:stop], mask[start:stop], dx[start:stop]
        if fast:
            # the windows tile dx: the multiplies write all of it but the dropped remainder, which gets zeros
            np.multiply(g[:, :, None, :, None, :], m, out=_tiles(d, (oh, ow), pool))
            d[:, oh * ph:] = 0
            d[:, :oh * ph, ow * pw:] = 0
            return
        dw = dwin[start:stop]
        np.multiply(g[:, :, :, None, None, :], m, out=dw)
        d.fill(0)
        _col2im(dw, d, strides, (1, 1), pads)

    run(partition(n, dx.size), samples)
    return dx


# -- 2x2 pooling of window-major blocks (the output of conv2d_forward(window_major=True)) -------------------


def _check_blocks(x: Any, what: str) -> np.ndarray:
    x = _check_float(x, what, 6)
    if x.shape[1:3] != (2, 2):
        raise ValueError(f"{what} must be window-major blocks (N, 2, 2, OH, OW, C), got shape {x.shape}")
    return x


def max_pool2d_blocks_forward(x: np.ndarray, cache: dict | None = None, need_mask: bool = True,
                              relu: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """2x2, stride-2 max pooling of window-major blocks: ``y[n,i,j,c] = max_{a,b} x[n,a,b,i,j,c]``.

    The same values, winners (the first maximum in row-major order of the window) and ``relu`` as
    :func:`max_pool2d_forward` on the image they come from, with every pass over contiguous blocks; only a
    window holding a NaN (its maximum is NaN) differs: its first cell is marked, where that function marks
    none (training stops at the NaN loss either way).

    Parameters
    ----------
    x : ndarray (N, 2, 2, OH, OW, C), float32 or float64
    cache : dict, optional
    need_mask, relu : bool
        As for :func:`max_pool2d_forward`.

    Returns
    -------
    y : ndarray (N, OH, OW, C)
    mask : bool ndarray (N, 2, 2, OH, OW, C) or None
    """
    x = _check_blocks(x, "x")
    cache = {} if cache is None else cache
    n, _, _, oh, ow, c = x.shape
    y = cached_buffer(cache, "maxblocks/y", (n, oh, ow, c), x.dtype)
    top = cached_buffer(cache, "maxblocks/top", (n, oh, ow, c), x.dtype)  # the top row's maxima
    mask = cached_buffer(cache, "maxblocks/mask", x.shape, np.bool_) if need_mask else None
    bottom = cached_buffer(cache, "maxblocks/bottom", (n, oh, ow, c), np.bool_) if need_mask else None
    uppers = cached_buffer(cache, "maxblocks/upper", (n, oh, ow, c), np.bool_) if need_mask else None
    positive = cached_buffer(cache, "maxblocks/positive", (n, oh, ow, c), np.bool_) if relu else None

    # y = max(max(x00, x01), max(x10, x11))  =>  dx at the window's first argmax = g
    def samples(_: int, start: int, stop: int) -> None:
        xs, ys, t = x[start:stop], y[start:stop], top[start:stop]
        if need_mask:  # a right cell wins its row only if strictly larger, the bottom row the same
            m = mask[start:stop]
            np.greater(xs[:, 0, 1], xs[:, 0, 0], out=m[:, 0, 1])
            np.greater(xs[:, 1, 1], xs[:, 1, 0], out=m[:, 1, 1])
        np.maximum(xs[:, 0, 0], xs[:, 0, 1], out=t)
        np.maximum(xs[:, 1, 0], xs[:, 1, 1], out=ys)
        if need_mask:
            b = bottom[start:stop]
            np.greater(ys, t, out=b)
        np.maximum(t, ys, out=ys)
        pos = None
        if relu:
            pos = positive[start:stop]
            np.greater(ys, 0, out=pos)
            np.multiply(ys, pos, out=ys)  # ReLU's own form
        if not need_mask:
            return
        # the winning row as marks: upper = not bottom (and, after ReLU, a positive maximum), bottom likewise
        upper = uppers[start:stop]
        if pos is None:
            np.logical_not(b, out=upper)
        else:
            np.greater(pos, b, out=upper)
            np.logical_and(b, pos, out=b)
        np.greater(b, m[:, 1, 1], out=m[:, 1, 0])
        np.logical_and(b, m[:, 1, 1], out=m[:, 1, 1])
        np.greater(upper, m[:, 0, 1], out=m[:, 0, 0])
        np.logical_and(upper, m[:, 0, 1], out=m[:, 0, 1])

    run(partition(n, x.size), samples)
    return y, mask


def max_pool2d_blocks_backward(grad_out: np.ndarray, mask: np.ndarray, cache: dict | None = None) -> np.ndarray:
    """Gradient of :func:`max_pool2d_blocks_forward`: ``dx[n,a,b] = g * mask[n,a,b]``, (N, 2, 2, OH, OW, C)."""
    grad_out = _check_float(grad_out, "grad_out", 4)
    n, oh, ow, c = grad_out.shape
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (n, 2, 2, oh, ow, c):
        raise ValueError(f"mask must be the forward pass's bool array of shape {(n, 2, 2, oh, ow, c)}")
    cache = {} if cache is None else cache
    dx = cached_buffer(cache, "maxblocks/dx", mask.shape, grad_out.dtype)

    def samples(_: int, start: int, stop: int) -> None:
        g, m, d = grad_out[start:stop], mask[start:stop], dx[start:stop]
        for a in range(2):
            for b in range(2):
                np.multiply(g, m[:, a, b], out=d[:, a, b])

    run(partition(n, dx.size), samples)
    return dx


def avg_pool2d_blocks_forward(x: np.ndarray, cache: dict | None = None) -> np.ndarray:
    """2x2, stride-2 average pooling of window-major blocks, (N, 2, 2, OH, OW, C) -> (N, OH, OW, C)."""
    x = _check_blocks(x, "x")
    cache = {} if cache is None else cache
    n, _, _, oh, ow, c = x.shape
    y = cached_buffer(cache, "avgblocks/y", (n, oh, ow, c), x.dtype)
    quarter = x.dtype.type(0.25)

    tops = cached_buffer(cache, "avgblocks/top", (n, oh, ow, c), x.dtype)

    # y = ((x00 + x01) + (x10 + x11)) / 4, avg_pool2d_forward's order of the sum  =>  dx[n,a,b] = g / 4
    def samples(_: int, start: int, stop: int) -> None:
        xs, ys, top = x[start:stop], y[start:stop], tops[start:stop]
        np.add(xs[:, 0, 0], xs[:, 0, 1], out=top)
        np.add(xs[:, 1, 0], xs[:, 1, 1], out=ys)
        np.add(top, ys, out=ys)
        ys *= quarter

    run(partition(n, x.size), samples)
    return y


def avg_pool2d_blocks_backward(grad_out: np.ndarray, cache: dict | None = None) -> np.ndarray:
    """Gradient of :func:`avg_pool2d_blocks_forward`, (N, OH, OW, C) -> (N, 2, 2, OH, OW, C)."""
    grad_out = _check_float(grad_out, "grad_out", 4)
    cache = {} if cache is None else cache
    dx = cached_buffer(cache, "avgblocks/dx", (grad_out.shape[0], 2, 2, *grad_out.shape[1:]), grad_out.dtype)
    quarter = grad_out.dtype.type(0.25)

    def samples(_: int, start: int, stop: int) -> None:
        g, d = grad_out[start:stop], dx[start:stop]
        np.multiply(g, quarter, out=d[:, 0, 0])
        for a, b in ((0, 1), (1, 0), (1, 1)):
            np.copyto(d[:, a, b], d[:, 0, 0])

    run(partition(grad_out.shape[0], dx.size), samples)
    return dx


def _inverse_counts(x_shape: tuple[int, ...], out_hw: Pair, pool: Pair, strides: Pair, pads: Pads,
                    dtype: np.dtype) -> np.ndarray:
    """(OH, OW, 1) array of 1 / (number of real cells in each window); padding cells do not count."""
    counts = []
    for size, out, k, s, (before, _) in zip(x_shape[1:3], out_hw, pool, strides, pads):
        start = np.arange(out) * s - before
        counts.append(np.minimum(start + k, size) - np.maximum(start, 0))
    return (1.0 / np.multiply.outer(counts[0], counts[1])).astype(dtype)[:, :, None]


def avg_pool2d_forward(
    x: np.ndarray,
    pool: Pair,
    strides: Pair,
    padding: str = "valid",
    cache: dict | None = None,
) -> np.ndarray:
    """Average pooling of an NHWC batch; with ``"same"`` padding each window is divided by its number of
    real (unpadded) cells, as in Keras/TensorFlow.

    Parameters
    ----------
    x : ndarray (N, H, W, C), float32 or float64
    pool, strides : pair of positive ints
    padding : "valid" or "same"
    cache : dict, optional

    Returns
    -------
    y : ndarray (N, OH, OW, C)
    """
    x = _check_float(x, "x", 4)
    pool, strides, oh, ow, pads = _pool_args(x.shape, pool, strides, padding)
    cache = {} if cache is None else cache
    n, _, _, c = x.shape
    y = cached_buffer(cache, "avgpool/y", (n, oh, ow, c), x.dtype)
    fast = _fast_pool(pool, strides, pads)
    rows = _rows_buffer(x.shape, (oh, ow), pool, x.dtype, cache, "avgpool/rows") if fast else None
    xp = None if fast else _pad_buffer(x.shape, pads, x.dtype, cache, "avgpool/xpad")
    scale = x.dtype.type(1.0 / (pool[0] * pool[1])) if fast else \
        _inverse_counts(x.shape, (oh, ow), pool, strides, pads, x.dtype)

    # y[n,i,j,c] = sum_{a,b} xpad[n, i*sh + a, j*sw + b, c] / count[i,j]  =>  dx[n, i*sh + a, j*sw + b, c] += g / count
    def samples(_: int, start: int, stop: int) -> None:
        ys = y[start:stop]
        if fast:
            _reduce_tiles(np.add, _tiles(x[start:stop], (oh, ow), pool), ys, None if rows is None else rows[start:stop])
        else:
            xs = _fill_padded(x[start:stop], None if xp is None else xp[start:stop], pads, 0.0)
            win = _window_view(xs, (oh, ow), pool, strides, (1, 1))
            np.copyto(ys, win[:, :, :, 0, 0])
            for a in range(pool[0]):
                for b in range(pool[1]):
                    if a or b:
                        ys += win[:, :, :, a, b]
        ys *= scale

    run(partition(n, x.size), samples)
    return y


def avg_pool2d_backward(
    grad_out: np.ndarray,
    x_shape: tuple[int, int, int, int],
    pool: Pair,
    strides: Pair,
    padding: str = "valid",
    cache: dict | None = None,
) -> np.ndarray:
    """Gradient of :func:`avg_pool2d_forward`.

    Parameters
    ----------
    grad_out : ndarray (N, OH, OW, C)
    x_shape : (N, H, W, C)
    pool, strides, padding
        As in the forward call.
    cache : dict, optional

    Returns
    -------
    dx : ndarray (N, H, W, C)
    """
    grad_out, x_shape, pool, strides, oh, ow, pads = _pool_grad_args(grad_out, x_shape, pool, strides, padding)
    n, _, _, c = x_shape
    cache = {} if cache is None else cache
    dtype = grad_out.dtype
    dx = cached_buffer(cache, "avgpool/dx", x_shape, dtype)
    fast = _fast_pool(pool, strides, pads)
    gs = None if fast else cached_buffer(cache, "avgpool/gs", grad_out.shape, dtype)
    scale = dtype.type(1.0 / (pool[0] * pool[1])) if fast else \
        _inverse_counts(x_shape, (oh, ow), pool, strides, pads, dtype)

    def samples(_: int, start: int, stop: int) -> None:
        g, d = grad_out[start:stop], dx[start:stop]
        if fast:
            np.multiply(g[:, :, None, :, None, :], scale, out=_tiles(d, (oh, ow), pool))
            d[:, oh * pool[0]:] = 0
            d[:, :oh * pool[0], ow * pool[1]:] = 0
            return
        gp = gs[start:stop]
        np.multiply(g, scale, out=gp)
        d.fill(0)
        # every window cell receives its window's g / count: col2im of a broadcast (no copy) patch array
        _col2im(np.broadcast_to(gp[:, :, :, None, None, :], (stop - start, oh, ow, *pool, c)), d, strides, (1, 1),
                pads)

    run(partition(n, dx.size), samples)
    return dx


def global_avg_pool2d_forward(x: np.ndarray, cache: dict | None = None) -> np.ndarray:
    """Mean over H and W: (N, H, W, C) -> (N, C).

    Parameters
    ----------
    x : ndarray (N, H, W, C), float32 or float64
    cache : dict, optional

    Returns
    -------
    y : ndarray (N, C)
    """
    x = _check_float(x, "x", 4)
    cache = {} if cache is None else cache
    n, h, w, c = x.shape
    y = cached_buffer(cache, "gap/y", (n, c), x.dtype)
    scale = x.dtype.type(1.0 / (h * w))

    # y[n,c] = sum_{i,j} x[n,i,j,c] / (H W)  =>  dx[n,i,j,c] = g[n,c] / (H W)
    def samples(_: int, start: int, stop: int) -> None:
        ys = y[start:stop]
        np.sum(x[start:stop].reshape(stop - start, h * w, c), axis=1, out=ys)
        ys *= scale

    run(partition(n, x.size), samples)
    return y


def global_avg_pool2d_backward(grad_out: np.ndarray, x_shape: tuple[int, int, int, int],
                               cache: dict | None = None) -> np.ndarray:
    """Gradient of :func:`global_avg_pool2d_forward`.

    Parameters
    ----------
    grad_out : ndarray (N, C)
    x_shape : (N, H, W, C)
    cache : dict, optional

    Returns
    -------
    dx : ndarray (N, H, W, C)
    """
    grad_out = _check_float(grad_out, "grad_out", 2)
    x_shape = tuple(int(s) for s in x_shape)
    if len(x_shape) != 4 or grad_out.shape != (x_shape[0], x_shape[3]):
        raise ValueError(f"grad_out {grad_out.shape} does not match x_shape {x_shape}")
    cache = {} if cache is None else cache
    dtype = grad_out.dtype
    dx = cached_buffer(cache, "gap/dx", x_shape, dtype)
    scale = dtype.type(1.0 / (x_shape[1] * x_shape[2]))

    def samples(_: int, start: int, stop: int) -> None:
        np.multiply(grad_out[start:stop, None, None, :], scale, out=dx[start:stop])

    run(partition(x_shape[0], dx.size), samples)
    return dx
