"""Pure array maths shared by layers, losses and metrics.

Nothing here holds state or imports from nnlib. Every function takes and returns
ndarrays, keeps the input dtype, and never mutates its inputs unless an ``out``
array is passed explicitly.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "relu",
    "sigmoid",
    "log_softmax",
    "softmax",
    "row_max",
    "row_sum",
    "log_sigmoid",
    "one_hot",
    "l2_norm",
]


def relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rectified linear unit, ``max(x, 0)``.

    Parameters
    ----------
    x : ndarray of shape (N, D)
    out : ndarray of shape (N, D), optional
        Where to write the result.

    Returns
    -------
    ndarray of shape (N, D)
    """
    return np.maximum(x, 0, out=out)


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic function ``1 / (1 + exp(-x))``, accurate and warning-free for any ``x``.

    With ``e = exp(-|x|)``, which lies in (0, 1] and never overflows, ``sigmoid(x)`` is
    ``1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)`` for ``x < 0``: full relative
    precision for very negative ``x`` too (where ``1 - sigmoid(-x)`` would cancel).
    Float input keeps its dtype; other input gives float64.

    Parameters
    ----------
    x : ndarray of shape (N, D)
    out : ndarray of shape (N, D), optional
        May be ``x`` itself.

    Returns
    -------
    ndarray of shape (N, D)
    """
    x = np.asarray(x)
    if out is None:
        out = np.empty(x.shape, dtype=x.dtype if x.dtype.kind == "f" else np.float64)
    positive = np.greater_equal(x, 0)  # before out (which may be x) is overwritten
    np.abs(x, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)  # e = exp(-|x|): underflows quietly to 0 for |x| > ~88 (float32)
    denominator = out + 1.0
    np.copyto(out, 1.0, where=positive)  # numerator: 1 where x >= 0, e where x < 0
    return np.divide(out, denominator, out=out)


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """``log(sigmoid(x)) = -softplus(-x)``, stable for large ``|x|``.

    Parameters
    ----------
    x : ndarray of any shape

    Returns
    -------
    ndarray of the same shape as ``x``
    """
    # -log(1 + exp(-x)) = min(x, 0) - log1p(exp(-|x|)): exp's argument is never positive.
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax via the log-sum-exp trick.

    Parameters
    ----------
    z : ndarray of shape (N, C)
        Logits.

    Returns
    -------
    ndarray of shape (N, C)
        ``z - logsumexp(z, axis=1)``; finite for any finite ``z``.
    """
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def row_max(z: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """Each row's maximum.

    For few columns, ``z.max(axis=1)`` runs one short inner loop per row; reducing a
    transposed copy over its first axis runs C long ones instead (measured for
    128 x 10: 6.6 -> 2.2 us; from about 100 columns on, ``axis=1`` is the faster).

    Parameters
    ----------
    z : ndarray of shape (N, C)
    scratch : ndarray of shape (C, N), optional
        Room for the transposed copy (allocated when not given).

    Returns
    -------
    ndarray of shape (N,)
    """
    if z.shape[1] > 32:
        return z.max(axis=1)
    if scratch is None:
        scratch = np.empty(z.shape[::-1], z.dtype)
    np.copyto(scratch, z.T)
    return np.maximum.reduce(scratch, axis=0)


def row_sum(z: np.ndarray, ones: np.ndarray | None = None) -> np.ndarray:
    """Each row's sum as the product ``z @ 1`` (measured 3x faster than ``z.sum(axis=1)``).

    Parameters
    ----------
    z : ndarray of shape (N, C)
    ones : ndarray of shape (C,), optional
        A vector of ones in ``z``'s dtype (allocated when not given).

    Returns
    -------
    ndarray of shape (N,)
    """
    return np.matmul(z, np.ones(z.shape[1], z.dtype) if ones is None else ones)


def softmax(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so ``exp`` cannot overflow.

    Parameters
    ----------
    z : ndarray of shape (N, C)
    out : ndarray of shape (N, C), optional

    Returns
    -------
    ndarray of shape (N, C)
        Rows are non-negative and sum to one.
    """
    out = np.subtract(z, row_max(z)[:, None], out=out)
    np.exp(out, out=out)
    out /= row_sum(out)[:, None]
    return out


def one_hot(labels: np.ndarray, num_classes: int, dtype: np.dtype | str = np.float32) -> np.ndarray:
    """Encode integer class labels as one-hot rows.

    Parameters
    ----------
    labels : ndarray of shape (N,)
        Integers in ``[0, num_classes)``.
    num_classes : int
        C, the width of the encoding.
    dtype : dtype, default float32

    Returns
    -------
    ndarray of shape (N, C)

    Raises
    ------
    ValueError
        If ``labels`` is not 1-D integral or holds a value outside ``[0, C)``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.dtype == bool or labels.dtype.kind not in "iuf":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise ValueError(f"labels must be finite integers, got {labels[~np.isfinite(labels)][0]}")
        fractional = labels != np.round(labels)
        if fractional.any():
            raise ValueError(f"labels must be integers, got {labels[fractional][0]}")
        labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]"
        )
    out = np.zeros((labels.shape[0], num_classes), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


def l2_norm(a: np.ndarray) -> float:
    """Euclidean norm of all entries as a Python float.

    One BLAS dot product; only if float32 overflows (a finite array whose squares sum
    past 3.4e38) is it summed again in float64. NaN or inf entries give NaN or inf.

    Parameters
    ----------
    a : ndarray of any shape

    Returns
    -------
    float
    """
    flat = a.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        squares = float(np.dot(flat, flat))
    if not math.isfinite(squares) and np.isfinite(flat).all():
        flat = flat.astype(np.float64)
        squares = float(np.dot(flat, flat))
    return math.sqrt(squares)
