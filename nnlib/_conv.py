"""NumPy kernels for 2-D convolution and pooling on channels-last (NHWC) float batches.

Private: the layers wrap these functions; they hold no model state. Every array
argument is read only. Scratch and output arrays come from the optional ``cache``
dict (see :func:`nnlib._buffers.cached_buffer`): the caller owns a returned array
only until its next call with the same cache, which is what lets a training step
run without fresh allocations. Without a cache every call allocates.

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

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._buffers import cached_buffer, cached_ones

__all__ = [
    "conv_output_size",
    "same_pads",
    "pads_2d",
    "conv2d_forward",
    "conv2d_backward",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
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


def _padded(x: np.ndarray, pads: Pads, fill: float, cache: dict, key: str) -> np.ndarray:
    """``x`` inside a border of ``fill`` (``x`` itself when there is no padding)."""
    (top, bottom), (left, right) = pads
    if top == bottom == left == right == 0:
        return x
    n, h, w, c = x.shape
    xp = cached_buffer(cache, key, (n, h + top + bottom, w + left + right, c), x.dtype)
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


def _im2col(xp: np.ndarray, cols: np.ndarray, strides: Pair, dilation: Pair) -> None:
    """``cols[n,i,j,a,b,c] = xp[n, i*sh + a*dh, j*sw + b*dw, c]`` (``xp`` already padded)."""
    _, oh, ow, kh, kw, c = cols.shape
    if c == 1:
        # One channel: the single strided copy below would run an inner loop of KW elements; KH*KW copies
        # of whole output rows were measured 2-3x faster here (and slower for every C >= 2 tried, up to 8x).
        (sh, sw), (dh, dw) = strides, dilation
        for a in range(kh):
            for b in range(kw):
                r, q = a * dh, b * dw
                cols[:, :, :, a, b, :] = xp[:, r:r + sh * (oh - 1) + 1:sh, q:q + sw * (ow - 1) + 1:sw, :]
    else:
        # One copy from a strided window view writes cols front to back, where KH*KW slice copies each touch
        # every cache line of it: measured up to 8x faster for C = 2..64 (about even only for C = 2, 3 at
        # dilation 2). It needs "same" inputs padded first, which beat clipped per-offset copies 3x (C = 32).
        np.copyto(cols, _window_view(xp, (oh, ow), (kh, kw), strides, dilation))


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


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    strides: Pair = (1, 1),
    dilation: Pair = (1, 1),
    padding: str = "valid",
    cache: dict | None = None,
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

    Returns
    -------
    y : ndarray (N, OH, OW, F)
    cols : ndarray (N, OH, OW, KH, KW, C), C-contiguous
        The patch matrix (padding cells are zeros); pass it to :func:`conv2d_backward`.
    """
    x = _check_float(x, "x", 4)
    w = _check_float(w, "w", 4)
    _same_dtype(x.dtype, w=w)
    if bias is not None:
        _check_float(bias, "bias", 1)
        _same_dtype(x.dtype, bias=bias)
    n, _, _, c = x.shape
    kh, kw, c_in, f = w.shape
    if c_in != c or (bias is not None and bias.shape != (f,)):
        raise ValueError(f"x {x.shape}, w {w.shape} and bias {None if bias is None else bias.shape} do not agree")
    strides, dilation = _pair(strides, "strides"), _pair(dilation, "dilation")
    oh, ow, pads = _geometry(x.shape, (kh, kw), strides, dilation, _check_padding(padding))
    cache = {} if cache is None else cache

    # y[n,i,j,f] = sum_{a,b,c} xpad[n, i*sh + a*dh, j*sw + b*dw, c] w[a,b,c,f] + bias[f], i.e. y2d = cols2d w2d + bias
    #   =>  dW = cols2d^T g2d,  db = 1^T g2d,  dx = col2im(g2d w2d^T)
    xp = _padded(x, pads, 0.0, cache, "conv2d/xpad")
    cols = cached_buffer(cache, "conv2d/cols", (n, oh, ow, kh, kw, c), x.dtype)
    y = cached_buffer(cache, "conv2d/y", (n, oh, ow, f), x.dtype)
    k, p = kh * kw * c, oh * ow
    w2d = w.reshape(k, f)
    cols2d, y2d = cols.reshape(n * p, k), y.reshape(n * p, f)
    step = _chunk_samples(n, p * k * x.itemsize)
    tiled = None
    if bias is not None:
        tiled = cached_buffer(cache, "conv2d/bias_tile", (max(1, _BIAS_TILE // f) * f,), x.dtype)
        tiled.reshape(-1, f)[...] = bias
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        _im2col(xp[n0:n1], cols[n0:n1], strides, dilation)
        rows = slice(n0 * p, n1 * p)
        np.matmul(cols2d[rows], w2d, out=y2d[rows])
        if bias is not None:
            _add_bias(y2d[rows], bias, tiled)  # while this chunk of y is in cache
    return y, cols


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
    grad_out : ndarray (N, OH, OW, F)
    cols : ndarray (N, OH, OW, KH, KW, C)
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
    grad_out = _check_float(grad_out, "grad_out", 4)
    cols = _check_float(cols, "cols", 6)
    w = _check_float(w, "w", 4)
    dtype = grad_out.dtype
    _same_dtype(dtype, cols=cols, w=w)
    kh, kw, c, f = w.shape
    strides, dilation = _pair(strides, "strides"), _pair(dilation, "dilation")
    x_shape = tuple(int(s) for s in x_shape)
    oh, ow, pads = _geometry(x_shape, (kh, kw), strides, dilation, _check_padding(padding))
    n = x_shape[0]
    if x_shape[3] != c or cols.shape != (n, oh, ow, kh, kw, c) or grad_out.shape != (n, oh, ow, f):
        raise ValueError(
            f"grad_out {grad_out.shape}, cols {cols.shape}, w {w.shape} and x_shape {x_shape} do not agree")
    cache = {} if cache is None else cache
    k, p = kh * kw * c, oh * ow
    g2d = np.ascontiguousarray(grad_out).reshape(n * p, f)
    cols2d = cols.reshape(n * p, k)  # a copy only if the caller passed a non-contiguous cols

    if dw_out is None:
        dw_out = cached_buffer(cache, "conv2d/dw", w.shape, dtype)
    elif not (isinstance(dw_out, np.ndarray) and dw_out.shape == w.shape and dw_out.dtype == dtype
              and dw_out.flags.c_contiguous):
        raise ValueError(f"dw_out must be a C-contiguous {dtype} array of shape {w.shape}")
    np.matmul(cols2d.T, g2d, out=dw_out.reshape(k, f))  # dW = cols^T g
    db = None
    if need_db:
        if db_out is None:
            db_out = cached_buffer(cache, "conv2d/db", (f,), dtype)
        elif not (isinstance(db_out, np.ndarray) and db_out.shape == (f,) and db_out.dtype == dtype):
            raise ValueError(f"db_out must be a {dtype} array of shape {(f,)}")
        # db = 1^T g: a matrix-vector product, faster than g.sum(axis=0)
        db = np.matmul(cached_ones(cache, n * p, dtype), g2d, out=db_out)
    if not need_dx:
        return None, dw_out, db

    # dx = col2im(g w2d^T), a chunk of samples at a time so each chunk's dcols is read back from cache
    dx = cached_buffer(cache, "conv2d/dx", x_shape, dtype)
    w2d_t = w.reshape(k, f).T
    step = _chunk_samples(n, p * k * dtype.itemsize)
    dcols = cached_buffer(cache, "conv2d/dcols", (step, oh, ow, kh, kw, c), dtype)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        part = dcols[:n1 - n0]
        np.matmul(g2d[n0 * p:n1 * p], w2d_t, out=part.reshape((n1 - n0) * p, k))
        dx[n0:n1].fill(0)
        _col2im(part, dx[n0:n1], strides, dilation, pads)
    return dx, dw_out, db


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


def _reduce_tiles(op: np.ufunc, xt: np.ndarray, y: np.ndarray, cache: dict, key: str) -> None:
    """``y = op``-reduction of the (N, OH, PH, OW, PW, C) tiles over PH and PW.

    Separable: PW - 1 ops on half-reduced rows, then PH - 1 on whole rows, where one op per window cell
    would take PH*PW - 1 strided passes (measured 1.6x faster for 2x2)."""
    n, oh, ph, ow, pw, c = xt.shape
    if pw == 1:
        rows = xt[:, :, :, :, 0]
    else:
        rows = cached_buffer(cache, key, (n, oh, ph, ow, c), y.dtype)
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

    # y[n,i,j,c] = max_{a,b} xpad[n, i*sh + a, j*sw + b, c]  =>  dx at each window's first argmax = g[n,i,j,c]
    if _fast_pool(pool, strides, pads):
        xt = _tiles(x, (oh, ow), pool)
        _reduce_tiles(np.maximum, xt, y, cache, "maxpool/rows")
        if not need_mask:
            return y, None
        # winners = ties with the max in one pass over x (sequential reads), then ties broken cell by cell.
        # Measured (26x26x32, N=128): forward 11 ms + backward 3.7 ms, where a running argmax index
        # (np.copyto where=) took 27 + 8 ms.
        mask = cached_buffer(cache, "maxpool/mask", xt.shape, np.bool_)
        np.equal(xt, y[:, :, None, :, None, :], out=mask)
        _keep_first([mask[:, :, a, :, b] for a in range(ph) for b in range(pw)], free)
        return y, mask

    win = _window_view(_padded(x, pads, -np.inf, cache, "maxpool/xpad"), (oh, ow), pool, strides, (1, 1))
    np.copyto(y, win[:, :, :, 0, 0])
    for a in range(ph):
        for b in range(pw):
            if a or b:
                np.maximum(y, win[:, :, :, a, b], out=y)
    if not need_mask:
        return y, None
    mask = cached_buffer(cache, "maxpool/mask", win.shape, np.bool_)
    np.equal(win, y[:, :, :, None, None, :], out=mask)
    # a padding cell ties an all -inf window: clear the padding so the first real cell takes the gradient
    for axis, taps in ((1, _taps(x.shape[1], oh, ph, strides[0], 1, pads[0][0])),
                       (2, _taps(x.shape[2], ow, pw, strides[1], 1, pads[1][0]))):
        for k, (i0, i1, _) in enumerate(taps):
            cell = mask[:, :, :, k] if axis == 1 else mask[:, :, :, :, k]
            index = [slice(None)] * 4
            index[axis] = slice(0, i0)
            cell[tuple(index)] = False
            index[axis] = slice(i1, None)
            cell[tuple(index)] = False
    _keep_first([mask[:, :, :, a, b] for a in range(ph) for b in range(pw)], free)
    return y, mask


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
    shape = (n, oh, ph, ow, pw, c) if fast else (n, oh, ow, ph, pw, c)
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != shape:
        raise ValueError(f"mask must be the forward pass's bool array of shape {shape}")
    cache = {} if cache is None else cache
    dtype = grad_out.dtype
    dx = cached_buffer(cache, "maxpool/dx", x_shape, dtype)
    if fast:
        # the windows tile dx: one multiply writes it front to back; the dropped remainder gets zeros
        np.multiply(grad_out[:, :, None, :, None, :], mask, out=_tiles(dx, (oh, ow), pool))
        dx[:, oh * ph:] = 0
        dx[:, :oh * ph, ow * pw:] = 0
        return dx
    dwin = cached_buffer(cache, "maxpool/dwin", shape, dtype)
    np.multiply(grad_out[:, :, :, None, None, :], mask, out=dwin)
    dx.fill(0)
    _col2im(dwin, dx, strides, (1, 1), pads)
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

    # y[n,i,j,c] = sum_{a,b} xpad[n, i*sh + a, j*sw + b, c] / count[i,j]  =>  dx[n, i*sh + a, j*sw + b, c] += g / count
    if _fast_pool(pool, strides, pads):
        _reduce_tiles(np.add, _tiles(x, (oh, ow), pool), y, cache, "avgpool/rows")
        y *= x.dtype.type(1.0 / (pool[0] * pool[1]))
        return y
    win = _window_view(_padded(x, pads, 0.0, cache, "avgpool/xpad"), (oh, ow), pool, strides, (1, 1))
    np.copyto(y, win[:, :, :, 0, 0])
    for a in range(pool[0]):
        for b in range(pool[1]):
            if a or b:
                y += win[:, :, :, a, b]
    y *= _inverse_counts(x.shape, (oh, ow), pool, strides, pads, x.dtype)
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
    if _fast_pool(pool, strides, pads):
        scale = dtype.type(1.0 / (pool[0] * pool[1]))
        np.multiply(grad_out[:, :, None, :, None, :], scale, out=_tiles(dx, (oh, ow), pool))
        dx[:, oh * pool[0]:] = 0
        dx[:, :oh * pool[0], ow * pool[1]:] = 0
        return dx
    gs = cached_buffer(cache, "avgpool/gs", grad_out.shape, dtype)
    np.multiply(grad_out, _inverse_counts(x_shape, (oh, ow), pool, strides, pads, dtype), out=gs)
    dx.fill(0)
    # every window cell receives its window's g / count: col2im of a broadcast (no copy) patch array
    _col2im(np.broadcast_to(gs[:, :, :, None, None, :], (n, oh, ow, *pool, c)), dx, strides, (1, 1), pads)
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
    # y[n,c] = sum_{i,j} x[n,i,j,c] / (H W)  =>  dx[n,i,j,c] = g[n,c] / (H W)
    np.sum(x.reshape(n, h * w, c), axis=1, out=y)
    y *= x.dtype.type(1.0 / (h * w))
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
    np.multiply(grad_out[:, None, None, :], dtype.type(1.0 / (x_shape[1] * x_shape[2])), out=dx)
    return dx
