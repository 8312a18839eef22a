"""Convolution and pooling written the slow, obvious way (float64 loops over output positions, kernel taps and
window cells), from the definitions alone, as the independent reference every CNN test compares nnlib with
(tests/test_conv_kernels.py, test_conv.py, test_pooling.py, test_cnn.py; not collected: no ``test_`` prefix).
Nothing here imports nnlib.

Conventions, as Keras/TensorFlow: NHWC images, kernels (KH, KW, C_in, C_out); "same" gives ceil(in / stride)
outputs with the extra padding row/column at the bottom/right; max pooling sends a window's gradient to its
first maximum in row-major order (PyTorch's rule), average pooling with "same" divides by the real entries.
"""

from __future__ import annotations

import math

import numpy as np


def pads(size: int, kernel: int, stride: int, dilation: int, padding: str) -> tuple[int, int, int]:
    """(output size, padding before, padding after) along one axis."""
    extent = dilation * (kernel - 1) + 1
    if padding == "valid":
        return (size - extent) // stride + 1, 0, 0
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + extent - size, 0)
    return out, total // 2, total - total // 2


def _padded(x, kernel, strides, dilation, padding):
    """(x zero-padded by TensorFlow's rule in float64, (OH, OW), (top, left))."""
    h, wd = x.shape[1:3]
    oh, top, bottom = pads(h, kernel[0], strides[0], dilation[0], padding)
    ow, left, right = pads(wd, kernel[1], strides[1], dilation[1], padding)
    xp = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
    return xp, (oh, ow), (top, left)


def conv2d(x, w, b, strides=(1, 1), dilation=(1, 1), padding="valid"):
    """y[n, i, j, f] = sum_{a, b, c} xpad[n, i sh + a dh, j sw + b dw, c] w[a, b, c, f] + b[f], by looping over
    output positions and kernel taps (each tap a (N, C) x (C, F) product)."""
    kh, kw, _, f = w.shape
    xp, (oh, ow), _ = _padded(x, (kh, kw), strides, dilation, padding)
    w = np.asarray(w, dtype=np.float64)
    y = np.zeros((x.shape[0], oh, ow, f))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for e in range(kw):
                    r, q = i * strides[0] + a * dilation[0], j * strides[1] + e * dilation[1]
                    y[:, i, j, :] += xp[:, r, q, :] @ w[a, e]
    return y if b is None else y + np.asarray(b, dtype=np.float64)


def conv2d_grads(x, w, g, strides=(1, 1), dilation=(1, 1), padding="valid"):
    """(dx, dw, db) of conv2d for dL/dy = g, each output's gradient accumulated into the patch it came from."""
    h, wd = x.shape[1:3]
    kh, kw = w.shape[:2]
    xp, (oh, ow), (top, left) = _padded(x, (kh, kw), strides, dilation, padding)
    w, g = np.asarray(w, dtype=np.float64), np.asarray(g, dtype=np.float64)
    dxp, dw = np.zeros_like(xp), np.zeros(w.shape)
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for e in range(kw):
                    r, q = i * strides[0] + a * dilation[0], j * strides[1] + e * dilation[1]
                    dw[a, e] += xp[:, r, q, :].T @ g[:, i, j, :]
                    dxp[:, r, q, :] += g[:, i, j, :] @ w[a, e].T
    return dxp[:, top:top + h, left:left + wd], dw, g.sum(axis=(0, 1, 2))


def _windows(x, pool, strides, padding):
    n, h, wd, c = x.shape
    oh, top, _ = pads(h, pool[0], strides[0], 1, padding)
    ow, left, _ = pads(wd, pool[1], strides[1], 1, padding)
    for i in range(oh):
        for j in range(ow):
            rows = [r for r in range(i * strides[0] - top, i * strides[0] - top + pool[0]) if 0 <= r < h]
            cols = [q for q in range(j * strides[1] - left, j * strides[1] - left + pool[1]) if 0 <= q < wd]
            yield i, j, [(r, q) for r in rows for q in cols], (oh, ow)  # row-major: the first max comes first


def max_pool(x, pool=(2, 2), strides=None, padding="valid"):
    """(y, dx_for(g)) with the gradient of each window at its first maximum."""
    strides = strides or pool
    n, _, _, c = x.shape
    cells = list(_windows(x, pool, strides, padding))
    oh, ow = cells[0][3]
    y = np.zeros((n, oh, ow, c))
    winner = {}
    for i, j, window, _ in cells:
        for s in range(n):
            for ch in range(c):
                values = [x[s, r, q, ch] for r, q in window]
                k = int(np.argmax(values))  # np.argmax returns the first of equal maxima
                y[s, i, j, ch] = values[k]
                winner[s, i, j, ch] = window[k]

    def dx_for(g):
        dx = np.zeros(x.shape)
        for (s, i, j, ch), (r, q) in winner.items():
            dx[s, r, q, ch] += g[s, i, j, ch]
        return dx

    return y, dx_for


def avg_pool(x, pool=(2, 2), strides=None, padding="valid"):
    """(y, dx_for(g)), each window divided by its count of real entries."""
    strides = strides or pool
    n, _, _, c = x.shape
    cells = list(_windows(x, pool, strides, padding))
    oh, ow = cells[0][3]
    y = np.zeros((n, oh, ow, c))
    for i, j, window, _ in cells:
        for r, q in window:
            y[:, i, j, :] += x[:, r, q, :] / len(window)

    def dx_for(g):
        dx = np.zeros(x.shape)
        for i, j, window, _ in cells:
            for r, q in window:
                dx[:, r, q, :] += g[:, i, j, :] / len(window)
        return dx

    return y, dx_for
